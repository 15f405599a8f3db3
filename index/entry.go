package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"iter"
	"math"
	"slices"
)

// MaxKeyLen is the longest key the index accepts, in bytes.
const MaxKeyLen = 8 << 10

var (
	// ErrNotFound is returned by Get when the index holds no entry for the key.
	ErrNotFound = errors.New("index: not found")
	// ErrCorrupt is matched (errors.Is) by every error about a stored entry
	// value that does not decode. Such errors are *CorruptError values that
	// name the key, so a caller can purge it with Delete and rebuild it.
	ErrCorrupt = errors.New("index: corrupt entry")
	// ErrInvalidKey is returned by Put for an empty key or one longer than
	// MaxKeyLen. Nothing was written; retrying the same call cannot succeed.
	ErrInvalidKey = errors.New("index: invalid key")
	// ErrOldFormat is returned by Open for an index an older version of
	// go-ds-cluster wrote (schema 1: one shard per key, the previous one
	// under a name of its own; schema 2: one previous version, named by
	// its version alone; schema 3: one position per version, shards named
	// without it; schema 4: the volume store found shards by name in a
	// table of its own). Nothing is converted.
	ErrOldFormat = errors.New("index: written by an older go-ds-cluster (schema 1 to 4); this version keeps a list of shards per key, by version and position, with where each shard is in the volume store (schema 5), and does not convert: move the node's folder aside and let repair refill the node")
)

// CorruptError reports a stored entry value that does not decode.
// errors.Is(err, ErrCorrupt) is true for it.
type CorruptError struct {
	Key    string // the bbolt key the value was stored under
	Reason string // what is wrong with the bytes
}

func (e *CorruptError) Error() string {
	k := e.Key
	if len(k) > 64 {
		k = k[:64] + "..."
	}
	return fmt.Sprintf("index: corrupt entry %q: %s", k, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Version orders writes of one key: by HLC, then by Writer.
type Version struct {
	HLC    uint64 // hybrid logical clock of the write
	Writer uint64 // id of the writer, breaks HLC ties
}

// IsZero reports whether v is the zero version: no version.
func (v Version) IsZero() bool { return v == Version{} }

// Less reports whether v is older than o.
func (v Version) Less(o Version) bool {
	if v.HLC != o.HLC {
		return v.HLC < o.HLC
	}
	return v.Writer < o.Writer
}

// Held is one version of a key whose shard the node holds.
type Held struct {
	Version   Version
	Index     uint8 // shard index (position) of this version's shard
	Kind      uint8 // policy kind (1 erasure, 2 replica); opaque to the index
	K, M      uint8 // policy data/parity shards; opaque to the index
	Tombstone bool
	ValueLen  uint64
	ShardLen  uint32 // bytes of shard data on disk
	ShardSum  uint64
	// Loc is where the shard's bytes are in a shard store that does not
	// find them by name (a volume.Loc), opaque to the index; zero in one
	// that does.
	Loc [16]byte
}

// Entry is what the node holds of Key: the shards of the newest version
// it has seen (the embedded Held, at the lowest position it holds, and
// Also, at the others: during a rebalance a node may own one position of
// a slot in the map and another in the target) and, newest first, the
// shards of older versions it keeps beside them (Older; a version's
// positions in ascending order). Each shard has a name of its own (the
// node's shardName), so keeping, restoring or dropping one moves no bytes.
type Entry struct {
	Key  string
	Slot uint16
	Held
	Also  []Held
	Older []Held
}

// MaxOlder is the most shards an entry holds in Also, and in Older.
const MaxOlder = 32

// ErrInvalidEntry is returned by Put and Replace for an entry whose shards
// are more than MaxOlder in Also or Older, or out of order: it would not
// decode. Nothing was written.
var ErrInvalidEntry = errors.New("index: invalid entry")

// check checks what decodeEntry checks of e.Also and e.Older.
func (e Entry) check() error {
	if len(e.Also) > MaxOlder || len(e.Older) > MaxOlder {
		return fmt.Errorf("%w: %d more positions and %d older shards, at most %d each", ErrInvalidEntry, len(e.Also), len(e.Older), MaxOlder)
	}
	prev := e.Held
	for i, h := range e.all() {
		if i == 0 {
			continue
		}
		if (h.Version == e.Version) != (i <= len(e.Also)) || !ordered(prev, h) {
			return fmt.Errorf("%w: shard %d is out of order", ErrInvalidEntry, i)
		}
		prev = h
	}
	return nil
}

// all yields e's shards in the order of Shards, without copying them.
func (e Entry) all() iter.Seq2[int, Held] {
	return func(yield func(int, Held) bool) {
		if !yield(0, e.Held) {
			return
		}
		for i, h := range e.Also {
			if !yield(1+i, h) {
				return
			}
		}
		for i, h := range e.Older {
			if !yield(1+len(e.Also)+i, h) {
				return
			}
		}
	}
}

// ordered reports whether shard b comes after shard a: an older version,
// or a higher position of the same one.
func ordered(a, b Held) bool {
	if a.Version == b.Version {
		return a.Index < b.Index
	}
	return b.Version.Less(a.Version)
}

// NewEntry is the entry of key holding shards, in any order (the same
// shard twice counts once); ok is false when there are none.
func NewEntry(key string, slot uint16, shards []Held) (e Entry, ok bool) {
	if len(shards) == 0 {
		return Entry{}, false
	}
	hs := slices.Clone(shards)
	slices.SortFunc(hs, func(a, b Held) int {
		switch {
		case ordered(a, b):
			return -1
		case ordered(b, a):
			return 1
		}
		return 0
	})
	hs = slices.CompactFunc(hs, func(a, b Held) bool { return a.Version == b.Version && a.Index == b.Index })
	e = Entry{Key: key, Slot: slot, Held: hs[0]}
	i := 1
	for i < len(hs) && hs[i].Version == e.Version {
		i++
	}
	e.Also, e.Older = hs[1:i:i], hs[i:]
	if len(e.Also) == 0 {
		e.Also = nil
	}
	if len(e.Older) == 0 {
		e.Older = nil
	}
	return e, true
}

// Shards returns the shards e holds: its newest version's, then the
// older ones, newest first.
func (e Entry) Shards() []Held {
	out := make([]Held, 0, 1+len(e.Also)+len(e.Older))
	return append(append(append(out, e.Held), e.Also...), e.Older...)
}

// setShards sets e's shards to hs, as many as e has, in the order of Shards.
func (e *Entry) setShards(hs []Held) {
	also := len(e.Also)
	e.Held = hs[0]
	if also > 0 {
		e.Also = hs[1 : 1+also : 1+also]
	}
	if len(e.Older) > 0 {
		e.Older = hs[1+also:]
	}
}

// At returns e's shards at position pos, newest first.
func (e Entry) At(pos uint8) []Held {
	var out []Held
	for _, h := range e.all() {
		if h.Index == pos {
			out = append(out, h)
		}
	}
	return out
}

// Newest returns e's shards of its newest version.
func (e Entry) Newest() []Held {
	return append([]Held{e.Held}, e.Also...)
}

// ShardBytes is what e's shards occupy, every version's.
func (e Entry) ShardBytes() uint64 {
	var n uint64
	for _, h := range e.all() {
		n += uint64(h.ShardLen)
	}
	return n
}

// Entry value format, version 5 (all fixed-width integers big-endian):
//
//	[3]      format version (5), number of shards in Also, in Older (each
//	         at most MaxOlder)
//	[2]      slot
//	then each shard, in the order of Shards:
//	[1]      flags: bit 0 tombstone, bit 1 Loc follows; other bits must be zero
//	[4]      shard index, policy kind, policy K, policy M
//	uvarint  value length (minimal encoding)
//	uvarint  shard length (minimal encoding, fits uint32)
//	[8]      shard checksum
//	[8]      version HLC
//	[8]      version writer
//	[16]     Loc, when flagged (and not all zero)
//	and last:
//	[4]      crc32c of the key followed by all preceding bytes of the value
//
// The key is not repeated in the value (it is the bbolt key) but is covered
// by the checksum, so a value found under the wrong key does not decode.
//
// Version 4 had no Loc; version 3 no Also; version 2 kept one previous version, by its
// version alone; version 1 none (nodes kept the previous shard under a
// name of its own). None decodes.
const (
	formatV5      = 5
	flagTombstone = 1 << 0
	flagAt        = 1 << 1
	minHeldLen    = 1 + 4 + 1 + 1 + 24
	maxHeldLen    = 1 + 4 + binary.MaxVarintLen64 + binary.MaxVarintLen32 + 24 + 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func entryChecksum(key string, body []byte) uint32 {
	c := crc32.Update(0, castagnoli, []byte(key))
	return crc32.Update(c, castagnoli, body)
}

// encodeEntry returns the format-5 value of e. e.Key is covered by the
// checksum but not stored. e must pass check.
func encodeEntry(e Entry) []byte {
	shards := e.Shards()
	b := make([]byte, 5, 5+len(shards)*maxHeldLen+4)
	b[0], b[1], b[2] = formatV5, byte(len(e.Also)), byte(len(e.Older))
	binary.BigEndian.PutUint16(b[3:5], e.Slot)
	for _, h := range shards {
		var flags byte
		if h.Tombstone {
			flags = flagTombstone
		}
		located := h.Loc != [16]byte{}
		if located {
			flags |= flagAt
		}
		b = append(b, flags, h.Index, h.Kind, h.K, h.M)
		b = binary.AppendUvarint(b, h.ValueLen)
		b = binary.AppendUvarint(b, uint64(h.ShardLen))
		b = binary.BigEndian.AppendUint64(b, h.ShardSum)
		b = binary.BigEndian.AppendUint64(b, h.Version.HLC)
		b = binary.BigEndian.AppendUint64(b, h.Version.Writer)
		if located {
			b = append(b, h.Loc[:]...)
		}
	}
	return binary.BigEndian.AppendUint32(b, entryChecksum(e.Key, b))
}

// decodeEntry decodes a value stored under key. It accepts exactly the
// bytes encodeEntry produces and returns a *CorruptError for anything else;
// it never panics and does not retain b.
func decodeEntry(key string, b []byte) (Entry, error) {
	bad := func(format string, args ...any) (Entry, error) {
		return Entry{}, &CorruptError{Key: key, Reason: fmt.Sprintf(format, args...)}
	}
	if len(b) == 0 {
		return bad("empty value")
	}
	if b[0] != formatV5 {
		return bad("unknown format version %d", b[0])
	}
	if len(b) < 5+minHeldLen+4 {
		return bad("value is %d bytes, want at least %d", len(b), 5+minHeldLen+4)
	}
	also, older := int(b[1]), int(b[2])
	if also > MaxOlder || older > MaxOlder {
		return bad("%d more positions and %d older shards, at most %d each", also, older, MaxOlder)
	}
	count := 1 + also + older
	hs := make([]Held, 0, count)
	p, end := 5, len(b)-4
	for range count {
		if end-p < minHeldLen {
			return bad("value is %d bytes, too short for %d shards", len(b), count)
		}
		if b[p]&^(flagTombstone|flagAt) != 0 {
			return bad("unknown flags %#x", b[p])
		}
		located := b[p]&flagAt != 0
		h := Held{Tombstone: b[p]&flagTombstone != 0, Index: b[p+1], Kind: b[p+2], K: b[p+3], M: b[p+4]}
		p += 5
		valueLen, n := binary.Uvarint(b[p:end])
		if n <= 0 || n != uvarintLen(valueLen) {
			return bad("bad value length varint")
		}
		p += n
		shardLen, n := binary.Uvarint(b[p:end])
		if n <= 0 || n != uvarintLen(shardLen) {
			return bad("bad shard length varint")
		}
		if shardLen > math.MaxUint32 {
			return bad("shard length %d overflows uint32", shardLen)
		}
		p += n
		if end-p < 24 {
			return bad("value is %d bytes, too short for %d shards", len(b), count)
		}
		h.ValueLen, h.ShardLen = valueLen, uint32(shardLen)
		h.ShardSum = binary.BigEndian.Uint64(b[p:])
		h.Version.HLC = binary.BigEndian.Uint64(b[p+8:])
		h.Version.Writer = binary.BigEndian.Uint64(b[p+16:])
		p += 24
		if located {
			if end-p < len(h.Loc) {
				return bad("value is %d bytes, too short for %d shards", len(b), count)
			}
			if copy(h.Loc[:], b[p:]); h.Loc == [16]byte{} {
				return bad("shard %d flagged with a zero Loc", len(hs))
			}
			p += len(h.Loc)
		}
		hs = append(hs, h)
	}
	e := Entry{Key: key, Slot: binary.BigEndian.Uint16(b[3:5]), Held: hs[0]}
	if also > 0 {
		e.Also = hs[1 : 1+also : 1+also]
	}
	if older > 0 {
		e.Older = hs[1+also:]
	}
	if err := e.check(); err != nil {
		return bad("%v", err)
	}
	if p != end {
		return bad("value is %d bytes, want %d", len(b), p+4)
	}
	if got, want := binary.BigEndian.Uint32(b[p:]), entryChecksum(key, b[:p]); got != want {
		return bad("checksum %#08x, want %#08x", got, want)
	}
	return e, nil
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
