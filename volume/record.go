package volume

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// Record layout, all integers little endian:
//
//	magic   uint32  recordMagic
//	keyLen  uint32  <= MaxKeySize
//	valLen  uint32  <= MaxValueSize
//	key     [keyLen]byte
//	value   [valLen]byte
//	sum     uint64  xxhash64 of every byte before it
const (
	recordMagic  uint32 = 0x314c4f56 // "VOL1"
	headerSize          = 12
	sumSize             = 8
	recordFixed         = headerSize + sumSize
	MaxKeySize          = 32 << 10 // bbolt's key limit
	MaxValueSize        = 1 << 30
)

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

// encodeRecord returns a buffer holding the record for key and value,
// from the pool when one is large enough (every byte is written).
func encodeRecord(key string, value []byte) []byte {
	n := recordFixed + len(key) + len(value)
	var buf []byte
	if bp, ok := recordPool.Get().(*[]byte); ok && cap(*bp) >= n {
		buf = (*bp)[:n]
	} else {
		buf = make([]byte, n)
	}
	binary.LittleEndian.PutUint32(buf[0:], recordMagic)
	binary.LittleEndian.PutUint32(buf[4:], uint32(len(key)))
	binary.LittleEndian.PutUint32(buf[8:], uint32(len(value)))
	copy(buf[headerSize:], key)
	copy(buf[headerSize+len(key):], value)
	binary.LittleEndian.PutUint64(buf[n-sumSize:], xxhash.Sum64(buf[:n-sumSize]))
	return buf
}

// parseHeader checks the magic and the length bounds. It never trusts the
// lengths beyond the bounds, so any bytes from disk are safe to pass.
func parseHeader(h []byte) (keyLen, valLen int, err error) {
	if len(h) < headerSize {
		return 0, 0, fmt.Errorf("%w: short header", ErrCorrupt)
	}
	if m := binary.LittleEndian.Uint32(h[0:]); m != recordMagic {
		return 0, 0, fmt.Errorf("%w: bad magic %#x", ErrCorrupt, m)
	}
	k := binary.LittleEndian.Uint32(h[4:])
	v := binary.LittleEndian.Uint32(h[8:])
	if k > MaxKeySize || v > MaxValueSize {
		return 0, 0, fmt.Errorf("%w: length out of bounds (key %d, value %d)", ErrCorrupt, k, v)
	}
	return int(k), int(v), nil
}

// decodeRecord verifies a whole record against the key the index expects and
// returns the value, a sub-slice of rec. It never returns bytes that failed
// the checksum.
func decodeRecord(rec []byte, wantKey string) ([]byte, error) {
	kl, vl, err := parseHeader(rec)
	if err != nil {
		return nil, err
	}
	if int64(len(rec)) != recordLen(kl, vl) {
		return nil, fmt.Errorf("%w: record length %d, header says %d", ErrCorrupt, len(rec), recordLen(kl, vl))
	}
	n := len(rec)
	if got, want := xxhash.Sum64(rec[:n-sumSize]), binary.LittleEndian.Uint64(rec[n-sumSize:]); got != want {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	if string(rec[headerSize:headerSize+kl]) != wantKey {
		return nil, fmt.Errorf("%w: record holds another key", ErrCorrupt)
	}
	return rec[headerSize+kl : headerSize+kl+vl], nil
}

// loc is where a record lives; it is the index value.
type loc struct {
	vol    uint32
	off    int64
	valLen uint32
}

const locSize = 16

func (l loc) encode() []byte {
	b := make([]byte, locSize)
	binary.BigEndian.PutUint32(b[0:], l.vol)
	binary.BigEndian.PutUint64(b[4:], uint64(l.off))
	binary.BigEndian.PutUint32(b[12:], l.valLen)
	return b
}

func decodeLoc(b []byte) (loc, error) {
	if len(b) != locSize {
		return loc{}, fmt.Errorf("%w: index entry of %d bytes", ErrCorrupt, len(b))
	}
	l := loc{
		vol:    binary.BigEndian.Uint32(b[0:]),
		off:    int64(binary.BigEndian.Uint64(b[4:])),
		valLen: binary.BigEndian.Uint32(b[12:]),
	}
	if l.off < 0 || l.valLen > MaxValueSize {
		return loc{}, fmt.Errorf("%w: index entry out of bounds", ErrCorrupt)
	}
	return l, nil
}
