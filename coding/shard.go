package coding

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/klauspost/reedsolomon"
)

// Shard is one piece of a value as stored on one node: a header and the
// shard's data bytes (ShardLen of the header; none for a tombstone).
type Shard struct {
	Header Header
	Data   []byte

	pooled []byte // the buffer Encode took from its pool (on shard 0 only)
}

// bufPool holds the erasure-coding buffers of released writes: allocating
// (and faulting in) a fresh buffer per value costs more than the
// Reed-Solomon encode itself.
var bufPool sync.Pool

func getBuf(n int) []byte {
	if b, ok := bufPool.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

// Release hands the buffer behind shards made by Encode back for reuse.
// Neither the shards nor any slice of their Data may be used afterwards.
// Calling it is optional (without it the buffer is garbage collected); it
// is a no-op for shards that Encode did not make.
func Release(shards []*Shard) {
	if len(shards) == 0 || shards[0] == nil || shards[0].pooled == nil {
		return
	}
	b := shards[0].pooled
	for _, s := range shards {
		if s != nil {
			s.pooled, s.Data = nil, nil
		}
	}
	bufPool.Put(&b)
}

// Size is the encoded size of s: header plus data.
func (s *Shard) Size() int { return s.Header.Size() + len(s.Data) }

// AppendBinary appends the encoding of s (header, then data) to dst and
// returns the extended slice.
func (s *Shard) AppendBinary(dst []byte) []byte {
	dst = s.Header.AppendBinary(dst)
	return append(dst, s.Data...)
}

// ParseShard decodes and verifies an encoded shard: the header, that exactly
// the header's ShardLen bytes follow it, and that they match ShardSum.
// The returned Data aliases b (with its capacity cut to its length): the
// caller must not modify b while it uses the shard. Errors wrap ErrCorrupt.
func ParseShard(b []byte) (*Shard, error) {
	s, err := ParseShardUnverified(b)
	if err != nil {
		return nil, err
	}
	if sum := Checksum(s.Data); sum != s.Header.ShardSum {
		return nil, corruptf("shard %d of %q: data checksum mismatch", s.Header.Index, s.Header.Key)
	}
	return s, nil
}

// ParseShardUnverified is ParseShard without the data checksum: the header
// is checked (its own checksum and sanity) and the data length, not the
// data. For a reader that hands the shard to Decode, which verifies every
// shard it uses, so the data is hashed once; anyone else calls Verify.
func ParseShardUnverified(b []byte) (*Shard, error) {
	h, n, err := DecodeHeader(b)
	if err != nil {
		return nil, err
	}
	want := h.ShardLen()
	if len(b)-n != want {
		return nil, corruptf("shard %d of %q: %d data bytes, header says %d", h.Index, h.Key, len(b)-n, want)
	}
	return &Shard{Header: h, Data: b[n:len(b):len(b)]}, nil
}

// Verify checks s as ParseShard would: a sane header, len(Data) equal to
// the header's ShardLen, and Data matching ShardSum. Errors wrap ErrCorrupt.
func (s *Shard) Verify() error {
	if err := s.checkShape(); err != nil {
		return err
	}
	if Checksum(s.Data) != s.Header.ShardSum {
		return corruptf("shard %d of %q: data checksum mismatch", s.Header.Index, s.Header.Key)
	}
	return nil
}

// checkShape is Verify without the data checksum.
func (s *Shard) checkShape() error {
	if err := s.Header.check(); err != nil {
		return err
	}
	if want := s.Header.ShardLen(); len(s.Data) != want {
		return corruptf("shard %d of %q: %d data bytes, header says %d", s.Header.Index, s.Header.Key, len(s.Data), want)
	}
	return nil
}

// encoders caches one reedsolomon.Encoder per (k, m); they are safe for
// concurrent use and keep an inversion cache for Reconstruct.
var encoders sync.Map // encoderKey -> reedsolomon.Encoder

type encoderKey struct{ k, m int }

// typicalValue is the value size the encoders tune their goroutine count
// for: IPFS blocks are mostly 256 KiB, and smaller values go to replicas.
const typicalValue = 256 << 10

func encoder(k, m int) (reedsolomon.Encoder, error) {
	key := encoderKey{k, m}
	if e, ok := encoders.Load(key); ok {
		return e.(reedsolomon.Encoder), nil
	}
	e, err := reedsolomon.New(k, m, reedsolomon.WithAutoGoroutines((typicalValue+k-1)/k))
	if err != nil {
		return nil, fmt.Errorf("%w: reedsolomon %d+%d: %v", ErrBadPolicy, k, m, err)
	}
	actual, _ := encoders.LoadOrStore(key, e)
	return actual.(reedsolomon.Encoder), nil
}

// Encode splits value into p.Width() shards and sets every header field.
// For erasure the data is cut into k zero-padded pieces of ShardLen bytes
// and m Reed-Solomon parity pieces are computed; for replica each shard
// holds the whole value.
//
// value is only read; the caller keeps it. All shards' Data alias one
// freshly allocated buffer (replica shards share the same bytes), so they
// must not be modified. Errors wrap ErrBadPolicy or ErrKeyTooLong.
func Encode(key string, value []byte, p Policy, v Version) ([]*Shard, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if len(key) > MaxKeyLen {
		return nil, fmt.Errorf("%w: %d bytes, max %d", ErrKeyTooLong, len(key), MaxKeyLen)
	}
	w := p.Width()
	sl := ShardLen(p, uint64(len(value)))
	data := make([][]byte, w)
	var buf []byte
	switch {
	case len(value) == 0:
		// Every shard is empty; Reed-Solomon cannot split nothing.
	case p.Kind == KindReplica:
		cp := append([]byte(nil), value...)
		for i := range data {
			data[i] = cp
		}
	default:
		buf = getBuf(w * sl)
		n := copy(buf, value)
		clear(buf[n : p.DataShards*sl]) // padding of the last data shard
		for i := range data {
			data[i] = buf[i*sl : (i+1)*sl : (i+1)*sl]
		}
		if p.ParityShards > 0 {
			enc, err := encoder(p.DataShards, p.ParityShards)
			if err != nil {
				return nil, err
			}
			if err := enc.Encode(data); err != nil {
				return nil, fmt.Errorf("coding: reedsolomon encode: %w", err)
			}
		}
	}
	shards := make([]Shard, w)
	out := make([]*Shard, w)
	valueSum := Checksum(value)
	for i := range shards {
		sum := valueSum // a replica shard is the value
		if p.Kind != KindReplica {
			sum = Checksum(data[i])
		}
		shards[i] = Shard{
			Header: Header{
				Format:   FormatVersion,
				Key:      key,
				Policy:   p,
				Index:    uint8(i),
				ValueLen: uint64(len(value)),
				ValueSum: valueSum,
				ShardSum: sum,
				Version:  v,
			},
			Data: data[i],
		}
		out[i] = &shards[i]
	}
	shards[0].pooled = buf
	return out, nil
}

// Tombstone returns p.Width() header-only shards marking key deleted at v.
// It returns nil if p is invalid or key is longer than MaxKeyLen (Encode
// with the same arguments says which).
func Tombstone(key string, p Policy, v Version) []*Shard {
	if p.Validate() != nil || len(key) > MaxKeyLen {
		return nil
	}
	w := p.Width()
	empty := Checksum(nil)
	shards := make([]Shard, w)
	out := make([]*Shard, w)
	for i := range shards {
		shards[i].Header = Header{
			Format:    FormatVersion,
			Key:       key,
			Policy:    p,
			Index:     uint8(i),
			Tombstone: true,
			ValueSum:  empty,
			ShardSum:  empty,
			Version:   v,
		}
		out[i] = &shards[i]
	}
	return out
}

// identity is what all shards of one write share.
type identity struct {
	key       string
	policy    Policy
	version   Version
	valueLen  uint64
	valueSum  uint64
	tombstone bool
}

func identityOf(h *Header) identity {
	return identity{h.Key, h.Policy, h.Version, h.ValueLen, h.ValueSum, h.Tombstone}
}

// Decode rebuilds a value from the shards of one write. shards[i] is the
// shard stored at position i (len(shards) should be the policy's Width; nil
// means missing; positions past the slice count as missing).
//
// A shard counts only if its header is sane, its Index equals its position,
// its length matches and its data matches ShardSum; shards that disagree on
// key, version, policy, value length or value checksum are split into
// groups and the largest group is used. When the k data shards are all
// there they are concatenated without Reed-Solomon and checked against
// ValueSum alone (each shard's ShardSum covers the same bytes). Otherwise,
// or when that check fails, shards are verified lazily, data shards
// first, until k valid ones are found, the missing data shards are
// rebuilt from parity, and the result is checked against ValueSum.
//
// Decode reads shards and their Data but never modifies them; the returned
// slice is freshly allocated and owned by the caller. Errors:
// *TooFewShardsError (errors.Is ErrTooFewShards) when fewer than k valid
// shards of one write are present; an error wrapping ErrCorrupt when they
// are present but the rebuilt value does not match ValueSum; ErrTombstone
// (with a nil value) when they are k valid shards of a delete marker.
func Decode(shards []*Shard) ([]byte, error) {
	type group struct {
		id    identity
		first int // position of the first member
		n     int
	}
	var groups []group
	need := 0
	for i, s := range shards {
		if s == nil || int(s.Header.Index) != i || s.checkShape() != nil {
			continue
		}
		if need == 0 {
			need = s.Header.Policy.DataShards
		}
		id := identityOf(&s.Header)
		found := false
		for g := range groups {
			if groups[g].id == id {
				groups[g].n++
				found = true
				break
			}
		}
		if !found {
			groups = append(groups, group{id: id, first: i, n: 1})
		}
	}
	if need == 0 {
		need = 1
	}
	sort.SliceStable(groups, func(a, b int) bool { return groups[a].n > groups[b].n })

	best := &TooFewShardsError{Have: 0, Need: need}
	var corrupt error
	for gi := range groups {
		g := &groups[gi]
		k := g.id.policy.DataShards
		if g.n < k {
			if gi == 0 {
				best = &TooFewShardsError{Have: g.n, Need: k}
			}
			continue
		}
		if !g.id.tombstone {
			if value, ok := joinUnverified(g.id, shards); ok {
				return value, nil
			}
		}
		// Verify members in index order (data shards first) until k pass.
		valid := make([][]byte, g.id.policy.Width())
		have := 0
		for i := g.first; i < len(shards) && i < len(valid) && have < k; i++ {
			s := shards[i]
			if s == nil || int(s.Header.Index) != i || identityOf(&s.Header) != g.id || s.Verify() != nil {
				continue
			}
			valid[i] = s.Data
			have++
		}
		if have < k {
			if gi == 0 {
				best = &TooFewShardsError{Have: have, Need: k}
			}
			continue
		}
		if g.id.tombstone {
			return nil, fmt.Errorf("%w: %q deleted at %v", ErrTombstone, g.id.key, g.id.version)
		}
		value, err := join(g.id, valid)
		if err == nil {
			return value, nil
		}
		if corrupt == nil {
			corrupt = err
		}
	}
	if corrupt != nil {
		return nil, corrupt
	}
	return nil, best
}

// joinUnverified is Decode's fast path: when the k data shards of id are
// all present, it joins them without checking each against its ShardSum,
// for the value checksum covers the same bytes. On any mismatch Decode
// verifies shard by shard, and rebuilds from parity what fails.
func joinUnverified(id identity, shards []*Shard) ([]byte, bool) {
	k := id.policy.DataShards
	if len(shards) < k {
		return nil, false
	}
	valid := make([][]byte, id.policy.Width())
	for i := 0; i < k; i++ {
		s := shards[i]
		if s == nil || int(s.Header.Index) != i || identityOf(&s.Header) != id || s.checkShape() != nil {
			return nil, false
		}
		valid[i] = s.Data
	}
	value, err := join(id, valid)
	return value, err == nil
}

// join assembles the value from exactly k shards (valid[i] nil for the
// rest) and checks it against the value checksum.
func join(id identity, valid [][]byte) ([]byte, error) {
	p := id.policy
	n := int(id.valueLen) // check() bounded it by MaxInt
	var value []byte
	switch {
	case n == 0:
		value = []byte{}
	case p.Kind == KindReplica:
		for _, d := range valid {
			if d != nil {
				value = append([]byte(nil), d...)
				break
			}
		}
	default:
		k := p.DataShards
		sl := len(firstNonNil(valid))
		var buf []byte
		if !slices.ContainsFunc(valid[:k], func(d []byte) bool { return d == nil }) {
			// Every data shard is there: bytes.Join allocates without
			// first zeroing what it copies them over.
			buf = bytes.Join(valid[:k], nil)
			if len(buf) != k*sl {
				return nil, corruptf("%q at %v: data shards of unequal lengths", id.key, id.version)
			}
		} else {
			buf = make([]byte, k*sl)
			for i := 0; i < k; i++ {
				if valid[i] != nil {
					copy(buf[i*sl:], valid[i])
					valid[i] = buf[i*sl : (i+1)*sl : (i+1)*sl]
				} else {
					// Zero length with capacity: Reconstruct fills it in place.
					valid[i] = buf[i*sl : i*sl : (i+1)*sl]
				}
			}
			enc, err := encoder(k, p.ParityShards)
			if err != nil {
				return nil, err
			}
			if err := enc.ReconstructData(valid); err != nil {
				return nil, corruptf("%q at %v: reedsolomon: %v", id.key, id.version, err)
			}
			// Reconstruct fills our zero-length slices in place; copy in
			// case a future version allocates instead.
			for i := 0; i < k; i++ {
				if len(valid[i]) != sl {
					return nil, corruptf("%q at %v: reconstructed shard %d has %d bytes", id.key, id.version, i, len(valid[i]))
				}
				if &valid[i][0] != &buf[i*sl] {
					copy(buf[i*sl:], valid[i])
				}
			}
		}
		for _, c := range buf[n:] {
			if c != 0 {
				return nil, corruptf("%q at %v: nonzero padding", id.key, id.version)
			}
		}
		value = buf[:n:n]
	}
	if Checksum(value) != id.valueSum {
		return nil, corruptf("%q at %v: value checksum mismatch", id.key, id.version)
	}
	return value, nil
}

func firstNonNil(bs [][]byte) []byte {
	for _, b := range bs {
		if b != nil {
			return b
		}
	}
	return nil
}
