package coding

import (
	"encoding/binary"
	"math"

	"github.com/cespare/xxhash/v2"
)

// FormatVersion is the header format this package writes and reads.
const FormatVersion = 1

// MaxKeyLen is the longest key, in bytes, a header can carry.
const MaxKeyLen = 8192

// magic opens every shard: "DSCS", go-ds-cluster shard.
var magic = [4]byte{'D', 'S', 'C', 'S'}

const (
	headerFixed   = 52 // bytes before the key
	headerSumLen  = 8  // trailing checksum
	headerMinSize = headerFixed + headerSumLen

	flagTombstone = 1 << 0
)

// HeaderSize is the encoded size of a header whose key has keyLen bytes.
func HeaderSize(keyLen int) int { return headerMinSize + keyLen }

// Header describes one shard. Every shard of a value carries the same header
// except Index and ShardSum.
type Header struct {
	Format    uint8   // FormatVersion
	Key       string  // at most MaxKeyLen bytes
	Policy    Policy  // how the value was split
	Index     uint8   // shard index 0..Width-1 (data shards first)
	Tombstone bool    // a delete marker; ValueLen 0, no data
	ValueLen  uint64  // length of the whole value
	ValueSum  uint64  // Checksum of the whole value
	ShardSum  uint64  // Checksum of this shard's data
	Version   Version // the write this shard belongs to
}

// check is the sanity DecodeHeader enforces on top of the checksum.
func (h *Header) check() error {
	if h.Format != FormatVersion {
		return corruptf("unsupported header format %d", h.Format)
	}
	if len(h.Key) > MaxKeyLen {
		return corruptf("key length %d exceeds %d", len(h.Key), MaxKeyLen)
	}
	if err := h.Policy.Validate(); err != nil {
		return corruptf("%v", err)
	}
	if int(h.Index) >= h.Policy.Width() {
		return corruptf("shard index %d outside policy %v", h.Index, h.Policy)
	}
	if h.Tombstone && h.ValueLen != 0 {
		return corruptf("tombstone with value length %d", h.ValueLen)
	}
	if h.ValueLen > math.MaxInt {
		return corruptf("value length %d too large", h.ValueLen)
	}
	return nil
}

// ShardLen is the number of data bytes that follow this header.
func (h *Header) ShardLen() int { return ShardLen(h.Policy, h.ValueLen) }

// Size is the encoded size of h.
func (h *Header) Size() int { return HeaderSize(len(h.Key)) }

// AppendBinary appends the encoding of h to dst and returns the extended
// slice. The layout (big endian) is in the package documentation. A header
// that would not pass DecodeHeader's checks (bad policy, index, key too long,
// a version other than FormatVersion) is written with format byte 0 and no
// key, so it can never be read back as a different, valid header.
func (h *Header) AppendBinary(dst []byte) []byte {
	format, key := h.Format, h.Key
	if h.check() != nil {
		format, key = 0, ""
	}
	start := len(dst)
	var flags byte
	if h.Tombstone {
		flags |= flagTombstone
	}
	dst = append(dst, magic[:]...)
	dst = append(dst, format, byte(h.Policy.Kind), byte(h.Policy.DataShards), byte(h.Policy.ParityShards), h.Index, flags)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(key)))
	dst = binary.BigEndian.AppendUint64(dst, h.ValueLen)
	dst = binary.BigEndian.AppendUint64(dst, h.ValueSum)
	dst = binary.BigEndian.AppendUint64(dst, h.ShardSum)
	dst = binary.BigEndian.AppendUint64(dst, h.Version.HLC)
	dst = binary.BigEndian.AppendUint64(dst, h.Version.Writer)
	dst = append(dst, key...)
	return binary.BigEndian.AppendUint64(dst, Checksum(dst[start:]))
}

// DecodeHeader decodes the header at the start of b and returns it with the
// number of bytes it took. Bytes after the header are not looked at. Any
// truncated, malformed or checksum-bad input yields an error wrapping
// ErrCorrupt. It never panics and does not retain b.
func DecodeHeader(b []byte) (h Header, n int, err error) {
	if len(b) < headerMinSize {
		return Header{}, 0, corruptf("header truncated: %d bytes", len(b))
	}
	if [4]byte(b[:4]) != magic {
		return Header{}, 0, corruptf("bad magic %q", b[:4])
	}
	kl := int(binary.BigEndian.Uint16(b[10:]))
	if kl > MaxKeyLen {
		return Header{}, 0, corruptf("key length %d exceeds %d", kl, MaxKeyLen)
	}
	n = HeaderSize(kl)
	if len(b) < n {
		return Header{}, 0, corruptf("header truncated: %d of %d bytes", len(b), n)
	}
	if sum := binary.BigEndian.Uint64(b[n-headerSumLen:]); sum != Checksum(b[:n-headerSumLen]) {
		return Header{}, 0, corruptf("header checksum mismatch")
	}
	flags := b[9]
	if flags&^flagTombstone != 0 {
		return Header{}, 0, corruptf("unknown header flags %#x", flags)
	}
	h = Header{
		Format: b[4],
		Policy: Policy{
			Kind:         Kind(b[5]),
			DataShards:   int(b[6]),
			ParityShards: int(b[7]),
		},
		Index:     b[8],
		Tombstone: flags&flagTombstone != 0,
		ValueLen:  binary.BigEndian.Uint64(b[12:]),
		ValueSum:  binary.BigEndian.Uint64(b[20:]),
		ShardSum:  binary.BigEndian.Uint64(b[28:]),
		Version: Version{
			HLC:    binary.BigEndian.Uint64(b[36:]),
			Writer: binary.BigEndian.Uint64(b[44:]),
		},
		Key: string(b[headerFixed : headerFixed+kl]),
	}
	if err := h.check(); err != nil {
		return Header{}, 0, err
	}
	return h, n, nil
}

// Checksum is the checksum used for values, shards and headers: xxhash64
// (XXH64, seed 0). See the package documentation for why.
func Checksum(b []byte) uint64 { return xxhash.Sum64(b) }
