package coding

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// wire encodes each shard and parses it back, as a node would store and
// return it.
func wire(t testing.TB, shards []*Shard) []*Shard {
	t.Helper()
	out := make([]*Shard, len(shards))
	for i, s := range shards {
		b := s.AppendBinary(nil)
		if len(b) != s.Size() {
			t.Fatalf("shard %d: Size() = %d, encoded %d bytes", i, s.Size(), len(b))
		}
		p, err := ParseShard(b)
		if err != nil {
			t.Fatalf("shard %d: ParseShard of a fresh shard: %v", i, err)
		}
		out[i] = p
	}
	return out
}

func cloneShard(s *Shard) *Shard {
	c := *s
	c.Data = bytes.Clone(s.Data)
	return &c
}

func TestPolicy(t *testing.T) {
	valid := []struct {
		p     Policy
		s     string
		width int
	}{
		{Erasure(4, 2), "4+2", 6},
		{Erasure(1, 0), "1+0", 1},
		{Erasure(10, 4), "10+4", 14},
		{Erasure(200, 55), "200+55", 255},
		{Replicas(1), "r1", 1},
		{Replicas(3), "r3", 3},
		{Replicas(255), "r255", 255},
	}
	for _, c := range valid {
		if err := c.p.Validate(); err != nil {
			t.Errorf("%+v.Validate() = %v, want nil", c.p, err)
		}
		if got := c.p.String(); got != c.s {
			t.Errorf("%+v.String() = %q, want %q", c.p, got, c.s)
		}
		if got := c.p.Width(); got != c.width {
			t.Errorf("%v.Width() = %d, want %d", c.p, got, c.width)
		}
		got, err := ParsePolicy(c.s)
		if err != nil || got != c.p {
			t.Errorf("ParsePolicy(%q) = %+v, %v; want %+v", c.s, got, err, c.p)
		}
	}
	invalid := []Policy{
		{}, Erasure(0, 2), Erasure(4, -1), Erasure(200, 56), Erasure(256, 0),
		Replicas(0), Replicas(256), {Kind: KindReplica, DataShards: 2, ParityShards: 1},
		{Kind: 3, DataShards: 4, ParityShards: 2},
	}
	for _, p := range invalid {
		if err := p.Validate(); !errors.Is(err, ErrBadPolicy) {
			t.Errorf("%+v.Validate() = %v, want ErrBadPolicy", p, err)
		}
	}
	for _, s := range []string{"", "4", "4+", "+2", "4+2+1", " 4+2", "4 +2", "-4+2", "4+-2", "+4+2", "r", "r0", "r-1", "r+3", "R3", "0+2", "200+56", "99999+1", "4x2", "r3 "} {
		if p, err := ParsePolicy(s); !errors.Is(err, ErrBadPolicy) {
			t.Errorf("ParsePolicy(%q) = %+v, %v; want ErrBadPolicy", s, p, err)
		}
	}
}

func TestShardLen(t *testing.T) {
	cases := []struct {
		p    Policy
		n    uint64
		want int
	}{
		{Erasure(4, 2), 0, 0},
		{Erasure(4, 2), 1, 1},
		{Erasure(4, 2), 4, 1},
		{Erasure(4, 2), 5, 2},
		{Erasure(4, 2), 256 << 10, 64 << 10},
		{Erasure(10, 4), 256<<10 + 1, 26215},
		{Replicas(3), 0, 0},
		{Replicas(3), 1000, 1000},
		{Erasure(0, 2), 10, -1},
		{Replicas(3), math.MaxUint64, -1},
		{Erasure(3, 1), math.MaxUint64, 6148914691236517205},
		{Erasure(1, 1), math.MaxUint64, -1},
	}
	for _, c := range cases {
		if got := ShardLen(c.p, c.n); got != c.want {
			t.Errorf("ShardLen(%v, %d) = %d, want %d", c.p, c.n, got, c.want)
		}
	}
}

// TestAnyKShardsRebuild checks the central property: for each policy and
// value size, every subset of exactly k shards out of k+m rebuilds the
// value byte for byte, and every subset of k-1 fails with ErrTooFewShards.
func TestAnyKShardsRebuild(t *testing.T) {
	for _, p := range []Policy{Erasure(4, 2), Erasure(6, 3), Erasure(10, 4), Replicas(3)} {
		k, w := p.DataShards, p.Width()
		for _, n := range []int{0, 1, k - 1, k + 1, 1000, 3*k + 1, 256<<10 + 1} {
			t.Run(fmt.Sprintf("%v/%d", p, n), func(t *testing.T) {
				value := randBytes(uint64(n), n)
				v := Version{HLC: 42 << 16, Writer: 7}
				enc, err := Encode("/blocks/key", value, p, v)
				if err != nil {
					t.Fatal(err)
				}
				if len(enc) != w {
					t.Fatalf("Encode returned %d shards, want %d", len(enc), w)
				}
				shards := wire(t, enc)
				originals := make([][]byte, w)
				for i, s := range shards {
					originals[i] = bytes.Clone(s.AppendBinary(nil))
				}
				subsets := 0
				for mask := uint(0); mask < 1<<w; mask++ {
					c := bits.OnesCount(mask)
					if c != k && c != k-1 {
						continue
					}
					sub := make([]*Shard, w)
					for i := range w {
						if mask&(1<<i) != 0 {
							sub[i] = shards[i]
						}
					}
					got, err := Decode(sub)
					if c == k-1 {
						var tf *TooFewShardsError
						if !errors.As(err, &tf) || !errors.Is(err, ErrTooFewShards) || tf.Have != k-1 || tf.Need != k {
							t.Fatalf("subset %b: Decode = %v, want TooFewShardsError{%d, %d}", mask, err, k-1, k)
						}
						continue
					}
					subsets++
					if err != nil {
						t.Fatalf("subset %b: Decode: %v", mask, err)
					}
					if !bytes.Equal(got, value) {
						t.Fatalf("subset %b: Decode returned %d bytes, not the %d-byte value", mask, len(got), len(value))
					}
				}
				if want := binomial(w, k); subsets != want {
					t.Fatalf("tried %d subsets, want C(%d,%d) = %d", subsets, w, k, want)
				}
				for i, s := range shards {
					if b := s.AppendBinary(nil); !bytes.Equal(b, originals[i]) {
						t.Fatalf("Decode modified shard %d", i)
					}
				}
			})
		}
	}
}

func binomial(n, k int) int {
	r := 1
	for i := 1; i <= k; i++ {
		r = r * (n - k + i) / i
	}
	return r
}

func TestEncodeHeaders(t *testing.T) {
	value := randBytes(1, 1001)
	p := Erasure(4, 2)
	v := Version{HLC: 5 << 16, Writer: 9}
	shards, err := Encode("k", value, p, v)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range shards {
		h := s.Header
		if h.Format != FormatVersion || h.Key != "k" || h.Policy != p || int(h.Index) != i || h.Tombstone ||
			h.ValueLen != 1001 || h.ValueSum != Checksum(value) || h.ShardSum != Checksum(s.Data) || h.Version != v {
			t.Errorf("shard %d header = %+v", i, h)
		}
		if len(s.Data) != 251 {
			t.Errorf("shard %d has %d bytes, want 251", i, len(s.Data))
		}
		if err := s.Verify(); err != nil {
			t.Errorf("shard %d: Verify: %v", i, err)
		}
	}
	// Data shards are the value, zero padded; Encode did not keep value.
	joined := bytes.Join([][]byte{shards[0].Data, shards[1].Data, shards[2].Data, shards[3].Data}, nil)
	if !bytes.Equal(joined[:1001], value) || !bytes.Equal(joined[1001:], make([]byte, 3)) {
		t.Error("data shards are not the zero-padded value")
	}
	value[0] ^= 0xff
	if shards[0].Data[0] == value[0] {
		t.Error("shard 0 aliases the caller's value")
	}

	if _, err := Encode("k", value, Erasure(0, 1), v); !errors.Is(err, ErrBadPolicy) {
		t.Errorf("Encode with bad policy: %v, want ErrBadPolicy", err)
	}
	if _, err := Encode(strings.Repeat("x", MaxKeyLen+1), value, p, v); !errors.Is(err, ErrKeyTooLong) {
		t.Errorf("Encode with long key: %v, want ErrKeyTooLong", err)
	}
	if _, err := Encode(strings.Repeat("x", MaxKeyLen), value, p, v); err != nil {
		t.Errorf("Encode with MaxKeyLen key: %v", err)
	}
}

// flipEveryBit flips each bit of enc in turn and calls f with the damaged
// copy. For long inputs it flips every bit of the first and last 512 bytes
// and a random sample in between.
func flipEveryBit(enc []byte, seed uint64, f func(bit int, b []byte)) {
	b := bytes.Clone(enc)
	try := func(bit int) {
		b[bit/8] ^= 1 << (bit % 8)
		f(bit, b)
		b[bit/8] ^= 1 << (bit % 8)
	}
	if len(enc) <= 1024 {
		for bit := range len(enc) * 8 {
			try(bit)
		}
		return
	}
	for bit := range 512 * 8 {
		try(bit)
		try((len(enc)-512)*8 + bit)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	for range 2000 {
		try(512*8 + r.IntN((len(enc)-1024)*8))
	}
}

// TestBitFlipDetected flips every bit of every encoded shard: ParseShard
// must reject it, and Decode of the remaining shards must still return the
// value. It also damages the in-memory shard (data or header field) that is
// handed to Decode directly, which must then never return wrong bytes.
func TestBitFlipDetected(t *testing.T) {
	for _, c := range []struct {
		p Policy
		n int
	}{{Erasure(4, 2), 100}, {Erasure(4, 2), 0}, {Replicas(3), 50}, {Erasure(6, 3), 256<<10 + 1}} {
		t.Run(fmt.Sprintf("%v/%d", c.p, c.n), func(t *testing.T) {
			value := randBytes(3, c.n)
			shards := wire(t, mustEncode(t, "/blocks/QmFlip", value, c.p, Version{HLC: 1 << 20, Writer: 1}))
			for i, s := range shards {
				enc := s.AppendBinary(nil)
				flipEveryBit(enc, uint64(i), func(bit int, b []byte) {
					if _, err := ParseShard(b); !errors.Is(err, ErrCorrupt) {
						t.Fatalf("shard %d bit %d flipped: ParseShard = %v, want ErrCorrupt", i, bit, err)
					}
				})
				rest := append([]*Shard(nil), shards...)
				rest[i] = nil
				if got, err := Decode(rest); err != nil || !bytes.Equal(got, value) {
					t.Fatalf("Decode without shard %d: %v", i, err)
				}
				// Damage the shard in memory: Decode must notice.
				if len(s.Data) > 0 {
					for _, off := range []int{0, len(s.Data) / 2, len(s.Data) - 1} {
						bad := cloneShard(s)
						bad.Data[off] ^= 0x10
						if err := bad.Verify(); !errors.Is(err, ErrCorrupt) {
							t.Fatalf("shard %d byte %d changed: Verify = %v", i, off, err)
						}
						rest[i] = bad
						if got, err := Decode(rest); err != nil || !bytes.Equal(got, value) {
							t.Fatalf("Decode with shard %d data damaged: %v", i, err)
						}
					}
				}
				for name, mutate := range headerMutations {
					bad := cloneShard(s)
					mutate(&bad.Header)
					rest[i] = bad
					got, err := Decode(rest)
					if err != nil || !bytes.Equal(got, value) {
						t.Fatalf("Decode with shard %d header %s changed: %v", i, name, err)
					}
				}
			}
		})
	}
}

var headerMutations = map[string]func(h *Header){
	"format":    func(h *Header) { h.Format++ },
	"key":       func(h *Header) { h.Key += "x" },
	"policy":    func(h *Header) { h.Policy.ParityShards++ },
	"index":     func(h *Header) { h.Index ^= 1 },
	"tombstone": func(h *Header) { h.Tombstone = !h.Tombstone },
	"valuelen":  func(h *Header) { h.ValueLen++ },
	"valuesum":  func(h *Header) { h.ValueSum++ },
	"shardsum":  func(h *Header) { h.ShardSum++ },
	"hlc":       func(h *Header) { h.Version.HLC++ },
	"writer":    func(h *Header) { h.Version.Writer++ },
}

func mustEncode(t testing.TB, key string, value []byte, p Policy, v Version) []*Shard {
	t.Helper()
	s, err := Encode(key, value, p, v)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDecodeNeverWrong covers damage beyond what the checksums of single
// shards can see, and beyond m shards.
func TestDecodeNeverWrong(t *testing.T) {
	value := randBytes(4, 10000)
	p := Erasure(4, 2)
	shards := mustEncode(t, "k", value, p, Version{HLC: 1, Writer: 1})

	// m damaged shards: still rebuilt from the other k.
	two := append([]*Shard(nil), shards...)
	for _, i := range []int{1, 4} {
		two[i] = cloneShard(shards[i])
		two[i].Data[7] ^= 1
	}
	if got, err := Decode(two); err != nil || !bytes.Equal(got, value) {
		t.Fatalf("two damaged shards: Decode = %v", err)
	}

	// m+1 damaged shards: an error, not bytes.
	three := append([]*Shard(nil), two...)
	three[0] = cloneShard(shards[0])
	three[0].Data[0] ^= 1
	got, err := Decode(three)
	var tf *TooFewShardsError
	if !errors.As(err, &tf) || tf.Have != 3 || tf.Need != 4 || got != nil {
		t.Fatalf("three damaged shards: Decode = %d bytes, %v; want TooFewShardsError{3, 4}", len(got), err)
	}

	// A shard rewritten with a matching ShardSum (a buggy writer): the value
	// checksum catches it.
	liar := append([]*Shard(nil), shards...)
	liar[2] = cloneShard(shards[2])
	liar[2].Data[5] ^= 1
	liar[2].Header.ShardSum = Checksum(liar[2].Data)
	if got, err := Decode(liar); !errors.Is(err, ErrCorrupt) || got != nil {
		t.Fatalf("consistent but wrong shard: Decode = %d bytes, %v; want ErrCorrupt", len(got), err)
	}

	// Shards out of place count as missing.
	swapped := append([]*Shard(nil), shards...)
	swapped[0], swapped[1] = swapped[1], swapped[0]
	if got, err := Decode(swapped); err != nil || !bytes.Equal(got, value) {
		t.Fatalf("two swapped shards: Decode = %v", err)
	}
	swapped[2], swapped[3] = swapped[3], swapped[2]
	if _, err := Decode(swapped); !errors.Is(err, ErrTooFewShards) {
		t.Fatalf("four swapped shards: Decode = %v, want ErrTooFewShards", err)
	}

	for _, in := range [][]*Shard{nil, {}, make([]*Shard, 6), {nil, {}, {Data: []byte{1}}}} {
		if got, err := Decode(in); !errors.Is(err, ErrTooFewShards) || got != nil {
			t.Errorf("Decode(%v) = %d bytes, %v; want ErrTooFewShards", in, len(got), err)
		}
	}
}

func TestDecodeMixedVersions(t *testing.T) {
	p := Erasure(4, 2)
	old := mustEncode(t, "k", []byte("old value"), p, Version{HLC: 1 << 16, Writer: 1})
	cur := mustEncode(t, "k", []byte("new value!"), p, Version{HLC: 2 << 16, Writer: 1})

	mixed := []*Shard{old[0], cur[1], old[2], cur[3], old[4], cur[5]}
	var tf *TooFewShardsError
	if _, err := Decode(mixed); !errors.As(err, &tf) || tf.Have != 3 || tf.Need != 4 {
		t.Fatalf("3+3 shards of two versions: Decode = %v, want TooFewShardsError{3, 4}", err)
	}
	mixed[0] = cur[0]
	if got, err := Decode(mixed); err != nil || string(got) != "new value!" {
		t.Fatalf("4 new + 2 old shards: Decode = %q, %v", got, err)
	}
	other := mustEncode(t, "other", []byte("new value!"), p, Version{HLC: 2 << 16, Writer: 1})
	if _, err := Decode([]*Shard{cur[0], cur[1], cur[2], other[3], nil, nil}); !errors.Is(err, ErrTooFewShards) {
		t.Fatalf("shard of another key counted: %v", err)
	}
}

func TestReplicaRoundTrip(t *testing.T) {
	p := Replicas(3)
	value := randBytes(5, 5000)
	shards := wire(t, mustEncode(t, "/r", value, p, Version{HLC: 9, Writer: 2}))
	for i, s := range shards {
		if !bytes.Equal(s.Data, value) || s.Header.ShardSum != Checksum(value) || s.Header.Policy != p {
			t.Fatalf("replica %d is not a copy of the value: %+v", i, s.Header)
		}
		only := make([]*Shard, 3)
		only[i] = s
		got, err := Decode(only)
		if err != nil || !bytes.Equal(got, value) {
			t.Fatalf("Decode from replica %d alone: %v", i, err)
		}
		got[0] ^= 1 // the result is the caller's
		if !bytes.Equal(s.Data, value) {
			t.Fatalf("Decode result aliases replica %d", i)
		}
	}
	if _, err := Decode(make([]*Shard, 3)); !errors.Is(err, ErrTooFewShards) {
		t.Fatalf("no replicas: %v", err)
	}
}

func TestTombstoneRoundTrip(t *testing.T) {
	v := Version{HLC: 77 << 16, Writer: 3}
	for _, p := range []Policy{Erasure(4, 2), Replicas(2)} {
		ts := Tombstone("/gone", p, v)
		if len(ts) != p.Width() {
			t.Fatalf("%v: Tombstone returned %d shards", p, len(ts))
		}
		shards := wire(t, ts)
		for i, s := range shards {
			h := s.Header
			if !h.Tombstone || h.ValueLen != 0 || len(s.Data) != 0 || h.Key != "/gone" || h.Version != v || int(h.Index) != i {
				t.Fatalf("%v: tombstone shard %d = %+v", p, i, h)
			}
			if s.Size() != HeaderSize(len("/gone")) {
				t.Fatalf("tombstone shard has size %d", s.Size())
			}
		}
		got, err := Decode(shards)
		if !errors.Is(err, ErrTombstone) || errors.Is(err, ErrCorrupt) || got != nil {
			t.Fatalf("%v: Decode of tombstones = %q, %v; want ErrTombstone", p, got, err)
		}
		few := append([]*Shard(nil), shards...)
		for i := p.DataShards - 1; i < p.Width(); i++ {
			few[i] = nil
		}
		if _, err := Decode(few); !errors.Is(err, ErrTooFewShards) {
			t.Fatalf("%v: Decode of k-1 tombstones = %v", p, err)
		}
	}
	if Tombstone("k", Erasure(0, 1), v) != nil || Tombstone(strings.Repeat("k", MaxKeyLen+1), Replicas(3), v) != nil {
		t.Fatal("Tombstone accepted a bad policy or key")
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	for _, keyLen := range []int{0, 1, 100, MaxKeyLen} {
		for _, p := range []Policy{Erasure(4, 2), Erasure(200, 55), Replicas(1), Replicas(255)} {
			h := Header{
				Format:    FormatVersion,
				Key:       string(randBytes(uint64(keyLen), keyLen)),
				Policy:    p,
				Index:     uint8(r.IntN(p.Width())),
				ValueLen:  r.Uint64N(math.MaxInt64),
				ValueSum:  r.Uint64(),
				ShardSum:  r.Uint64(),
				Version:   Version{HLC: r.Uint64(), Writer: r.Uint64()},
				Tombstone: false,
			}
			b := h.AppendBinary([]byte("prefix"))
			b = append(b, "trailing data"...)
			got, n, err := DecodeHeader(b[len("prefix"):])
			if err != nil || got != h || n != h.Size() || n != HeaderSize(keyLen) {
				t.Fatalf("key %d %v: DecodeHeader = %+v, %d, %v; want %+v, %d", keyLen, p, got, n, err, h, h.Size())
			}
			// Every truncation is rejected.
			enc := b[len("prefix") : len("prefix")+n]
			for cut := range n {
				if _, _, err := DecodeHeader(enc[:cut]); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("header cut to %d of %d bytes: %v, want ErrCorrupt", cut, n, err)
				}
			}
		}
	}
	// A key over MaxKeyLen cannot be written so that it reads back.
	long := Header{Format: FormatVersion, Key: strings.Repeat("k", MaxKeyLen+1), Policy: Erasure(4, 2)}
	if _, _, err := DecodeHeader(long.AppendBinary(nil)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("header with a %d-byte key: DecodeHeader = %v, want ErrCorrupt", MaxKeyLen+1, err)
	}
}

// TestDecodeHeaderRejects writes headers that are well formed byte-wise, with
// a correct checksum, but say something impossible.
func TestDecodeHeaderRejects(t *testing.T) {
	good := Header{Format: FormatVersion, Key: "k", Policy: Erasure(4, 2), Index: 5, ValueLen: 10}
	if _, _, err := DecodeHeader(good.AppendBinary(nil)); err != nil {
		t.Fatal(err)
	}
	patch := func(off int, val byte) []byte {
		b := good.AppendBinary(nil)
		b[off] = val
		return resum(b)
	}
	longKey := good.AppendBinary(nil)
	longKey[10], longKey[11] = 0x20, 0x01 // 8193
	longKey = append(longKey, make([]byte, 9000)...)
	badSum := good.AppendBinary(nil)
	badSum[len(badSum)-1]++
	cases := []struct {
		name, why string
		b         []byte
	}{
		{"magic", "bad magic", patch(0, 'X')},
		{"format 0", "unsupported header format 0", patch(4, 0)},
		{"format 2", "unsupported header format 2", patch(4, 2)},
		{"kind 0", "unknown kind 0", patch(5, 0)},
		{"kind 3", "unknown kind 3", patch(5, 3)},
		{"k 0", "0 data and 2 parity", patch(6, 0)},
		{"width 256", "exceeds 255", patch(7, 252)},
		{"index 6", "shard index 6 outside", patch(8, 6)},
		{"flags", "unknown header flags", patch(9, 2)},
		{"tombstone with length", "tombstone with value length 10", patch(9, 1)},
		{"replica k 4", "replica policy with 4 data shards", patch(5, byte(KindReplica))},
		{"value len > MaxInt", "too large", patch(12, 0x80)},
		{"key len 8193", "key length 8193 exceeds 8192", longKey},
		{"bad checksum", "header checksum mismatch", badSum},
		{"key len past end", "header truncated", patch(11, 200)},
	}
	for _, c := range cases {
		h, _, err := DecodeHeader(c.b)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: DecodeHeader = %+v, %v; want ErrCorrupt saying %q", c.name, h, err, c.why)
		}
	}
	bad := Header{Format: FormatVersion, Key: "k", Policy: Erasure(300, 2)}
	if _, _, err := DecodeHeader(bad.AppendBinary(nil)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("header with policy 300+2 read back: %v", err)
	}
}

// resum recomputes the trailing checksum of an encoded header whose key
// length field is right.
func resum(b []byte) []byte {
	kl := int(b[10])<<8 | int(b[11])
	n := HeaderSize(kl)
	if n > len(b) {
		return b
	}
	b = b[:n-headerSumLen]
	s := Checksum(b)
	for i := 7; i >= 0; i-- {
		b = append(b, byte(s>>(8*i)))
	}
	return b
}

func TestParseShardRejects(t *testing.T) {
	s := mustEncode(t, "k", []byte("hello, world"), Erasure(4, 2), Version{HLC: 1})[0]
	enc := s.AppendBinary(nil)
	if _, err := ParseShard(append(bytes.Clone(enc), 0)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("trailing byte: %v", err)
	}
	for cut := range len(enc) {
		if _, err := ParseShard(enc[:cut]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("shard cut to %d of %d bytes: %v", cut, len(enc), err)
		}
	}
	p, err := ParseShard(enc)
	if err != nil {
		t.Fatal(err)
	}
	if cap(p.Data) != len(p.Data) || &p.Data[0] != &enc[len(enc)-len(p.Data)] {
		t.Error("ParseShard Data should alias the input with capacity cut to length")
	}
}

func TestVersion(t *testing.T) {
	a := Version{HLC: 1, Writer: 9}
	b := Version{HLC: 2, Writer: 1}
	c := Version{HLC: 2, Writer: 2}
	if !a.Less(b) || !b.Less(c) || c.Less(b) || b.Less(b) || !(Version{}).Less(a) {
		t.Error("Version.Less does not order by HLC then writer")
	}
	if !(Version{}).IsZero() || a.IsZero() {
		t.Error("IsZero")
	}
	if got := (Version{HLC: 1700000000000<<16 | 3, Writer: 255}).String(); got != "1700000000000.3@ff" {
		t.Errorf("String = %q", got)
	}
}

func TestClock(t *testing.T) {
	now := time.UnixMilli(1000)
	c := NewClock(5, func() time.Time { return now })
	v1 := c.Next()
	if v1.HLC != 1000<<16 || v1.Writer != 5 {
		t.Fatalf("first version = %+v, want HLC 1000<<16", v1)
	}
	v2 := c.Next()           // time stands still
	now = time.UnixMilli(10) // time goes back
	v3 := c.Next()
	if !(v1.Less(v2) && v2.Less(v3)) || v3.HLC != 1000<<16|2 {
		t.Fatalf("versions %v %v %v not strictly increasing by logical ticks", v1, v2, v3)
	}
	c.Observe(Version{HLC: 5000 << 16, Writer: 1})
	if v := c.Next(); v.HLC != 5000<<16|1 {
		t.Fatalf("after Observe(5000ms): %v", v)
	}
	c.Observe(Version{HLC: 1}) // the past changes nothing
	now = time.UnixMilli(9000)
	if v := c.Next(); v.HLC != 9000<<16 {
		t.Fatalf("after wall clock passes: %v", v)
	}
	if NewClock(1, nil).Next().HLC>>16 < uint64(time.Now().UnixMilli()-60000) {
		t.Fatal("nil now does not use time.Now")
	}
}

func TestClockConcurrent(t *testing.T) {
	c := NewClock(1, nil)
	const workers, per = 8, 5000
	got := make([][]Version, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			vs := make([]Version, per)
			for i := range vs {
				if i%100 == 0 {
					c.Observe(Version{HLC: c.Next().HLC + 3})
				}
				vs[i] = c.Next()
			}
			got[w] = vs
		})
	}
	wg.Wait()
	seen := make(map[uint64]bool, workers*per)
	for w, vs := range got {
		for i, v := range vs {
			if i > 0 && !vs[i-1].Less(v) {
				t.Fatalf("worker %d: version %d (%v) not after %v", w, i, v, vs[i-1])
			}
			if seen[v.HLC] {
				t.Fatalf("HLC %v issued twice", v)
			}
			seen[v.HLC] = true
		}
	}
}

func TestTooFewShardsError(t *testing.T) {
	var err error = fmt.Errorf("get: %w", &TooFewShardsError{Have: 3, Need: 4})
	if !errors.Is(err, ErrTooFewShards) || errors.Is(err, ErrCorrupt) {
		t.Fatal("errors.Is")
	}
	var tf *TooFewShardsError
	if !errors.As(err, &tf) || tf.Have != 3 || tf.Need != 4 {
		t.Fatal("errors.As")
	}
	if got := tf.Error(); got != "coding: found 3 valid shards, need 4" {
		t.Fatalf("Error() = %q", got)
	}
}

// TestReleaseReuse: a buffer handed back by Release and reused for a
// shorter value must not leak the old bytes into padding or parity.
func TestReleaseReuse(t *testing.T) {
	p := Erasure(4, 2)
	long := bytes.Repeat([]byte{0xAB}, 256<<10)
	shards, err := Encode("/k/long", long, p, Version{HLC: 1})
	if err != nil {
		t.Fatal(err)
	}
	Release(shards)
	if shards[0].Data != nil {
		t.Fatal("Release left Data in place")
	}
	for _, n := range []int{256<<10 - 1, 100<<10 + 3, 17} {
		short := bytes.Repeat([]byte{0x11}, n)
		again, err := Encode("/k/short", short, p, Version{HLC: 2})
		if err != nil {
			t.Fatal(err)
		}
		// Rebuild from parity too, so padding and parity are both checked.
		sub := []*Shard{nil, again[1], nil, again[3], again[4], again[5]}
		got, err := Decode(sub)
		if err != nil || !bytes.Equal(got, short) {
			t.Fatalf("%d bytes after reuse: %d bytes back, err %v", n, len(got), err)
		}
		Release(again)
	}
	Release(nil) // no-op
}

// TestParseShardUnverified: the header and length are checked, the data
// not; Decode still refuses a shard whose data was damaged.
func TestParseShardUnverified(t *testing.T) {
	p := Erasure(4, 2)
	val := bytes.Repeat([]byte("abc"), 30000)
	shards, err := Encode("/k", val, p, Version{HLC: 9})
	if err != nil {
		t.Fatal(err)
	}
	var parsed []*Shard
	for i, sh := range shards {
		b := sh.AppendBinary(nil)
		if i == 0 {
			b[len(b)-1] ^= 1 // damage data shard 0
		}
		got, err := ParseShardUnverified(b)
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
		parsed = append(parsed, got)
		if _, err := ParseShardUnverified(b[:len(b)-1]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("shard %d truncated: %v, want ErrCorrupt", i, err)
		}
	}
	if err := parsed[0].Verify(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Verify of the damaged shard: %v", err)
	}
	got, err := Decode(parsed)
	if err != nil || !bytes.Equal(got, val) {
		t.Fatalf("decode with a damaged data shard: %d bytes, %v", len(got), err)
	}
	parsed[1].Data[0] ^= 1
	parsed[2].Data[0] ^= 1
	if _, err := Decode(parsed); !errors.Is(err, ErrTooFewShards) {
		t.Fatalf("decode with 3 damaged shards: %v, want ErrTooFewShards", err)
	}
}
