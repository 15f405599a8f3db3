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
	// under a name of its own). Its shards are not where this version
	// looks for them; nothing is converted.
	ErrOldFormat = errors.New("index: written by an older go-ds-cluster (schema 1); this version keeps shards by version (schema 2) and does not convert: move the node's folder aside and let repair refill the node")
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

// Entry is the metadata of the one shard of Key that this node holds, at
// the newest version the node has seen.
type Entry struct {
	Key       string
	Slot      uint16
	Index     uint8 // shard index held by this node
	Kind      uint8 // policy kind (1 erasure, 2 replica); opaque to the index
	K, M      uint8 // policy data/parity shards; opaque to the index
	Tombstone bool
	ValueLen  uint64
	ShardLen  uint32 // bytes of shard data on disk
	ShardSum  uint64
	Version   Version
	// Prev is the older version of Key whose shard the node keeps beside
	// this one (zero: none): the value an overwrite replaced, kept until
	// the overwrite is acknowledged, so a failed one can be undone. Each
	// version's shard has a name of its own (the node's shardName), so
	// keeping, restoring or dropping it moves no bytes. A tombstone keeps
	// none.
	Prev Version
}

// Entry value format, version 2 (all fixed-width integers big-endian):
//
//	[0]      format version (2)
//	[1]      flags: bit 0 tombstone; other bits must be zero
//	[2:4]    slot
//	[4]      shard index
//	[5]      policy kind
//	[6]      policy K
//	[7]      policy M
//	uvarint  value length (minimal encoding)
//	uvarint  shard length (minimal encoding, fits uint32)
//	[8]      shard checksum
//	[8]      version HLC
//	[8]      version writer
//	[8]      previous version HLC (0: none)
//	[8]      previous version writer
//	[4]      crc32c of the key followed by all preceding bytes of the value
//
// The key is not repeated in the value (it is the bbolt key) but is covered
// by the checksum, so a value found under the wrong key does not decode.
//
// Version 1 had no previous version: nodes kept the previous shard under
// a name of its own, and every shard under its key's name alone. Such an
// entry does not decode (ErrOldFormat).
const (
	formatV2      = 2
	flagTombstone = 1 << 0
	fixedTail     = 8 + 8 + 8 + 8 + 8 + 4 // shard sum, version, previous version, checksum
	minEncodedLen = 8 + 1 + 1 + fixedTail
	maxEncodedLen = 8 + binary.MaxVarintLen64 + binary.MaxVarintLen32 + fixedTail
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func entryChecksum(key string, body []byte) uint32 {
	c := crc32.Update(0, castagnoli, []byte(key))
	return crc32.Update(c, castagnoli, body)
}

// encodeEntry returns the format-2 value of e. e.Key is covered by the
// checksum but not stored.
func encodeEntry(e Entry) []byte {
	b := make([]byte, 8, maxEncodedLen)
	b[0] = formatV2
	if e.Tombstone {
		b[1] = flagTombstone
	}
	binary.BigEndian.PutUint16(b[2:4], e.Slot)
	b[4], b[5], b[6], b[7] = e.Index, e.Kind, e.K, e.M
	b = binary.AppendUvarint(b, e.ValueLen)
	b = binary.AppendUvarint(b, uint64(e.ShardLen))
	b = binary.BigEndian.AppendUint64(b, e.ShardSum)
	b = binary.BigEndian.AppendUint64(b, e.Version.HLC)
	b = binary.BigEndian.AppendUint64(b, e.Version.Writer)
	b = binary.BigEndian.AppendUint64(b, e.Prev.HLC)
	b = binary.BigEndian.AppendUint64(b, e.Prev.Writer)
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
	if b[0] != formatV2 {
		return bad("unknown format version %d", b[0])
	}
	if len(b) < minEncodedLen {
		return bad("value is %d bytes, want at least %d", len(b), minEncodedLen)
	}
	if b[1]&^flagTombstone != 0 {
		return bad("unknown flags %#x", b[1])
	}
	e := Entry{
		Key:       key,
		Tombstone: b[1]&flagTombstone != 0,
		Slot:      binary.BigEndian.Uint16(b[2:4]),
		Index:     b[4],
		Kind:      b[5],
		K:         b[6],
		M:         b[7],
	}
	p := 8
	valueLen, n := binary.Uvarint(b[p:])
	if n <= 0 || n != uvarintLen(valueLen) {
		return bad("bad value length varint")
	}
	p += n
	shardLen, n := binary.Uvarint(b[p:])
	if n <= 0 || n != uvarintLen(shardLen) {
		return bad("bad shard length varint")
	}
	if shardLen > math.MaxUint32 {
		return bad("shard length %d overflows uint32", shardLen)
	}
	p += n
	if len(b)-p != fixedTail {
		return bad("value is %d bytes, want %d", len(b), p+fixedTail)
	}
	e.ValueLen = valueLen
	e.ShardLen = uint32(shardLen)
	e.ShardSum = binary.BigEndian.Uint64(b[p:])
	e.Version.HLC = binary.BigEndian.Uint64(b[p+8:])
	e.Version.Writer = binary.BigEndian.Uint64(b[p+16:])
	e.Prev.HLC = binary.BigEndian.Uint64(b[p+24:])
	e.Prev.Writer = binary.BigEndian.Uint64(b[p+32:])
	p += 40
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
