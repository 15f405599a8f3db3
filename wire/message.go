package wire

import (
	"fmt"
	"io"
)

// MaxBatch bounds the number of shards in one batch put.
const MaxBatch = 4096

// Request is any request a node serves. Which fields are used depends on Op.
type Request struct {
	Op    Op
	Epoch uint64 // the sender's cluster map epoch; 0 means "unknown, do not check"

	Identity int32 // OpClusterInfo: node identity to fetch, or -1 for a client

	Key        string // OpGet
	Pos        uint8  // OpGet: the position (shard index) read
	HeaderOnly bool   // OpGet: return the shard's index entry (a HeaderEntry), no data
	// HLC and Writer (OpGet), unless both zero, ask for that version of
	// the key, which the node may keep beside a newer one (HeaderEntry.Older).
	HLC, Writer uint64

	Shard  []byte   // OpPut: an encoded shard (header + data)
	Shards [][]byte // OpBatchPut

	Purge []ListEntry // OpPurge: tombstones (key and version) to drop

	Prefix string // OpList
	After  string // OpList, OpInventory, OpSlotInventory: return keys strictly greater
	Limit  uint32 // OpList, OpInventory, OpSlotInventory: at most this many entries (0: node default)
	Slot   uint16 // OpSlotInventory

	// Drop lists shards to drop (OpDrop), or acknowledged versions
	// (OpDropOlder, and OpSupersede with the version's width as Pos).
	Drop []ShardRef

	Repair *RepairOrder // OpRepair: the shard to make and store

	Body []byte // OpMember: a JSON command
}

// AppendRequest encodes r as a frame body appended to buf[:0].
func AppendRequest(buf []byte, r *Request) []byte {
	e := NewBody(buf, r.Op).U64(r.Epoch)
	switch r.Op {
	case OpClusterInfo:
		e.U32(uint32(r.Identity))
	case OpGet:
		f := flag(r.HeaderOnly, 1) | flag(r.HLC != 0 || r.Writer != 0, 2)
		e.U8(f).Str(r.Key).U8(r.Pos)
		if f&2 != 0 {
			e.U64(r.HLC).U64(r.Writer)
		}
	case OpPut:
		e.Raw(r.Shard)
	case OpBatchPut:
		e.U32(uint32(len(r.Shards)))
		for _, s := range r.Shards {
			e.Blob(s)
		}
	case OpList:
		e.Str(r.Prefix).Str(r.After).U32(r.Limit)
	case OpPurge:
		e.U32(uint32(len(r.Purge)))
		for _, le := range r.Purge {
			e.Str(le.Key).U64(le.HLC).U64(le.Writer)
		}
	case OpInventory:
		e.Str(r.After).U32(r.Limit)
	case OpSlotInventory:
		e.U16(r.Slot).Str(r.After).U32(r.Limit)
	case OpDrop, OpDropOlder, OpSupersede:
		e.U32(uint32(len(r.Drop)))
		for _, sr := range r.Drop {
			e.Str(sr.Key).U8(sr.Pos).U64(sr.HLC).U64(sr.Writer).U8(flag(sr.Stale, 1) | flag(sr.Restore, 2))
		}
	case OpMember:
		e.Blob(r.Body)
	case OpRepair:
		o := r.Repair
		if o == nil {
			o = &RepairOrder{}
		}
		e.U8(flag(o.Rebuild, 1) | flag(o.Tombstone, 2)).Str(o.Key).U8(o.Pos).U8(o.Kind).U8(o.K).U8(o.M).U64(o.HLC).U64(o.Writer).Str(o.From)
		srcs := o.Sources[:min(len(o.Sources), 255)]
		e.U8(uint8(len(srcs)))
		for _, src := range srcs {
			e.Str(src.Node).U8(src.Pos)
		}
	case OpStatus, OpPing:
	}
	return e.Bytes()
}

// flag is f when b holds, else 0.
func flag(b bool, f uint8) uint8 {
	if b {
		return f
	}
	return 0
}

// DecodeRequest decodes a request body. Slices alias body.
func DecodeRequest(body []byte) (*Request, error) {
	d := NewDecoder(body)
	r := &Request{Op: d.Op(), Epoch: d.U64("epoch")}
	switch r.Op {
	case OpClusterInfo:
		r.Identity = int32(d.U32("identity"))
	case OpGet:
		f := d.U8("flags")
		r.HeaderOnly, r.Key, r.Pos = f&1 != 0, d.Str("key"), d.U8("position")
		if f&2 != 0 {
			r.HLC, r.Writer = d.U64("version HLC"), d.U64("version writer")
		}
	case OpPut:
		r.Shard = d.Rest()
		if err := d.Err(); err != nil {
			return nil, fmt.Errorf("decode %s request: %w", r.Op, err)
		}
		if len(r.Shard) == 0 {
			return nil, fmt.Errorf("decode %s request: %w: no shard", r.Op, ErrMalformed)
		}
		return r, nil
	case OpBatchPut:
		n := d.U32("shard count")
		if d.Err() == nil && n > MaxBatch {
			return nil, fmt.Errorf("%w: batch of %d shards exceeds %d", ErrMalformed, n, MaxBatch)
		}
		for i := uint32(0); i < n && d.Err() == nil; i++ {
			r.Shards = append(r.Shards, d.Blob("shard"))
		}
	case OpList:
		r.Prefix, r.After, r.Limit = d.Str("prefix"), d.Str("after"), d.U32("limit")
	case OpPurge:
		n := d.U32("purge count")
		if d.Err() == nil && n > MaxBatch {
			return nil, fmt.Errorf("%w: purge of %d keys exceeds %d", ErrMalformed, n, MaxBatch)
		}
		for i := uint32(0); i < n && d.Err() == nil; i++ {
			r.Purge = append(r.Purge, ListEntry{Key: d.Str("key"), HLC: d.U64("hlc"), Writer: d.U64("writer"), Tombstone: true})
		}
	case OpInventory:
		r.After, r.Limit = d.Str("after"), d.U32("limit")
	case OpSlotInventory:
		r.Slot, r.After, r.Limit = d.U16("slot"), d.Str("after"), d.U32("limit")
	case OpDrop, OpDropOlder, OpSupersede:
		n := d.U32("drop count")
		if d.Err() == nil && n > MaxBatch {
			return nil, fmt.Errorf("%w: drop of %d shards exceeds %d", ErrMalformed, n, MaxBatch)
		}
		for i := uint32(0); i < n && d.Err() == nil; i++ {
			sr := ShardRef{Key: d.Str("key"), Pos: d.U8("position"), HLC: d.U64("hlc"), Writer: d.U64("writer")}
			f := d.U8("flags")
			sr.Stale, sr.Restore = f&1 != 0, f&2 != 0
			r.Drop = append(r.Drop, sr)
		}
	case OpMember:
		r.Body = d.Blob("body")
	case OpRepair:
		f := d.U8("flags")
		o := &RepairOrder{Rebuild: f&1 != 0, Tombstone: f&2 != 0, Key: d.Str("key"), Pos: d.U8("position"),
			Kind: d.U8("policy kind"), K: d.U8("data shards"), M: d.U8("parity shards"),
			HLC: d.U64("hlc"), Writer: d.U64("writer"), From: d.Str("from")}
		n := d.U8("source count")
		for i := uint8(0); i < n && d.Err() == nil; i++ {
			o.Sources = append(o.Sources, RepairSource{Node: d.Str("source"), Pos: d.U8("source position")})
		}
		r.Repair = o
	case OpStatus, OpPing, OpSums:
	default:
		if d.Err() == nil {
			return nil, fmt.Errorf("%w: unknown op %d", ErrMalformed, uint8(r.Op))
		}
	}
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("decode %s request: %w", r.Op, err)
	}
	return r, nil
}

// Response answers one Request.
type Response struct {
	Op      Op // the request's op (RespFlag is added on the wire)
	Status  Status
	Message string // human readable detail for a non-OK status
	Epoch   uint64 // the node's cluster map epoch
	Payload []byte // op specific: shard bytes, JSON, list entries, batch results
}

// AppendResponse encodes r as a frame body appended to buf[:0].
func AppendResponse(buf []byte, r *Response) []byte {
	return NewBody(buf, r.Op|RespFlag).U8(uint8(r.Status)).Str(r.Message).U64(r.Epoch).Raw(r.Payload).Bytes()
}

// WriteResponse writes r as one frame without copying most of its payload
// (see writeJoined). The fixed fields are built in buf, which it returns.
func WriteResponse(w io.Writer, buf []byte, r *Response) ([]byte, error) {
	head := NewBody(buf[:0], r.Op|RespFlag).U8(uint8(r.Status)).Str(r.Message).U64(r.Epoch).Bytes()
	return head, WriteFrameParts(w, head, r.Payload)
}

// DecodeResponse decodes a response body. Payload aliases body.
func DecodeResponse(body []byte) (*Response, error) {
	d := NewDecoder(body)
	op := d.Op()
	if d.Err() == nil && op&RespFlag == 0 {
		return nil, fmt.Errorf("%w: expected a response, got a %s request", ErrMalformed, op)
	}
	r := &Response{Op: op &^ RespFlag, Status: Status(d.U8("status")), Message: d.Str("message"),
		Epoch: d.U64("epoch"), Payload: d.Rest()}
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	return r, nil
}

// ListEntry is one key in a list response.
type ListEntry struct {
	Key       string
	HLC       uint64
	Writer    uint64
	Tombstone bool
	ValueLen  uint64
}

// AppendListPayload encodes list entries; more says whether the node has
// further entries after the last one.
func AppendListPayload(buf []byte, entries []ListEntry, more bool) []byte {
	e := (&Encoder{b: buf}).U8(flag(more, 1)).U32(uint32(len(entries)))
	for _, le := range entries {
		appendListEntry(e, le)
	}
	return e.Bytes()
}

// DecodeListPayload decodes AppendListPayload's output.
func DecodeListPayload(p []byte) (entries []ListEntry, more bool, err error) {
	d := &Decoder{b: p}
	more = d.U8("more") == 1
	n := d.U32("entry count")
	for i := uint32(0); i < n && d.Err() == nil; i++ {
		entries = append(entries, decodeListEntry(d))
	}
	if err := d.Done(); err != nil {
		return nil, false, fmt.Errorf("decode list: %w", err)
	}
	return entries, more, nil
}

func appendListEntry(e *Encoder, le ListEntry) {
	e.Str(le.Key).U64(le.HLC).U64(le.Writer).U8(flag(le.Tombstone, 1)).U64(le.ValueLen)
}

func decodeListEntry(d *Decoder) ListEntry {
	return ListEntry{Key: d.Str("key"), HLC: d.U64("hlc"), Writer: d.U64("writer"),
		Tombstone: d.U8("tombstone") == 1, ValueLen: d.U64("value length")}
}

// HeaderEntry is a node's answer to a header-only get: its index entry for
// the key at the position asked, and the policy, which a reader needs to
// tell whether a version has enough shards. Older lists, newest first, the
// older versions the node keeps at that position; each may be read by its
// version (Request.HLC, Writer).
type HeaderEntry struct {
	ListEntry
	Index uint8 // the shard's position
	Kind  uint8 // the policy's kind (coding.Kind)
	K, M  uint8 // the policy's data and parity shards
	Older []HeaderEntry
}

// MaxOlder bounds HeaderEntry.Older.
const MaxOlder = 255

// AppendHeaderPayload encodes a header-only get's answer. The older
// versions' keys are h's, not repeated.
func AppendHeaderPayload(buf []byte, h HeaderEntry) []byte {
	e := &Encoder{b: buf}
	appendListEntry(e, h.ListEntry)
	e.U8(h.Index).U8(h.Kind).U8(h.K).U8(h.M)
	older := h.Older[:min(len(h.Older), MaxOlder)]
	e.U8(uint8(len(older)))
	for _, o := range older {
		e.U64(o.HLC).U64(o.Writer).U8(flag(o.Tombstone, 1)).U64(o.ValueLen).U8(o.Index).U8(o.Kind).U8(o.K).U8(o.M)
	}
	return e.Bytes()
}

// DecodeHeaderPayload decodes a header-only get's answer.
func DecodeHeaderPayload(p []byte) (h HeaderEntry, err error) {
	d := &Decoder{b: p}
	h.ListEntry = decodeListEntry(d)
	h.Index, h.Kind, h.K, h.M = d.U8("shard index"), d.U8("policy kind"), d.U8("data shards"), d.U8("parity shards")
	n := int(d.U8("older versions"))
	for i := 0; i < n && d.Err() == nil; i++ {
		h.Older = append(h.Older, HeaderEntry{
			ListEntry: ListEntry{Key: h.Key, HLC: d.U64("version HLC"), Writer: d.U64("version writer"),
				Tombstone: d.U8("tombstone") == 1, ValueLen: d.U64("value length")},
			Index: d.U8("shard index"), Kind: d.U8("policy kind"), K: d.U8("data shards"), M: d.U8("parity shards")})
	}
	if err := d.Done(); err != nil {
		return HeaderEntry{}, fmt.Errorf("decode header entry: %w", err)
	}
	return h, nil
}

// BatchResult is the outcome of one item of a batch request: for a put
// (OpBatchPut), the shard's.
type BatchResult struct {
	Status  Status
	Message string
	// Kept (a put): the node keeps older versions of the key beside the
	// shard; once the write is acknowledged the writer has them dropped
	// (OpDropOlder).
	Kept bool
	// Held (a put, with StatusOK), when not zero: the node did not store
	// the shard, because it holds the key at this version, newer than or
	// equal to the shard's; a writer orders its next write after it.
	HeldHLC, HeldWriter uint64
}

// Flags of an encoded BatchResult.
const (
	resultKept = 1 << 0
	resultHeld = 1 << 1
)

// AppendBatchPayload encodes batch results in request order.
func AppendBatchPayload(buf []byte, rs []BatchResult) []byte {
	e := &Encoder{b: buf}
	e.U32(uint32(len(rs)))
	for _, r := range rs {
		held := r.HeldHLC != 0 || r.HeldWriter != 0
		e.U8(uint8(r.Status)).Str(r.Message).U8(flag(r.Kept, resultKept) | flag(held, resultHeld))
		if held {
			e.U64(r.HeldHLC).U64(r.HeldWriter)
		}
	}
	return e.Bytes()
}

// DecodeBatchPayload decodes AppendBatchPayload's output.
func DecodeBatchPayload(p []byte) ([]BatchResult, error) {
	d := &Decoder{b: p}
	n := d.U32("result count")
	if d.Err() == nil && n > MaxBatch {
		return nil, fmt.Errorf("%w: %d batch results exceed %d", ErrMalformed, n, MaxBatch)
	}
	rs := make([]BatchResult, 0, n)
	for i := uint32(0); i < n && d.Err() == nil; i++ {
		r := BatchResult{Status: Status(d.U8("status")), Message: d.Str("message")}
		flags := d.U8("result flags")
		if flags&^(resultKept|resultHeld) != 0 {
			return nil, fmt.Errorf("%w: unknown batch result flags %#x", ErrMalformed, flags)
		}
		r.Kept = flags&resultKept != 0
		if flags&resultHeld != 0 {
			r.HeldHLC, r.HeldWriter = d.U64("held HLC"), d.U64("held writer")
			if r.HeldHLC == 0 && r.HeldWriter == 0 && d.Err() == nil {
				return nil, fmt.Errorf("%w: a held version of zero", ErrMalformed)
			}
		}
		rs = append(rs, r)
	}
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("decode batch results: %w", err)
	}
	return rs, nil
}

// ShardRef names one shard: a key's shard at a position and version.
type ShardRef struct {
	Key    string
	Pos    uint8
	HLC    uint64
	Writer uint64
	// Stale (OpDrop): even the position's owner drops the shard, a
	// superseded older version or a failed write's.
	Stale bool
	// Restore (OpDrop): the node drops that shard alone, a failed write's,
	// and what it keeps of the key below it becomes its newest.
	Restore bool
}

// RepairOrder (OpRepair) has the node that receives it make shard Pos of
// version (HLC, Writer) of a key, under policy (Kind, K, M), and store it:
// a copy of From's shard (Rebuild unset), or a rebuild from the shards of
// Sources (in preference order; a tombstone needs none).
type RepairOrder struct {
	Rebuild   bool
	Tombstone bool
	Key       string
	Pos       uint8
	Kind      uint8
	K, M      uint8
	HLC       uint64
	Writer    uint64
	From      string
	Sources   []RepairSource // at most 255
}

// RepairSource is a node holding shard Pos of the key a RepairOrder rebuilds.
type RepairSource struct {
	Node string
	Pos  uint8
}

// InventoryEntry is one shard a node holds, as OpInventory reports it: what
// the repair planner needs to know without reading the shard.
type InventoryEntry struct {
	Key       string
	Pos       uint8 // shard index
	Kind      uint8 // coding.Kind of the policy
	K, M      uint8 // policy shape
	HLC       uint64
	Writer    uint64
	Tombstone bool
	ValueLen  uint64
	ShardLen  uint32
	Older     uint8 // how many shards of older versions of the key the node keeps
}

// AppendInventoryPayload encodes inventory entries; more says whether the
// node has further entries after the last one.
func AppendInventoryPayload(buf []byte, entries []InventoryEntry, more bool) []byte {
	e := (&Encoder{b: buf}).U8(flag(more, 1)).U32(uint32(len(entries)))
	for _, ie := range entries {
		e.Str(ie.Key).U8(ie.Pos).U8(ie.Kind).U8(ie.K).U8(ie.M).U64(ie.HLC).U64(ie.Writer).U8(flag(ie.Tombstone, 1)).U64(ie.ValueLen).U32(ie.ShardLen).U8(ie.Older)
	}
	return e.Bytes()
}

// DecodeInventoryPayload decodes AppendInventoryPayload's output.
func DecodeInventoryPayload(p []byte) (entries []InventoryEntry, more bool, err error) {
	d := &Decoder{b: p}
	more = d.U8("more") == 1
	n := d.U32("entry count")
	for i := uint32(0); i < n && d.Err() == nil; i++ {
		entries = append(entries, InventoryEntry{Key: d.Str("key"), Pos: d.U8("position"),
			Kind: d.U8("kind"), K: d.U8("k"), M: d.U8("m"), HLC: d.U64("hlc"), Writer: d.U64("writer"),
			Tombstone: d.U8("tombstone") == 1, ValueLen: d.U64("value length"),
			ShardLen: d.U32("shard length"), Older: d.U8("older versions")})
	}
	if err := d.Done(); err != nil {
		return nil, false, fmt.Errorf("decode inventory: %w", err)
	}
	return entries, more, nil
}

// SlotSum is one line of a node's answer to OpSums: how many shards a node
// holds of one slot, at one position, with one policy, and the XOR of a
// hash of each one's key, version, tombstone flag and policy (package index).
type SlotSum struct {
	Slot       uint16
	Kind, K, M uint8
	Pos        uint8
	Count      uint64
	XOR        uint64
	Older      uint64 // of the Count entries, those that keep older versions
}

// slotSumLen is the encoded size of a SlotSum.
const slotSumLen = 2 + 4 + 8 + 8 + 8

// AppendSumsPayload encodes an OpSums answer.
func AppendSumsPayload(buf []byte, sums []SlotSum) []byte {
	e := &Encoder{b: buf}
	e.U32(uint32(len(sums)))
	for _, s := range sums {
		e.U16(s.Slot).U8(s.Kind).U8(s.K).U8(s.M).U8(s.Pos).U64(s.Count).U64(s.XOR).U64(s.Older)
	}
	return e.Bytes()
}

// DecodeSumsPayload decodes AppendSumsPayload's output.
func DecodeSumsPayload(p []byte) ([]SlotSum, error) {
	d := &Decoder{b: p}
	n := d.U32("sum count")
	if d.Err() == nil && uint64(n)*slotSumLen > uint64(len(p)) {
		return nil, fmt.Errorf("decode sums: %w: %d sums in %d bytes", ErrMalformed, n, len(p))
	}
	sums := make([]SlotSum, 0, n)
	for i := uint32(0); i < n && d.Err() == nil; i++ {
		sums = append(sums, SlotSum{Slot: d.U16("slot"), Kind: d.U8("kind"), K: d.U8("k"), M: d.U8("m"),
			Pos: d.U8("position"), Count: d.U64("count"), XOR: d.U64("xor"), Older: d.U64("older")})
	}
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("decode sums: %w", err)
	}
	return sums, nil
}
