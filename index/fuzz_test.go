package index

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/FuzzDecodeEntry from seedEntries")

// seedEntries are the valid encodings in the checked-in seed corpus; the
// corpus also holds broken variants of them (see seedValues).
var seedEntries = []Entry{
	{Key: "/blocks/CIQA", Slot: 0xbeef, Held: Held{Index: 5, Kind: 1, K: 4, M: 2, ValueLen: 262144, ShardLen: 65536,
		ShardSum: 0x0123456789abcdef, Version: Version{HLC: 1 << 50, Writer: 3}},
		Also: []Held{{Index: 6, Kind: 1, K: 4, M: 2, ValueLen: 262144, ShardLen: 65536, Version: Version{HLC: 1 << 50, Writer: 3},
			Loc: [16]byte{0, 0, 0, 1, 15: 9}}},
		Older: []Held{{Index: 5, Kind: 1, K: 4, M: 2, ValueLen: 1, ShardLen: 1, Version: Version{HLC: 1 << 49}}}},
	{Key: "t", Slot: 1, Held: Held{Tombstone: true, Version: Version{HLC: 1}}},
	{Key: "\xff\x00", Slot: math.MaxUint16, Held: Held{Index: 255, Kind: 255, K: 255, M: 255, Tombstone: true,
		ValueLen: math.MaxUint64, ShardLen: math.MaxUint32, ShardSum: math.MaxUint64,
		Version: Version{HLC: math.MaxUint64, Writer: math.MaxUint64}}},
}

type seedValue struct {
	name  string
	key   string
	value []byte
}

// zeroAt is a valid entry but for a shard flagged with a Loc of zeros.
func zeroAt() []byte {
	e := Entry{Key: "k", Held: Held{Version: Version{HLC: 1}}}
	v := encodeEntry(e)
	v[5] |= flagAt
	v = append(v[:len(v)-4], make([]byte, 16)...)
	return binary.BigEndian.AppendUint32(v, entryChecksum(e.Key, v))
}

func seedValues() []seedValue {
	var out []seedValue
	for i, e := range seedEntries {
		v := encodeEntry(e)
		flipped := bytes.Clone(v)
		flipped[len(flipped)/2] ^= 1
		out = append(out,
			seedValue{fmt.Sprintf("valid-%d", i), e.Key, v},
			seedValue{fmt.Sprintf("truncated-%d", i), e.Key, v[:len(v)-1]},
			seedValue{fmt.Sprintf("extended-%d", i), e.Key, append(bytes.Clone(v), 0)},
			seedValue{fmt.Sprintf("bitflip-%d", i), e.Key, flipped},
			seedValue{fmt.Sprintf("otherkey-%d", i), e.Key + "x", v},
		)
	}
	out = append(out,
		seedValue{"empty", "k", nil},
		seedValue{"version-4", "k", append([]byte{4}, make([]byte, 40)...)},
		seedValue{"long-varint", "k", append([]byte{5, 0, 0, 0, 0, 0, 0, 0, 0, 0}, bytes.Repeat([]byte{0xff}, 40)...)},
		seedValue{"nonminimal-varint", "k", append([]byte{5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x00, 0x00}, make([]byte, 28)...)},
		seedValue{"too-many-older", "k", append([]byte{5, 0, MaxOlder + 1}, make([]byte, 60)...)},
		seedValue{"zero-at", "k", zeroAt()},
		seedValue{"too-many-also", "k", append([]byte{5, MaxOlder + 1, 0}, make([]byte, 60)...)},
	)
	return out
}

// TestSeedCorpus checks that the checked-in corpus is the one seedValues
// describes, and rewrites it with -update-corpus.
func TestSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeEntry")
	for _, s := range seedValues() {
		_, err := decodeEntry(s.key, s.value)
		if valid := strings.HasPrefix(s.name, "valid-"); valid != (err == nil) {
			t.Errorf("seed %s: decodeEntry error = %v, want valid=%v", s.name, err, valid)
		}
		want := fmt.Sprintf("go test fuzz v1\nstring(%q)\n[]byte(%q)\n", s.key, s.value)
		path := filepath.Join(dir, s.name)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("seed corpus file missing (run go test -run TestSeedCorpus -update-corpus): %v", err)
		}
		if string(got) != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
}

// FuzzDecodeEntry checks that decodeEntry never panics, and that whatever it
// accepts is exactly the encoding of what it returns (so the format has one
// encoding per entry and nothing is silently dropped).
func FuzzDecodeEntry(f *testing.F) {
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		e, err := decodeEntry(key, value)
		if err != nil {
			if !reflect.DeepEqual(e, Entry{}) {
				t.Fatalf("decodeEntry failed (%v) but returned %+v", err, e)
			}
			return
		}
		if e.Key != key {
			t.Fatalf("decoded key %q, want %q", e.Key, key)
		}
		if re := encodeEntry(e); !bytes.Equal(re, value) {
			t.Fatalf("decodeEntry accepted %x as %+v, which encodes to %x", value, e, re)
		}
	})
}
