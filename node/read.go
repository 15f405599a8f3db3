package node

import (
	"context"
	"errors"
	"fmt"

	ds "github.com/ipfs/go-datastore"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// errBadPrev marks a previous shard that does not parse or holds another
// key or version than its entry names.
var errBadPrev = errors.New("bad previous shard")

// readPrev reads and parses key's previous shard (the newest of
// index.Entry.Older): ds.ErrNotFound when the node keeps none, an error wrapping errBadPrev
// when it is not that shard, any other error from the index or the store.
func (n *Node) readPrev(ctx context.Context, key string) ([]byte, *coding.Shard, error) {
	e, err := n.idx.Get(key)
	switch {
	case errors.Is(err, index.ErrNotFound) || (err == nil && len(e.Older) == 0):
		return nil, nil, ds.ErrNotFound
	case err != nil:
		return nil, nil, err
	}
	prev := e.Older[0].Version
	raw, _, err := n.shards.get(ctx, shardName(key, prev), nil)
	if err != nil {
		return nil, nil, err
	}
	sh, err := coding.ParseShard(raw)
	switch {
	case err != nil:
	case sh.Header.Key != key:
		err = fmt.Errorf("shard holds key %q", sh.Header.Key)
	case toIndexVersion(sh.Header.Version) != prev:
		err = fmt.Errorf("shard of version %s, the index names %d.%d", sh.Header.Version, prev.HLC, prev.Writer)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errBadPrev, err)
	}
	return raw, sh, nil
}

// getPrev answers a read of key's previous shard (keepPrev).
func (n *Node) getPrev(ctx context.Context, key string, headerOnly bool) *wire.Response {
	raw, sh, err := n.readPrev(ctx, key)
	switch {
	case errors.Is(err, ds.ErrNotFound):
		return &wire.Response{Status: wire.StatusNotFound}
	case errors.Is(err, errBadPrev):
		return &wire.Response{Status: wire.StatusCorrupt, Message: fmt.Sprintf("get previous %q: %v", key, err)}
	case err != nil:
		return &wire.Response{Status: wire.StatusInternal, Message: fmt.Sprintf("get previous %q: shard store: %v", key, err)}
	}
	if !headerOnly {
		return &wire.Response{Status: wire.StatusOK, Payload: raw}
	}
	h := &sh.Header
	he := wire.HeaderEntry{
		ListEntry: wire.ListEntry{Key: key, HLC: h.Version.HLC, Writer: h.Version.Writer, ValueLen: h.ValueLen},
		Index:     h.Index, Kind: uint8(h.Policy.Kind), K: uint8(h.Policy.DataShards), M: uint8(h.Policy.ParityShards),
	}
	return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendHeaderPayload(nil, he)}
}

// maxScratch keeps the buffers of huge shards from staying with a stream.
const maxScratch = 4 << 20

func (n *Node) getShard(ctx context.Context, key string, headerOnly bool, scratch *[]byte) *wire.Response {
	resp := n.readShard(ctx, key, headerOnly, scratch)
	if resp.Status != wire.StatusCorrupt {
		return resp
	}
	// Reads take no lock, so an overwrite or delete of key may have run
	// between reading its index entry and its shard. Look again under the
	// key's lock, which writes hold, before calling the shard corrupt.
	mu := n.lock(key)
	mu.Lock()
	defer mu.Unlock()
	if resp = n.readShard(ctx, key, headerOnly, scratch); resp.Status == wire.StatusCorrupt {
		log.Warnw("corrupt shard", "key", key, "err", resp.Message)
	}
	return resp
}

// readShard reads key's index entry, then its shard, and checks that they
// agree.
func (n *Node) readShard(ctx context.Context, key string, headerOnly bool, scratch *[]byte) *wire.Response {
	e, err := n.idx.Get(key)
	if errors.Is(err, index.ErrNotFound) {
		return &wire.Response{Status: wire.StatusNotFound}
	}
	if err != nil {
		return &wire.Response{Status: wire.StatusInternal, Message: fmt.Sprintf("get %q: index: %v", key, err)}
	}
	if headerOnly {
		h := wire.HeaderEntry{ListEntry: listEntry(e), Index: e.Index, Kind: e.Kind, K: e.K, M: e.M}
		return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendHeaderPayload(nil, h)}
	}
	if e.Tombstone {
		return &wire.Response{Status: wire.StatusOK, Payload: tombstoneShard(e)}
	}
	var buf []byte
	if scratch != nil {
		buf = *scratch
	}
	raw, grown, err := n.shards.get(ctx, shardName(key, e.Version), buf)
	if scratch != nil && cap(grown) <= maxScratch {
		*scratch = grown[:0]
	}
	if errors.Is(err, ds.ErrNotFound) {
		return &wire.Response{Status: wire.StatusCorrupt, Message: fmt.Sprintf("get %q: shard file missing", key)}
	}
	if err != nil {
		return &wire.Response{Status: wire.StatusInternal, Message: fmt.Sprintf("get %q: shard store: %v", key, err)}
	}
	sh, err := coding.ParseShard(raw)
	if err == nil && sh.Header.Key != key {
		err = fmt.Errorf("shard holds key %q", sh.Header.Key)
	}
	if err == nil && sh.Header.Version != (coding.Version{HLC: e.Version.HLC, Writer: e.Version.Writer}) {
		err = fmt.Errorf("shard version %s does not match the index", sh.Header.Version)
	}
	if err != nil {
		return &wire.Response{Status: wire.StatusCorrupt, Message: fmt.Sprintf("get %q: %v", key, err)}
	}
	return &wire.Response{Status: wire.StatusOK, Payload: raw}
}

// policyOf is the policy an index entry or a wire message gives as bytes.
func policyOf(kind, k, m uint8) coding.Policy {
	return coding.Policy{Kind: coding.Kind(kind), DataShards: int(k), ParityShards: int(m)}
}

// tombstoneShard rebuilds the shard of a tombstone from its index entry.
func tombstoneShard(e index.Entry) []byte {
	p := policyOf(e.Kind, e.K, e.M)
	v := coding.Version{HLC: e.Version.HLC, Writer: e.Version.Writer}
	shards := coding.Tombstone(e.Key, p, v)
	if int(e.Index) >= len(shards) {
		return nil
	}
	return shards[e.Index].AppendBinary(nil)
}

func listEntry(e index.Entry) wire.ListEntry {
	return wire.ListEntry{Key: e.Key, HLC: e.Version.HLC, Writer: e.Version.Writer, Tombstone: e.Tombstone, ValueLen: e.ValueLen}
}

func (n *Node) list(req *wire.Request) *wire.Response {
	limit := int(req.Limit)
	if limit <= 0 || limit > listLimit {
		limit = listLimit
	}
	es, err := n.idx.ListPrefix(req.Prefix, req.After, limit+1)
	if err != nil {
		return &wire.Response{Status: wire.StatusInternal, Message: fmt.Sprintf("list: %v", err)}
	}
	more := len(es) > limit
	if more {
		es = es[:limit]
	}
	out := make([]wire.ListEntry, len(es))
	for i, e := range es {
		out[i] = listEntry(e)
	}
	return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendListPayload(nil, out, more)}
}
