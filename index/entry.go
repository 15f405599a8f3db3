package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
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
	// its version alone). Nothing is converted.
	ErrOldFormat = errors.New("index: written by an older go-ds-cluster (schema 1 or 2); this version keeps a list of versions per key (schema 3) and does not convert: move the node's folder aside and let repair refill the node")
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
}

// Entry is what the node holds of Key: the shard of the newest version it
// has seen (the embedded Held) and, newest first, the older versions whose
// shards it keeps beside it (Older). Each version's shard has a name of its
// own (the node's shardName), so keeping, restoring or dropping one moves
// no bytes.
type Entry struct {
	Key  string
	Slot uint16
	Held
	Older []Held
}

// MaxOlder is the most older versions an entry holds.
const MaxOlder = 32

// ErrInvalidEntry is returned by Put and Replace for an entry whose older
// versions are more than MaxOlder, or not each older than the one before:
// it would not decode. Nothing was written.
var ErrInvalidEntry = errors.New("index: invalid entry")

// checkOlder checks what decodeEntry checks of e.Older.
func (e Entry) checkOlder() error {
	if len(e.Older) > MaxOlder {
		return fmt.Errorf("%w: %d older versions, at most %d", ErrInvalidEntry, len(e.Older), MaxOlder)
	}
	newer := e.Version
	for i, h := range e.Older {
		if !h.Version.Less(newer) {
			return fmt.Errorf("%w: older version %d is not older than the one before it", ErrInvalidEntry, i+1)
		}
		newer = h.Version
	}
	return nil
}

// Versions returns the versions e holds, newest first.
func (e Entry) Versions() []Held {
	return append([]Held{e.Held}, e.Older...)
}

// ShardBytes is what e's shards occupy, every version's.
func (e Entry) ShardBytes() uint64 {
	n := uint64(e.ShardLen)
	for _, h := range e.Older {
		n += uint64(h.ShardLen)
	}
	return n
}

// Entry value format, version 3 (all fixed-width integers big-endian):
//
//	[2]      format version (3), number of older versions (at most MaxOlder)
//	[2]      slot
//	then each version, the newest first:
//	[1]      flags: bit 0 tombstone; other bits must be zero
//	[4]      shard index, policy kind, policy K, policy M
//	uvarint  value length (minimal encoding)
//	uvarint  shard length (minimal encoding, fits uint32)
//	[8]      shard checksum
//	[8]      version HLC
//	[8]      version writer
//	and last:
//	[4]      crc32c of the key followed by all preceding bytes of the value
//
// The key is not repeated in the value (it is the bbolt key) but is covered
// by the checksum, so a value found under the wrong key does not decode.
//
// Version 2 kept one previous version, by its version alone; version 1
// none (nodes kept the previous shard under a name of its own). Neither
// decodes.
const (
	formatV3      = 3
	flagTombstone = 1 << 0
	minHeldLen    = 1 + 4 + 1 + 1 + 24
	maxHeldLen    = 1 + 4 + binary.MaxVarintLen64 + binary.MaxVarintLen32 + 24
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func entryChecksum(key string, body []byte) uint32 {
	c := crc32.Update(0, castagnoli, []byte(key))
	return crc32.Update(c, castagnoli, body)
}

// encodeEntry returns the format-3 value of e. e.Key is covered by the
// checksum but not stored. e must hold at most MaxOlder older versions.
func encodeEntry(e Entry) []byte {
	b := make([]byte, 4, 4+(1+len(e.Older))*maxHeldLen+4)
	b[0], b[1] = formatV3, byte(len(e.Older))
	binary.BigEndian.PutUint16(b[2:4], e.Slot)
	for _, h := range e.Versions() {
		var flags byte
		if h.Tombstone {
			flags = flagTombstone
		}
		b = append(b, flags, h.Index, h.Kind, h.K, h.M)
		b = binary.AppendUvarint(b, h.ValueLen)
		b = binary.AppendUvarint(b, uint64(h.ShardLen))
		b = binary.BigEndian.AppendUint64(b, h.ShardSum)
		b = binary.BigEndian.AppendUint64(b, h.Version.HLC)
		b = binary.BigEndian.AppendUint64(b, h.Version.Writer)
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
	if b[0] != formatV3 {
		return bad("unknown format version %d", b[0])
	}
	if len(b) < 4+minHeldLen+4 {
		return bad("value is %d bytes, want at least %d", len(b), 4+minHeldLen+4)
	}
	older := int(b[1])
	if older > MaxOlder {
		return bad("%d older versions, at most %d", older, MaxOlder)
	}
	e := Entry{Key: key, Slot: binary.BigEndian.Uint16(b[2:4])}
	p, end := 4, len(b)-4
	for i := 0; i <= older; i++ {
		if end-p < minHeldLen {
			return bad("value is %d bytes, too short for %d versions", len(b), older+1)
		}
		if b[p]&^flagTombstone != 0 {
			return bad("unknown flags %#x", b[p])
		}
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
			return bad("value is %d bytes, too short for %d versions", len(b), older+1)
		}
		h.ValueLen, h.ShardLen = valueLen, uint32(shardLen)
		h.ShardSum = binary.BigEndian.Uint64(b[p:])
		h.Version.HLC = binary.BigEndian.Uint64(b[p+8:])
		h.Version.Writer = binary.BigEndian.Uint64(b[p+16:])
		p += 24
		if i == 0 {
			e.Held = h
		} else {
			if !h.Version.Less(e.Versions()[i-1].Version) {
				return bad("older version %d is not older than the one before it", i)
			}
			e.Older = append(e.Older, h)
		}
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
