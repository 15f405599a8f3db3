package volume

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// Record layout, all integers little endian:
//
//	magic   uint32  recordMagic ("VOL2")
//	kind    uint8   kindPut or kindDelete
//	seq     uint64  the store's write sequence number; a compaction copy keeps it
//	keyLen  uint32  <= MaxKeySize
//	valLen  uint32  <= MaxValueSize (0 for a delete)
//	hsum    uint32  crc32c of the 21 bytes before it
//	key     [keyLen]byte
//	value   [valLen]byte
//	sum     uint64  xxhash64 of key and value
//
// The writer hashes key and value; the header, with the sequence number the
// store assigns as it appends, has a checksum of its own, so that appending
// never hashes a value under the append lock.
const (
	recordMagic  uint32 = 0x324c4f56 // "VOL2"
	oldMagic     uint32 = 0x314c4f56 // "VOL1": format 1, no kinds, no sequence numbers
	headerSize          = 25
	sumSize             = 8
	recordFixed         = headerSize + sumSize
	MaxKeySize          = 32 << 10 // bbolt's key limit
	MaxValueSize        = 1 << 30
)

// Record kinds. A delete record makes the store's deletes durable without
// an fsync of the index: rebuilding the index from the volumes replays it.
const (
	kindPut    uint8 = 0
	kindDelete uint8 = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func recordLen(keyLen, valLen int) int64 { return int64(recordFixed + keyLen + valLen) }

// recordPool recycles record buffers: once appendAll has written a record
// to its volume (the page cache) the buffer is free again.
var recordPool sync.Pool

// maxPooledRecord keeps the buffers of huge records out of the pool.
const maxPooledRecord = 4 << 20

// releaseRecord returns rec, which nothing references any more, to the pool.
func releaseRecord(rec []byte) {
	if cap(rec) <= maxPooledRecord {
		rec = rec[:0]
		recordPool.Put(&rec)
	}
}

// encodeRecord returns a buffer holding a record of kind for key and value,
// from the pool when one is large enough (every byte is written). Its
// sequence number is stamped when it is appended (stampRecord).
func encodeRecord(kind uint8, key string, value []byte) []byte {
	n := recordFixed + len(key) + len(value)
	var buf []byte
	if bp, ok := recordPool.Get().(*[]byte); ok && cap(*bp) >= n {
		buf = (*bp)[:n]
	} else {
		buf = make([]byte, n)
	}
	binary.LittleEndian.PutUint32(buf[0:], recordMagic)
	buf[4] = kind
	binary.LittleEndian.PutUint32(buf[13:], uint32(len(key)))
	binary.LittleEndian.PutUint32(buf[17:], uint32(len(value)))
	copy(buf[headerSize:], key)
	copy(buf[headerSize+len(key):], value)
	binary.LittleEndian.PutUint64(buf[n-sumSize:], xxhash.Sum64(buf[headerSize:n-sumSize]))
	return buf
}

// stampRecord sets rec's sequence number and seals its header.
func stampRecord(rec []byte, seq uint64) {
	binary.LittleEndian.PutUint64(rec[5:], seq)
	binary.LittleEndian.PutUint32(rec[21:], crc32.Checksum(rec[:21], castagnoli))
}

// header is a record's parsed header.
type header struct {
	kind           uint8
	seq            uint64
	keyLen, valLen int
}

// parseHeader checks the magic, the header checksum and the length bounds.
// It never trusts the lengths beyond the bounds, so any bytes from disk are
// safe to pass.
func parseHeader(h []byte) (header, error) {
	if len(h) < headerSize {
		return header{}, fmt.Errorf("%w: short header", ErrCorrupt)
	}
	switch m := binary.LittleEndian.Uint32(h[0:]); m {
	case recordMagic:
	case oldMagic:
		return header{}, ErrOldFormat
	default:
		return header{}, fmt.Errorf("%w: bad magic %#x", ErrCorrupt, m)
	}
	if got, want := crc32.Checksum(h[:21], castagnoli), binary.LittleEndian.Uint32(h[21:]); got != want {
		return header{}, fmt.Errorf("%w: header checksum mismatch", ErrCorrupt)
	}
	hd := header{kind: h[4], seq: binary.LittleEndian.Uint64(h[5:])}
	k := binary.LittleEndian.Uint32(h[13:])
	v := binary.LittleEndian.Uint32(h[17:])
	if hd.kind > kindDelete || k > MaxKeySize || v > MaxValueSize || (hd.kind == kindDelete && v != 0) {
		return header{}, fmt.Errorf("%w: header out of bounds (kind %d, key %d, value %d)", ErrCorrupt, hd.kind, k, v)
	}
	hd.keyLen, hd.valLen = int(k), int(v)
	return hd, nil
}

// checkRecord verifies a whole record: header, length and checksum.
func checkRecord(rec []byte) (header, error) {
	h, err := parseHeader(rec)
	if err != nil {
		return h, err
	}
	if int64(len(rec)) != recordLen(h.keyLen, h.valLen) {
		return h, fmt.Errorf("%w: record length %d, header says %d", ErrCorrupt, len(rec), recordLen(h.keyLen, h.valLen))
	}
	n := len(rec)
	if got, want := xxhash.Sum64(rec[headerSize:n-sumSize]), binary.LittleEndian.Uint64(rec[n-sumSize:]); got != want {
		return h, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	return h, nil
}

// recordKey is the key of a checked record.
func recordKey(rec []byte, h header) []byte { return rec[headerSize : headerSize+h.keyLen] }

// decodeRecord verifies a whole put record against the key the index
// expects and returns the value, a sub-slice of rec. It never returns bytes
// that failed the checksum.
func decodeRecord(rec []byte, wantKey string) ([]byte, error) {
	h, err := checkRecord(rec)
	if err != nil {
		return nil, err
	}
	if h.kind != kindPut {
		return nil, fmt.Errorf("%w: a delete record where the index expects a value", ErrCorrupt)
	}
	if string(recordKey(rec, h)) != wantKey {
		return nil, fmt.Errorf("%w: record holds another key", ErrCorrupt)
	}
	return rec[headerSize+h.keyLen : len(rec)-sumSize], nil
}

// loc is where a record lives, and its whole length; encoded, it is the
// key table's value and an owner's Loc.
type loc struct {
	vol  uint32
	off  int64
	size uint32
}

const locSize = 16

// Loc is where a record lives, as an Owner keeps it: opaque to it, and
// never zero for a record.
type Loc = [locSize]byte

func (l loc) pack() Loc {
	var b Loc
	binary.BigEndian.PutUint32(b[0:], l.vol)
	binary.BigEndian.PutUint64(b[4:], uint64(l.off))
	binary.BigEndian.PutUint32(b[12:], l.size)
	return b
}

func (l loc) encode() []byte {
	b := l.pack()
	return b[:]
}

// valueLen is the length of the value of key's record at l.
func (l loc) valueLen(key string) int { return max(0, int(int64(l.size)-recordLen(len(key), 0))) }

func decodeLoc(b []byte) (loc, error) {
	if len(b) != locSize {
		return loc{}, fmt.Errorf("%w: index entry of %d bytes", ErrCorrupt, len(b))
	}
	l := loc{
		vol:  binary.BigEndian.Uint32(b[0:]),
		off:  int64(binary.BigEndian.Uint64(b[4:])),
		size: binary.BigEndian.Uint32(b[12:]),
	}
	if l.vol == 0 || l.off < 0 || int64(l.size) < recordFixed || int64(l.size) > recordLen(MaxKeySize, MaxValueSize) {
		return loc{}, fmt.Errorf("%w: index entry out of bounds", ErrCorrupt)
	}
	return l, nil
}
