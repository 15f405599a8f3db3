package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func sampleRequests() []*Request {
	return []*Request{
		{Op: OpClusterInfo, Epoch: 3, Identity: -1},
		{Op: OpClusterInfo, Epoch: 0, Identity: 5},
		{Op: OpGet, Epoch: 7, Key: "/blocks/CIQA", HeaderOnly: true},
		{Op: OpGet, Key: "/k", Pos: 5, HLC: 1 << 50, Writer: 3},
		{Op: OpGet, Key: "/k", Writer: 1},
		{Op: OpGet, Epoch: 1 << 40, Key: ""},
		{Op: OpPut, Epoch: 2, Shard: []byte("DSCS shard bytes")},
		{Op: OpBatchPut, Epoch: 9, Shards: [][]byte{[]byte("a"), {}, bytes.Repeat([]byte{1}, 300)}},
		{Op: OpBatchPut, Epoch: 9},
		{Op: OpList, Epoch: 4, Prefix: "/blocks/", After: "/blocks/A", Limit: 1000},
		{Op: OpList},
		{Op: OpStatus, Epoch: 12},
		{Op: OpInventory, Epoch: 5, After: "/k", Limit: 500},
		{Op: OpSlotInventory, Epoch: 5, Slot: 16383, After: "/k", Limit: 500},
		{Op: OpSums, Epoch: 8},
		{Op: OpDrop, Epoch: 6, Drop: []ShardRef{{Key: "/a", Pos: 3, HLC: 9, Writer: 7, Stale: true}, {Key: "", Pos: 255}, {Key: "/r", Stale: true, Restore: true}}},
		{Op: OpDropOlder, Epoch: 6, Drop: []ShardRef{{Key: "/a", Pos: 3, HLC: 9, Writer: 7}}},
		{Op: OpDropOlder, Drop: []ShardRef{{Key: "/a", HLC: 9, Writer: 7}, {Key: "/b", Pos: 1, HLC: 10, Writer: 7}}},
		{Op: OpSupersede, Drop: []ShardRef{{Key: "/a", Pos: 3, HLC: 9, Writer: 7}}},
		{Op: OpRepair, Epoch: 4, Repair: &RepairOrder{Key: "/a", Pos: 5, Kind: 1, K: 4, M: 2, HLC: 9, Writer: 3, From: "12D3Koo"}},
		{Op: OpRepair, Repair: &RepairOrder{Rebuild: true, Tombstone: true, Key: "/b", Pos: 1, Kind: 1, K: 4, M: 2, HLC: 1 << 60,
			Sources: []RepairSource{{Node: "n1", Pos: 0}, {Node: "n2", Pos: 255}}}},
		{Op: OpPing},
		{Op: OpMember, Epoch: 2, Body: []byte(`{"op":"drain","id":"x"}`)},
	}
}

func sampleResponses() []*Response {
	return []*Response{
		{Op: OpGet, Status: StatusOK, Epoch: 3, Payload: []byte("shard")},
		{Op: OpPut, Status: StatusCorrupt, Message: "data checksum mismatch", Epoch: 1},
		{Op: OpList, Status: StatusOK, Payload: AppendListPayload(nil, []ListEntry{{Key: "/a", HLC: 1, Writer: 2, ValueLen: 3}}, true)},
		{Op: OpStatus, Status: StatusStaleEpoch, Message: "refresh", Epoch: 1 << 50},
		{Op: OpClusterInfo, Status: StatusNotFound},
	}
}

// reqEqual compares requests treating nil and empty slices as equal.
func reqEqual(a, b *Request) bool {
	if a.Op != b.Op || a.Epoch != b.Epoch || a.Identity != b.Identity || a.Key != b.Key ||
		a.HeaderOnly != b.HeaderOnly || a.HLC != b.HLC || a.Writer != b.Writer || !bytes.Equal(a.Shard, b.Shard) || a.Prefix != b.Prefix ||
		a.After != b.After || a.Limit != b.Limit || a.Slot != b.Slot || len(a.Shards) != len(b.Shards) ||
		!bytes.Equal(a.Body, b.Body) || len(a.Drop) != len(b.Drop) || (a.Repair == nil) != (b.Repair == nil) {
		return false
	}
	if a.Repair != nil && !reflect.DeepEqual(a.Repair, b.Repair) {
		return false
	}
	for i := range a.Drop {
		if a.Drop[i] != b.Drop[i] {
			return false
		}
	}
	for i := range a.Shards {
		if !bytes.Equal(a.Shards[i], b.Shards[i]) {
			return false
		}
	}
	return true
}

func respEqual(a, b *Response) bool {
	return a.Op == b.Op && a.Status == b.Status && a.Message == b.Message && a.Epoch == b.Epoch && bytes.Equal(a.Payload, b.Payload)
}

func TestRequestRoundTrip(t *testing.T) {
	for _, r := range sampleRequests() {
		body := AppendRequest(nil, r)
		if body[0] != Version || Op(body[1]) != r.Op {
			t.Errorf("%s: body starts %x; want version %d, op %d", r.Op, body[:2], Version, r.Op)
		}
		got, err := DecodeRequest(body)
		if err != nil {
			t.Errorf("%s: decode: %v", r.Op, err)
			continue
		}
		if !reqEqual(got, r) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v", r.Op, got, r)
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, r := range sampleResponses() {
		body := AppendResponse(nil, r)
		got, err := DecodeResponse(body)
		if err != nil {
			t.Errorf("%s: decode: %v", r.Op, err)
			continue
		}
		if !respEqual(got, r) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v", r.Op, got, r)
		}
	}
	// A request is not a response, and vice versa.
	if _, err := DecodeResponse(AppendRequest(nil, &Request{Op: OpStatus})); !errors.Is(err, ErrMalformed) {
		t.Errorf("decode a request as a response: %v; want ErrMalformed", err)
	}
	if _, err := DecodeRequest(AppendResponse(nil, &Response{Op: OpStatus})); !errors.Is(err, ErrMalformed) {
		t.Errorf("decode a response as a request: %v; want ErrMalformed", err)
	}
}

func TestListAndBatchPayloadRoundTrip(t *testing.T) {
	entries := []ListEntry{
		{Key: "/a", HLC: 1, Writer: 2, ValueLen: 3},
		{Key: "/b/" + strings.Repeat("x", 1000), HLC: 1 << 60, Writer: 1<<64 - 1, Tombstone: true},
		{Key: ""},
	}
	for _, more := range []bool{false, true} {
		p := AppendListPayload(nil, entries, more)
		got, gotMore, err := DecodeListPayload(p)
		if err != nil || gotMore != more || !reflect.DeepEqual(got, entries) {
			t.Errorf("list more=%v: got %+v, %v, %v", more, got, gotMore, err)
		}
		for n := range len(p) {
			if _, _, err := DecodeListPayload(p[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("list payload truncated to %d of %d bytes: %v; want ErrMalformed", n, len(p), err)
			}
		}
		if _, _, err := DecodeListPayload(append(p, 0)); !errors.Is(err, ErrMalformed) {
			t.Errorf("list payload with a trailing byte: %v; want ErrMalformed", err)
		}
	}
	if es, more, err := DecodeListPayload(AppendListPayload(nil, nil, false)); err != nil || more || len(es) != 0 {
		t.Errorf("empty list: %v, %v, %v", es, more, err)
	}

	rs := []BatchResult{{Status: StatusOK}, {Status: StatusCorrupt, Message: "bad shard"}, {Status: StatusBadRequest, Message: "not mine"},
		{Status: StatusOK, Kept: true}, {Status: StatusOK, HeldHLC: 7 << 16, HeldWriter: 3}, {Status: StatusOK, Kept: true, HeldWriter: 1}}
	p := AppendBatchPayload(nil, rs)
	got, err := DecodeBatchPayload(p)
	if err != nil || !reflect.DeepEqual(got, rs) {
		t.Errorf("batch: got %+v, %v", got, err)
	}
	for n := range len(p) {
		if _, err := DecodeBatchPayload(p[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("batch payload truncated to %d of %d bytes: %v; want ErrMalformed", n, len(p), err)
		}
	}
	// Flags this version does not know, and a held version of zero.
	for bad, why := range map[string]string{
		string([]byte{0, 0, 0, 1, 0, 0, 0, 1 << 2}):                                  "flags", // count, status, message length, flags
		string(append([]byte{0, 0, 0, 1, 0, 0, 0, resultHeld}, make([]byte, 16)...)): "zero",
	} {
		if _, err := DecodeBatchPayload([]byte(bad)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), why) {
			t.Errorf("batch result %x: %v; want ErrMalformed for its %s", bad, err, why)
		}
	}
	huge := binary.BigEndian.AppendUint32(nil, MaxBatch+1)
	if _, err := DecodeBatchPayload(huge); !errors.Is(err, ErrMalformed) {
		t.Errorf("batch of %d results: %v; want ErrMalformed", MaxBatch+1, err)
	}
	// A count far beyond the bytes present must not allocate for it.
	if _, _, err := DecodeListPayload([]byte{0, 0xff, 0xff, 0xff, 0xff}); !errors.Is(err, ErrMalformed) {
		t.Errorf("list claiming 4G entries: %v; want ErrMalformed", err)
	}
}

// TestHeaderPayloadRoundTrip: a header-only get's answer carries the entry,
// the shard's position and its policy, and the older versions the node
// keeps; a cut or padded one is malformed.
func TestHeaderPayloadRoundTrip(t *testing.T) {
	h := HeaderEntry{ListEntry: ListEntry{Key: "/k", HLC: 7, Writer: 9, ValueLen: 300}, Index: 5, Kind: 1, K: 4, M: 2,
		Older: []HeaderEntry{
			{ListEntry: ListEntry{Key: "/k", HLC: 6, Writer: 1, ValueLen: 200}, Index: 5, Kind: 1, K: 4, M: 2},
			{ListEntry: ListEntry{Key: "/k", HLC: 5, Writer: 2, Tombstone: true}, Index: 1, Kind: 2, K: 1, M: 2},
		}}
	p := AppendHeaderPayload(nil, h)
	got, err := DecodeHeaderPayload(p)
	if err != nil || !reflect.DeepEqual(got, h) {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, h)
	}
	for n := 0; n < len(p); n++ {
		if _, err := DecodeHeaderPayload(p[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%d of %d bytes: %v, want ErrMalformed", n, len(p), err)
		}
	}
	if _, err := DecodeHeaderPayload(append(p, 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a trailing byte: %v, want ErrMalformed", err)
	}
}

// fixedLen is how many leading bytes of a request body are structured
// fields. OpPut ends in the raw shard and a response in its raw payload:
// a cut inside those is not visible to the decoder (the frame length and
// the shard's own checksums catch it), so only cuts before them must fail.
func reqFixedLen(r *Request, body []byte) int {
	if r.Op == OpPut {
		return 2 + 8 + 1 // a put needs at least one shard byte
	}
	return len(body)
}

func TestTruncatedRequestRejected(t *testing.T) {
	for _, r := range sampleRequests() {
		body := AppendRequest(nil, r)
		for n := range reqFixedLen(r, body) {
			if _, err := DecodeRequest(body[:n]); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s request truncated to %d of %d bytes: %v; want ErrMalformed", r.Op, n, len(body), err)
			}
		}
		if r.Op != OpPut {
			if _, err := DecodeRequest(append(body, 0)); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s request with a trailing byte: %v; want ErrMalformed", r.Op, err)
			}
		}
	}
	if _, err := DecodeRequest(NewBody(nil, Op(99)).U64(0).Bytes()); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "unknown op 99") {
		t.Errorf("unknown op: %v; want ErrMalformed naming op 99", err)
	}
	tooMany := NewBody(nil, OpBatchPut).U64(0).U32(MaxBatch + 1).Bytes()
	if _, err := DecodeRequest(tooMany); !errors.Is(err, ErrMalformed) {
		t.Errorf("batch of %d shards: %v; want ErrMalformed", MaxBatch+1, err)
	}
}

// TestDecodeRequestErrorReturnsNil: like every other decoder here (and Go
// convention), DecodeRequest returns a nil request with an error, so a
// caller can never act on a half-decoded request.
func TestDecodeRequestErrorReturnsNil(t *testing.T) {
	for _, r := range sampleRequests() {
		body := AppendRequest(nil, r)
		for n := range reqFixedLen(r, body) {
			if got, err := DecodeRequest(body[:n]); err != nil && got != nil {
				t.Errorf("%s request truncated to %d bytes: returned %+v along with error %q", r.Op, n, got, err)
			}
		}
	}
}

func TestTruncatedResponseRejected(t *testing.T) {
	for _, r := range sampleResponses() {
		body := AppendResponse(nil, r)
		fixed := 2 + 1 + 2 + len(r.Message) + 8
		for n := range fixed {
			got, err := DecodeResponse(body[:n])
			if !errors.Is(err, ErrMalformed) || got != nil {
				t.Errorf("%s response truncated to %d of %d bytes: %+v, %v; want ErrMalformed", r.Op, n, len(body), got, err)
			}
		}
	}
}

func TestReadFrame(t *testing.T) {
	body := AppendRequest(nil, &Request{Op: OpGet, Key: "/k"})
	var buf bytes.Buffer
	if err := WriteFrame(&buf, body); err != nil {
		t.Fatal(err)
	}
	if err := WriteFrame(&buf, AppendRequest(nil, &Request{Op: OpStatus})); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFrame(&buf, nil)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read frame: %x, %v; want %x", got, err, body)
	}
	got, err = ReadFrame(&buf, got)
	if err != nil || Op(got[1]) != OpStatus {
		t.Fatalf("second frame: %x, %v", got, err)
	}
	if _, err := ReadFrame(&buf, nil); !errors.Is(err, io.EOF) {
		t.Fatalf("read at end: %v; want io.EOF", err)
	}

	hdr := func(n uint32, rest ...byte) io.Reader {
		return bytes.NewReader(append(binary.BigEndian.AppendUint32(nil, n), rest...))
	}
	for _, tc := range []struct {
		name string
		r    io.Reader
		msg  string
	}{
		{"oversize", hdr(MaxFrame + 1), "exceeds"},
		{"max uint32", hdr(1<<32 - 1), "exceeds"},
		{"zero length", hdr(0), "shorter"},
		{"one byte", hdr(1, Version), "shorter"},
		{"truncated body", hdr(100, Version, byte(OpStatus)), "truncated"},
		{"unknown version", hdr(2, Version+1, byte(OpStatus)), "version"},
		{"version zero", hdr(2, 0, byte(OpStatus)), "version"},
	} {
		_, err := ReadFrame(tc.r, nil)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v; want ErrMalformed mentioning %q", tc.name, err, tc.msg)
		}
	}
	// An oversize length is refused before anything is allocated or read:
	// the reader holds only the header.
	if err := WriteFrame(io.Discard, make([]byte, MaxFrame+1)); err == nil {
		t.Error("WriteFrame of MaxFrame+1 bytes succeeded")
	}
	// A partial length header is an unexpected EOF.
	if _, err := ReadFrame(bytes.NewReader([]byte{0, 0}), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("2-byte header: %v; want io.ErrUnexpectedEOF", err)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, r := range sampleRequests() {
		f.Add(AppendRequest(nil, r))
	}
	f.Add([]byte{})
	f.Add([]byte{Version, byte(OpBatchPut), 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodeRequest(body)
		if err != nil {
			// (A non-nil r with the error is TestDecodeRequestErrorReturnsNil's
			// subject, not this fuzzer's.)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := DecodeRequest(AppendRequest(nil, r))
		if err != nil {
			t.Fatalf("re-encoded %+v does not decode: %v", r, err)
		}
		if !reqEqual(r, again) {
			t.Fatalf("re-encoding changed the request:\n%+v\n%+v", r, again)
		}
	})
}

// FuzzDecodeSumsPayload: slot sums come from other nodes; any bytes give
// sums that encode back to the same bytes, or ErrMalformed.
func FuzzDecodeSumsPayload(f *testing.F) {
	f.Add(AppendSumsPayload(nil, []SlotSum{{Slot: 7, Kind: 1, K: 4, M: 2, Pos: 3, Count: 9, XOR: 0xfeed}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		sums, err := DecodeSumsPayload(p)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if again := AppendSumsPayload(nil, sums); !bytes.Equal(again, p) {
			t.Fatalf("%x decodes to %+v, which encodes to %x", p, sums, again)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	for _, r := range sampleResponses() {
		f.Add(AppendResponse(nil, r))
	}
	f.Add([]byte{Version, byte(OpGet | RespFlag)})
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodeResponse(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := DecodeResponse(AppendResponse(nil, r))
		if err != nil {
			t.Fatalf("re-encoded %+v does not decode: %v", r, err)
		}
		if !respEqual(r, again) {
			t.Fatalf("re-encoding changed the response:\n%+v\n%+v", r, again)
		}
		if r.Status == StatusOK && r.Op == OpList {
			_, _, _ = DecodeListPayload(r.Payload)
		}
		if r.Status == StatusOK && r.Op == OpGet {
			_, _ = DecodeHeaderPayload(r.Payload)
		}
		if r.Op == OpBatchPut {
			_, _ = DecodeBatchPayload(r.Payload)
		}
	})
}

// TestWriteResponseMatchesAppend: the copy-free writer puts exactly the
// bytes of WriteFrame(AppendResponse(...)) on the wire.
func TestWriteResponseMatchesAppend(t *testing.T) {
	for _, r := range []*Response{
		{Op: OpGet, Status: StatusOK, Epoch: 3, Payload: bytes.Repeat([]byte{7}, 70000)},
		{Op: OpPut, Status: StatusBadRequest, Message: "no", Epoch: 1},
	} {
		var want, got bytes.Buffer
		if err := WriteFrame(&want, AppendResponse(nil, r)); err != nil {
			t.Fatal(err)
		}
		if _, err := WriteResponse(&got, make([]byte, 0, 8), r); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("%s: WriteResponse wrote %d bytes, AppendResponse+WriteFrame %d, or they differ", r.Op, got.Len(), want.Len())
		}
	}
}

func TestInventoryPayloadRoundTrip(t *testing.T) {
	in := []InventoryEntry{
		{Key: "/blocks/A", Pos: 5, Kind: 1, K: 4, M: 2, HLC: 1 << 40, Writer: 3, ValueLen: 262144, ShardLen: 65536},
		{Key: "/t", Pos: 0, Kind: 2, K: 1, M: 2, HLC: 1, Writer: 1, Tombstone: true},
	}
	for _, more := range []bool{false, true} {
		p := AppendInventoryPayload(nil, in, more)
		got, gotMore, err := DecodeInventoryPayload(p)
		if err != nil {
			t.Fatal(err)
		}
		if gotMore != more || len(got) != len(in) {
			t.Fatalf("got %d entries more=%v, want %d more=%v", len(got), gotMore, len(in), more)
		}
		for i := range in {
			if got[i] != in[i] {
				t.Fatalf("entry %d: got %+v, want %+v", i, got[i], in[i])
			}
		}
		for cut := 0; cut < len(p); cut++ {
			if _, _, err := DecodeInventoryPayload(p[:cut]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("truncated to %d of %d bytes: err %v, want ErrMalformed", cut, len(p), err)
			}
		}
	}
}

func TestSumsPayloadRoundTrip(t *testing.T) {
	in := []SlotSum{
		{Slot: 16383, Kind: 1, K: 4, M: 2, Pos: 5, Count: 1 << 33, XOR: 0xdeadbeefcafef00d},
		{Slot: 0, Kind: 2, K: 1, M: 2, Pos: 0, Count: 1, XOR: 1},
	}
	p := AppendSumsPayload(nil, in)
	got, err := DecodeSumsPayload(p)
	if err != nil || !slices.Equal(got, in) {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, in)
	}
	for cut := 0; cut < len(p); cut++ {
		if _, err := DecodeSumsPayload(p[:cut]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d of %d bytes: err %v, want ErrMalformed", cut, len(p), err)
		}
	}
	// A count the payload cannot hold is refused before any allocation.
	if _, err := DecodeSumsPayload([]byte{0xff, 0xff, 0xff, 0xff}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("4 billion sums in 4 bytes: %v, want ErrMalformed", err)
	}
}

// writeRecorder keeps each Write as it came.
type writeRecorder struct{ writes [][]byte }

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.writes = append(w.writes, append([]byte(nil), p...))
	return len(p), nil
}

// A frame's length prefix never goes out in a Write of its own (each Write
// on a stream is a yamux frame, a TLS record and a syscall): a frame that
// fits one TLS record is one Write, a larger one two, the first exactly
// joinLimit bytes. The bytes read back are the frame.
func TestFramesAreWrittenJoined(t *testing.T) {
	for _, size := range []int{2, 100, joinLimit - 4, joinLimit - 3, joinLimit, 64 << 10, 1 << 20} {
		body := bytes.Repeat([]byte{7}, size)
		body[0] = Version
		var w writeRecorder
		if err := WriteFrame(&w, body); err != nil {
			t.Fatal(err)
		}
		want := 1
		if size+4 > joinLimit {
			want = 2
		}
		if len(w.writes) != want {
			t.Fatalf("frame of %d bytes: %d writes, want %d", size, len(w.writes), want)
		}
		if want == 2 && len(w.writes[0]) != joinLimit {
			t.Fatalf("frame of %d bytes: first write %d bytes, want %d", size, len(w.writes[0]), joinLimit)
		}
		got, err := ReadFrame(bytes.NewReader(bytes.Join(w.writes, nil)), nil)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("frame of %d bytes read back: %d bytes, %v", size, len(got), err)
		}
		// The same frame from a head and a payload: the same bytes, in
		// as many writes.
		parts := writeRecorder{}
		if err := WriteFrameParts(&parts, body[:min(size, 30)], body[min(size, 30):]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bytes.Join(parts.writes, nil), bytes.Join(w.writes, nil)) || len(parts.writes) != want {
			t.Fatalf("frame of %d bytes from parts: %d writes, bytes equal %v", size, len(parts.writes),
				bytes.Equal(bytes.Join(parts.writes, nil), bytes.Join(w.writes, nil)))
		}

		// A response with a payload of the same size: the same rule.
		w = writeRecorder{}
		r := &Response{Op: OpGet, Status: StatusOK, Epoch: 3, Payload: body[1:]}
		if _, err := WriteResponse(&w, nil, r); err != nil {
			t.Fatal(err)
		}
		frame, err := ReadFrame(bytes.NewReader(bytes.Join(w.writes, nil)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := 1 + (len(frame)+4-1)/joinLimit; len(w.writes) != min(want, 2) {
			t.Fatalf("response of %d bytes: %d writes, want %d", len(frame), len(w.writes), min(want, 2))
		}
		got2, err := DecodeResponse(frame)
		if err != nil || !reflect.DeepEqual(got2, r) {
			t.Fatalf("response of %d bytes read back: %+v, %v", size, got2, err)
		}
	}
}

// A header alone makes ReadFrame allocate no more than frameStep ahead of
// the bytes that arrive: it used to allocate the length the header claims
// (up to MaxFrame, 72 MiB) before reading any of it, so a few streams of
// 4 bytes each could hold gigabytes of a node's memory. A large frame that
// does arrive is read whole, and a buffer big enough is reused.
func TestReadFrameAllocatesAsBytesArrive(t *testing.T) {
	claim := binary.BigEndian.AppendUint32(nil, MaxFrame)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ReadFrame(bytes.NewReader(append(claim, Version, byte(OpPut))), nil)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("header of %d bytes and 2 of body: %v, want a truncated frame", MaxFrame, err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4*frameStep { // -race allocates a little more
		t.Fatalf("reading a frame that claims %d bytes and brings 2 allocated %d bytes", MaxFrame, grew)
	}

	big := make([]byte, 5*frameStep+123)
	big[0] = Version
	for i := 1; i < len(big); i++ {
		big[i] = byte(i * 7)
	}
	var w bytes.Buffer
	if err := WriteFrame(&w, big); err != nil {
		t.Fatal(err)
	}
	wire := w.Bytes()
	got, err := ReadFrame(iotest.OneByteReader(bytes.NewReader(wire[:4+frameStep])), nil)
	if !errors.Is(err, ErrMalformed) || got != nil {
		t.Fatalf("frame cut short: %d bytes, %v; want a truncated frame", len(got), err)
	}
	got, err = ReadFrame(bytes.NewReader(wire), nil)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("large frame: %d bytes, %v; want the %d written", len(got), err, len(big))
	}
	again, err := ReadFrame(bytes.NewReader(wire), got)
	if err != nil || !bytes.Equal(again, big) || &again[0] != &got[0] {
		t.Fatalf("large frame into a buffer big enough: %d bytes, %v, reused %v", len(again), err, err == nil && &again[0] == &got[0])
	}
}
