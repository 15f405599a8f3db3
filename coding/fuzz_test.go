package coding

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedShards are the valid encodings the fuzz corpora start from.
func seedShards(t testing.TB) map[string][]byte {
	v := Version{HLC: 0x0123456789abcdef, Writer: 42}
	out := map[string][]byte{}
	add := func(name string, shards []*Shard, err error) {
		if err != nil {
			t.Fatal(err)
		}
		out[name] = shards[len(shards)-1].AppendBinary(nil)
	}
	s, err := Encode("/blocks/CIQA", []byte("hello, erasure coded world"), Erasure(4, 2), v)
	add("erasure_4x2_parity", s, err)
	s, err = Encode("/k", []byte("abc"), Replicas(3), v)
	add("replica_r3", s, err)
	s, err = Encode("", nil, Erasure(10, 4), v)
	add("empty_value_10x4", s, err)
	add("tombstone_4x2", Tombstone("/deleted", Erasure(4, 2), v), nil)
	return out
}

// TestWriteFuzzSeeds regenerates the checked-in seed corpora under testdata/.
// It only runs with CODING_WRITE_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("CODING_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set CODING_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz seeds")
	}
	seeds := seedShards(t)
	invalid := map[string][]byte{
		"empty":     {},
		"magic":     []byte("DSCS"),
		"truncated": seeds["erasure_4x2_parity"][:40],
		"bitflip":   flipped(seeds["replica_r3"], 8*9+1),
	}
	write := func(fuzzer, name string, b []byte) {
		dir := filepath.Join("testdata", "fuzz", fuzzer)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range seeds {
		write("FuzzParseShard", name, b)
		h, _, _ := DecodeHeader(b)
		write("FuzzDecodeHeader", name, h.AppendBinary(nil))
	}
	for name, b := range invalid {
		write("FuzzParseShard", "invalid_"+name, b)
		write("FuzzDecodeHeader", "invalid_"+name, b)
	}
	long := Header{Format: FormatVersion, Key: strings.Repeat("k", MaxKeyLen), Policy: Replicas(2), Index: 1}
	write("FuzzDecodeHeader", "max_key", long.AppendBinary(nil))
}

func flipped(b []byte, bit int) []byte {
	b = bytes.Clone(b)
	b[bit/8] ^= 1 << (bit % 8)
	return b
}

// FuzzDecodeHeader: DecodeHeader never panics, fails only with ErrCorrupt,
// and what it accepts is the canonical encoding of what it returns.
func FuzzDecodeHeader(f *testing.F) {
	for _, b := range seedShards(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := DecodeHeader(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			if n != 0 {
				t.Fatalf("n = %d on error", n)
			}
			return
		}
		if n > len(b) || n != h.Size() {
			t.Fatalf("n = %d, len %d, Size %d", n, len(b), h.Size())
		}
		if again := h.AppendBinary(nil); !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b[:n], again)
		}
		if ShardLen(h.Policy, h.ValueLen) < 0 {
			t.Fatalf("accepted header with no shard length: %+v", h)
		}
	})
}

// FuzzParseShard: ParseShard never panics, fails only with ErrCorrupt, and
// a shard it accepts verifies, re-encodes to the same bytes, and decodes
// alone when its policy needs one shard.
func FuzzParseShard(f *testing.F) {
	for _, b := range seedShards(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseShard(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if err := s.Verify(); err != nil {
			t.Fatalf("accepted shard fails Verify: %v", err)
		}
		if s.Size() != len(b) || !bytes.Equal(s.AppendBinary(nil), b) {
			t.Fatal("re-encoding differs")
		}
		shards := make([]*Shard, s.Header.Policy.Width())
		shards[s.Header.Index] = s
		v, err := Decode(shards)
		switch {
		case s.Header.Policy.DataShards > 1:
			if !errors.Is(err, ErrTooFewShards) {
				t.Fatalf("one shard of %v decoded: %v", s.Header.Policy, err)
			}
		case s.Header.Tombstone:
			if !errors.Is(err, ErrTombstone) {
				t.Fatalf("tombstone decoded: %v", err)
			}
		case err == nil:
			if uint64(len(v)) != s.Header.ValueLen || Checksum(v) != s.Header.ValueSum {
				t.Fatal("Decode returned a value that does not match the header")
			}
		case !errors.Is(err, ErrCorrupt):
			t.Fatalf("Decode: %v", err)
		}
	})
}
