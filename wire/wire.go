package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

// ShardProtocol is the libp2p protocol ID of the streams that carry shard
// requests (put, get, list, status).
const ShardProtocol = "/dscluster/shard/1.0.0"

// Version is the wire format version carried in every frame.
const Version = 4

// MaxFrame bounds a frame body: the largest shard a node accepts plus room
// for the request fields. Larger frames are refused before being read.
const MaxFrame = 72 << 20

// FrameLen is the bytes a frame with a body of n bytes takes on a stream:
// the body after its 4-byte length.
func FrameLen(n int) int { return 4 + n }

// MaxShard bounds the shard a node stores: the largest whose get response
// (the shard after the response's fixed fields) still fits in a frame.
const MaxShard = MaxFrame - 64

// Op is a message type. Responses carry the request's Op with RespFlag set.
type Op uint8

// Request ops.
const (
	OpClusterInfo   Op = 1  // cluster configuration for a joining node or client
	OpPut           Op = 2  // store one shard
	OpGet           Op = 3  // read one shard (or its header only)
	OpList          Op = 4  // list index entries by key prefix
	OpBatchPut      Op = 5  // store several shards
	OpStatus        Op = 6  // node statistics
	OpPurge         Op = 7  // drop tombstones that every shard node holds
	OpInventory     Op = 8  // list the shards a node holds, with position and policy (repair)
	OpDrop          Op = 9  // drop named shards (repair): misplaced, superseded, or a failed write's
	OpPing          Op = 10 // heartbeat: answers at once with the node's epoch
	OpMember        Op = 11 // membership command (join, drain), JSON; forwarded to the raft leader
	OpSums          Op = 12 // per slot, policy and position: how many shards and a hash of them (repair)
	OpSlotInventory Op = 13 // OpInventory for the shards of one slot (repair)
	OpDropOlder     Op = 14 // drop a key's versions older than one acknowledged (the writer)
	OpRepair        Op = 15 // make one shard (a copy, or a rebuild from others) and store it (repair)
	// 16 is retired: do not reuse it.
	OpSupersede Op = 17 // drop an older shard at a position a narrower acknowledged version leaves (the writer)
	// RespFlag marks a response frame.
	RespFlag Op = 0x80
)

var opNames = [...]string{
	OpClusterInfo: "cluster-info", OpPut: "put", OpGet: "get", OpList: "list", OpBatchPut: "batch-put",
	OpStatus: "status", OpPurge: "purge", OpInventory: "inventory", OpDrop: "drop", OpPing: "ping",
	OpMember: "member", OpSums: "sums", OpSlotInventory: "slot-inventory", OpDropOlder: "drop-older",
	OpRepair: "repair", OpSupersede: "supersede",
}

func (o Op) String() string {
	if i := o &^ RespFlag; int(i) < len(opNames) && opNames[i] != "" {
		return opNames[i]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Status is the outcome of a request. See the package doc for retry rules.
type Status uint8

// Statuses.
const (
	StatusOK           Status = 0
	StatusNotFound     Status = 1
	StatusCorrupt      Status = 2
	StatusBadRequest   Status = 3
	StatusStaleEpoch   Status = 4
	StatusInternal     Status = 5
	StatusUnauthorized Status = 6
	StatusTooLarge     Status = 7
	StatusUnavailable  Status = 8
)

var statusNames = [...]string{
	StatusOK: "ok", StatusNotFound: "not found", StatusCorrupt: "corrupt", StatusBadRequest: "bad request",
	StatusStaleEpoch: "stale epoch", StatusInternal: "internal error", StatusUnauthorized: "unauthorized",
	StatusTooLarge: "too large", StatusUnavailable: "unavailable",
}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("wire: malformed message")

// frameStep is the most ReadFrame allocates ahead of the bytes received.
const frameStep = 1 << 20

// ReadFrame reads one frame body into buf (grown if needed) and returns it.
func ReadFrame(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 2 {
		return nil, fmt.Errorf("%w: frame of %d bytes is shorter than its header", ErrMalformed, n)
	}
	if n > MaxFrame {
		return nil, fmt.Errorf("%w: frame of %d bytes exceeds the limit of %d", ErrMalformed, n, MaxFrame)
	}
	// A buffer too small grows as the body arrives, not to the size the
	// header claims: 4 bytes must not make a node allocate MaxFrame.
	buf = buf[:0]
	for len(buf) < int(n) {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(int(n)-len(buf), max(len(buf), frameStep)))
		}
		k, err := io.ReadFull(r, buf[len(buf):min(cap(buf), int(n))])
		buf = buf[:len(buf)+k]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("%w: truncated frame: %w", ErrMalformed, err)
		}
	}
	if buf[0] != Version {
		return nil, fmt.Errorf("%w: wire version %d, this node speaks %d", ErrMalformed, buf[0], Version)
	}
	return buf, nil
}

// WriteFrame writes body (which must start with the version byte) as a frame.
func WriteFrame(w io.Writer, body []byte) error { return WriteFrameParts(w, body, nil) }

// WriteFrameParts writes head followed by payload as one frame, without
// copying payload into it (head must start with the version byte).
func WriteFrameParts(w io.Writer, head, payload []byte) error {
	n := len(head) + len(payload)
	if n > MaxFrame {
		return fmt.Errorf("wire: frame of %d bytes exceeds the limit of %d", n, MaxFrame)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(n))
	if len(payload) == 0 {
		return writeJoined(w, hdr[:], head)
	}
	return writeJoined(w, append(hdr[:], head...), payload)
}

// joinLimit is the most bytes writeJoined puts in one Write: a TLS record's
// plaintext (16 KiB) less the 12-byte yamux frame header.
const joinLimit = 16<<10 - 12

var joinPool = sync.Pool{New: func() any { b := make([]byte, 0, joinLimit); return &b }}

// writeJoined writes head followed by payload. Every Write on a libp2p
// stream costs a yamux frame, a TLS record and a syscall on each side, so
// head goes in one Write with as much of payload as fits in joinLimit, and
// the rest of payload is written as it is.
func writeJoined(w io.Writer, head, payload []byte) error {
	bp := joinPool.Get().(*[]byte)
	n := min(len(payload), max(joinLimit-len(head), 0))
	b := append(append((*bp)[:0], head...), payload[:n]...)
	defer func() {
		if cap(b) <= joinLimit { // a buffer grown for a huge head is not kept
			*bp = b[:0]
			joinPool.Put(bp)
		}
	}()
	if _, err := w.Write(b); err != nil {
		return err
	}
	if n == len(payload) {
		return nil
	}
	_, err := w.Write(payload[n:])
	return err
}

// Encoder appends fields to a frame body. The zero value is not usable; use
// NewBody.
type Encoder struct{ b []byte }

// NewBody starts a frame body for op, reusing buf's storage.
func NewBody(buf []byte, op Op) *Encoder {
	return &Encoder{b: append(buf[:0], Version, byte(op))}
}

// Bytes returns the body built so far.
func (e *Encoder) Bytes() []byte { return e.b }

// U8 appends a byte.
func (e *Encoder) U8(v uint8) *Encoder { e.b = append(e.b, v); return e }

// U16 appends a big-endian uint16.
func (e *Encoder) U16(v uint16) *Encoder { e.b = binary.BigEndian.AppendUint16(e.b, v); return e }

// U32 appends a big-endian uint32.
func (e *Encoder) U32(v uint32) *Encoder { e.b = binary.BigEndian.AppendUint32(e.b, v); return e }

// U64 appends a big-endian uint64.
func (e *Encoder) U64(v uint64) *Encoder { e.b = binary.BigEndian.AppendUint64(e.b, v); return e }

// Str appends a string with a uint16 length prefix; longer strings are cut
// at 65535 bytes (callers bound keys well below that).
func (e *Encoder) Str(s string) *Encoder {
	if len(s) > 0xffff {
		s = s[:0xffff]
	}
	e.U16(uint16(len(s)))
	e.b = append(e.b, s...)
	return e
}

// Blob appends bytes with a uint32 length prefix.
func (e *Encoder) Blob(p []byte) *Encoder { return e.U32(uint32(len(p))).Raw(p) }

// Raw appends bytes without a prefix (used for a trailing payload).
func (e *Encoder) Raw(p []byte) *Encoder { e.b = append(e.b, p...); return e }

// Decoder reads fields from a frame body. The first error sticks; check Err
// once after reading all fields. Slices it returns alias the body.
type Decoder struct {
	b   []byte
	off int
	err error
}

// NewDecoder reads the fields of body after its version and type bytes.
func NewDecoder(body []byte) *Decoder {
	d := &Decoder{b: body, off: 2}
	switch {
	case len(body) < 2:
		d.err = fmt.Errorf("%w: body of %d bytes", ErrMalformed, len(body))
	case body[0] != Version:
		d.err = fmt.Errorf("%w: wire version %d, this build speaks %d", ErrMalformed, body[0], Version)
	}
	return d
}

// Op is the message type of the body.
func (d *Decoder) Op() Op {
	if len(d.b) < 2 {
		return 0
	}
	return Op(d.b[1])
}

// Err is the first decoding error, wrapping ErrMalformed.
func (d *Decoder) Err() error { return d.err }

// Rest returns the unread bytes (a trailing payload).
func (d *Decoder) Rest() []byte {
	if d.err != nil || d.off > len(d.b) {
		return nil
	}
	return d.b[d.off:]
}

func (d *Decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		d.err = fmt.Errorf("%w: truncated %s: need %d bytes, have %d", ErrMalformed, what, n, len(d.b)-d.off)
		return nil
	}
	out := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return out
}

// U8 reads a byte.
func (d *Decoder) U8(what string) uint8 {
	if p := d.take(1, what); p != nil {
		return p[0]
	}
	return 0
}

// U16 reads a big-endian uint16.
func (d *Decoder) U16(what string) uint16 {
	if p := d.take(2, what); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

// U32 reads a big-endian uint32.
func (d *Decoder) U32(what string) uint32 {
	if p := d.take(4, what); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

// U64 reads a big-endian uint64.
func (d *Decoder) U64(what string) uint64 {
	if p := d.take(8, what); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

// Str reads a uint16-prefixed string.
func (d *Decoder) Str(what string) string {
	n := d.U16(what + " length")
	return string(d.take(int(n), what))
}

// Blob reads a uint32-prefixed byte slice aliasing the body.
func (d *Decoder) Blob(what string) []byte {
	n := d.U32(what + " length")
	return d.take(int(n), what)
}

// Done reports an error if unread bytes remain.
func (d *Decoder) Done() error {
	if d.err == nil && d.off != len(d.b) {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b)-d.off)
	}
	return d.err
}
