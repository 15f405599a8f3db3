package node

import (
	"context"
	"errors"
	"fmt"
	"slices"

	ds "github.com/ipfs/go-datastore"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// maxScratch keeps the buffers of huge shards from staying with a stream.
const maxScratch = 4 << 20

// getShard answers a read of key's shard at pos: of the newest version
// there, or of version at when it is not zero (an older one kept).
func (n *Node) getShard(ctx context.Context, key string, pos uint8, headerOnly bool, at index.Version, scratch *[]byte) *wire.Response {
	resp := n.readShard(ctx, key, pos, headerOnly, at, scratch)
	if resp.Status != wire.StatusCorrupt {
		return resp
	}
	// Without the lock a write may have replaced the shard between the
	// index read and the shard read: look again under it.
	mu := n.lock(key)
	mu.Lock()
	defer mu.Unlock()
	if resp = n.readShard(ctx, key, pos, headerOnly, at, scratch); resp.Status == wire.StatusCorrupt {
		log.Warnw("corrupt shard", "key", key, "err", resp.Message)
	}
	return resp
}

// readShard reads key's index entry, then the shard of the version asked
// for, and checks that they agree.
func (n *Node) readShard(ctx context.Context, key string, pos uint8, headerOnly bool, at index.Version, scratch *[]byte) *wire.Response {
	e, err := n.idx.Get(key)
	var hs []index.Held
	switch {
	case err == nil:
		hs = e.At(pos)
	case !errors.Is(err, index.ErrNotFound):
		return failure(wire.StatusInternal, "get %q: index: %v", key, err)
	}
	if len(hs) == 0 {
		return &wire.Response{Status: wire.StatusNotFound}
	}
	if headerOnly {
		return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendHeaderPayload(nil, headerEntry(key, hs))}
	}
	h := hs[0]
	if !at.IsZero() {
		i := slices.IndexFunc(hs, func(h index.Held) bool { return h.Version == at })
		if i < 0 {
			return &wire.Response{Status: wire.StatusNotFound}
		}
		h = hs[i]
	}
	if h.Tombstone {
		return &wire.Response{Status: wire.StatusOK, Payload: tombstoneShard(key, h)}
	}
	var buf []byte
	if scratch != nil {
		buf = *scratch
	}
	raw, grown, err := n.shards.get(ctx, key, h, buf)
	if scratch != nil && cap(grown) <= maxScratch {
		*scratch = grown[:0]
	}
	if errors.Is(err, ds.ErrNotFound) {
		return failure(wire.StatusCorrupt, "get %q: shard file missing", key)
	}
	if err != nil {
		return failure(wire.StatusInternal, "get %q: shard store: %v", key, err)
	}
	parse := coding.ParseShard
	if n.shards.checked() {
		parse = coding.ParseShardUnverified // the bytes passed the store's checksum
	}
	sh, err := parse(raw)
	if err == nil && sh.Header.Key != key {
		err = fmt.Errorf("shard holds key %q", sh.Header.Key)
	}
	if err == nil && (toIndexVersion(sh.Header.Version) != h.Version || sh.Header.Index != h.Index) {
		err = fmt.Errorf("shard %d of version %s does not match the index", sh.Header.Index, sh.Header.Version)
	}
	if err != nil {
		return failure(wire.StatusCorrupt, "get %q: %v", key, err)
	}
	return &wire.Response{Status: wire.StatusOK, Payload: raw}
}

// headerEntry is a header-only get's answer for key's shards hs at one
// position, newest first: the newest, and the older ones the node keeps.
func headerEntry(key string, hs []index.Held) wire.HeaderEntry {
	all := make([]wire.HeaderEntry, len(hs))
	for i, o := range hs {
		all[i] = wire.HeaderEntry{
			ListEntry: wire.ListEntry{Key: key, HLC: o.Version.HLC, Writer: o.Version.Writer, Tombstone: o.Tombstone, ValueLen: o.ValueLen},
			Index:     o.Index, Kind: o.Kind, K: o.K, M: o.M,
		}
	}
	all[0].Older = all[1:]
	return all[0]
}

// policyOf is the policy an index entry or a wire message gives as bytes.
func policyOf(kind, k, m uint8) coding.Policy {
	return coding.Policy{Kind: coding.Kind(kind), DataShards: int(k), ParityShards: int(m)}
}

// tombstoneShard rebuilds the shard of key's tombstone h from the index.
func tombstoneShard(key string, h index.Held) []byte {
	shards := coding.Tombstone(key, policyOf(h.Kind, h.K, h.M), coding.Version{HLC: h.Version.HLC, Writer: h.Version.Writer})
	if int(h.Index) >= len(shards) {
		return nil
	}
	return shards[h.Index].AppendBinary(nil)
}

func (n *Node) list(req *wire.Request) *wire.Response {
	limit := int(req.Limit)
	if limit <= 0 || limit > listLimit {
		limit = listLimit
	}
	es, err := n.idx.ListPrefix(req.Prefix, req.After, limit+1)
	if err != nil {
		return failure(wire.StatusInternal, "list: %v", err)
	}
	more := len(es) > limit
	es = es[:min(len(es), limit)]
	out := make([]wire.ListEntry, len(es))
	for i, e := range es {
		out[i] = wire.ListEntry{Key: e.Key, HLC: e.Version.HLC, Writer: e.Version.Writer, Tombstone: e.Tombstone, ValueLen: e.ValueLen}
	}
	return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendListPayload(nil, out, more)}
}
