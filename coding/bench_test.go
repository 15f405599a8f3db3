package coding

import (
	"crypto/sha256"
	"hash/crc32"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/reedsolomon"
)

const benchValue = 256 << 10

// BenchmarkChecksum_256K compares the candidate checksums on one IPFS-sized
// block (the value checksum); see doc.go for the choice.
func BenchmarkChecksum_256K(b *testing.B) { benchChecksums(b, benchValue) }

// BenchmarkChecksum_64K is the same on one 4+2 shard of that block (the
// shard checksum).
func BenchmarkChecksum_64K(b *testing.B) { benchChecksums(b, benchValue/4) }

func benchChecksums(b *testing.B, size int) {
	data := randBytes(1, size)
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	var sink uint64
	for _, c := range []struct {
		name string
		sum  func([]byte) uint64
	}{
		{"xxhash64", xxhash.Sum64},
		{"crc32c", func(p []byte) uint64 { return uint64(crc32.Checksum(p, castagnoli)) }},
		{"sha256", func(p []byte) uint64 { s := sha256.Sum256(p); return uint64(s[0]) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				sink += c.sum(data)
			}
		})
	}
	_ = sink
}

// BenchmarkEncode_4x2x256K is the whole Put CPU path of this package: copy,
// Reed-Solomon parity, a checksum per shard and one of the value.
func BenchmarkEncode_4x2x256K(b *testing.B) {
	value := randBytes(2, benchValue)
	p := Erasure(4, 2)
	b.SetBytes(benchValue)
	for b.Loop() {
		shards, err := Encode("/blocks/bench", value, p, Version{HLC: 1})
		if err != nil {
			b.Fatal(err)
		}
		Release(shards) // as the front end does once the shards are sent
	}
}

// BenchmarkEncodeRaw_4x2x256K is reedsolomon alone on the same bytes
// (Split, which allocates the padding and parity, then Encode), for the
// ratio against BenchmarkEncode_4x2x256K.
func BenchmarkEncodeRaw_4x2x256K(b *testing.B) {
	value := randBytes(2, benchValue)
	enc, err := reedsolomon.New(4, 2, reedsolomon.WithAutoGoroutines(benchValue/4))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchValue)
	for b.Loop() {
		shards, err := enc.Split(value[:len(value):len(value)])
		if err != nil {
			b.Fatal(err)
		}
		if err := enc.Encode(shards); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeRawPrealloc_4x2x256K is reedsolomon's Encode alone on
// shards allocated once: the floor of the Reed-Solomon work itself.
func BenchmarkEncodeRawPrealloc_4x2x256K(b *testing.B) {
	value := randBytes(2, benchValue)
	enc, err := reedsolomon.New(4, 2, reedsolomon.WithAutoGoroutines(benchValue/4))
	if err != nil {
		b.Fatal(err)
	}
	shards, err := enc.Split(append(make([]byte, 0, benchValue*3/2), value...))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchValue)
	for b.Loop() {
		if err := enc.Encode(shards); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDecode(b *testing.B, lost ...int) {
	value := randBytes(3, benchValue)
	shards := wire(b, mustEncode(b, "/blocks/bench", value, Erasure(4, 2), Version{HLC: 1}))
	for _, i := range lost {
		shards[i] = nil
	}
	b.SetBytes(benchValue)
	for b.Loop() {
		if _, err := Decode(shards); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode_4x2x256K_AllData: the four data shards verify and are
// concatenated; no Reed-Solomon.
func BenchmarkDecode_4x2x256K_AllData(b *testing.B) { benchDecode(b) }

// BenchmarkDecode_4x2x256K_TwoLost: data shards 0 and 2 are lost and rebuilt
// from the two parity shards.
func BenchmarkDecode_4x2x256K_TwoLost(b *testing.B) { benchDecode(b, 0, 2) }

func BenchmarkParseShard_64K(b *testing.B) {
	s := mustEncode(b, "/blocks/bench", randBytes(4, benchValue), Erasure(4, 2), Version{HLC: 1})[0]
	enc := s.AppendBinary(nil)
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := ParseShard(enc); err != nil {
			b.Fatal(err)
		}
	}
}
