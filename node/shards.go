package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// inventoryLimit caps the entries of one inventory response.
const inventoryLimit = 5000

// inventory lists the shards this node holds, for the repair planner: all
// of them by key (OpInventory), or those of one slot (OpSlotInventory).
func (n *Node) inventory(req *wire.Request) *wire.Response {
	limit := int(req.Limit)
	if limit <= 0 || limit > inventoryLimit {
		limit = inventoryLimit
	}
	var es []index.Entry
	err := n.healing(func() (err error) {
		if req.Op == wire.OpSlotInventory {
			es, err = n.idx.ListSlot(req.Slot, req.After, limit+1)
		} else {
			es, err = n.idx.ListPrefix("", req.After, limit+1)
		}
		return err
	})
	if err != nil {
		return failure(wire.StatusInternal, "%s: %v", req.Op, err)
	}
	more := len(es) > limit
	es = es[:min(len(es), limit)]
	out := make([]wire.InventoryEntry, 0, len(es))
	for _, e := range es {
		for _, h := range e.Newest() {
			out = append(out, wire.InventoryEntry{
				Key: e.Key, Pos: h.Index, Kind: h.Kind, K: h.K, M: h.M,
				HLC: h.Version.HLC, Writer: h.Version.Writer, Tombstone: h.Tombstone,
				ValueLen: h.ValueLen, ShardLen: h.ShardLen, Older: uint8(min(len(e.Older), 255)),
			})
		}
	}
	return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendInventoryPayload(nil, out, more)}
}

// healing runs read, and again after purgeCorrupt if it met an index
// entry that does not decode.
func (n *Node) healing(read func() error) error {
	err := read()
	if errors.Is(err, index.ErrCorrupt) {
		n.purgeCorrupt()
		err = read()
	}
	return err
}

// purgeCorrupt drops the index entries that do not decode (bit rot), which
// would stop the node listing, summing or scrubbing its index, or storing
// their keys; repair then rebuilds the keys. It takes no key lock (a put
// calls it holding one) and needs none: the index deletes only entries
// that still do not decode.
func (n *Node) purgeCorrupt() {
	keys, err := n.idx.PurgeCorrupt()
	if err != nil {
		log.Errorw("purge index entries that do not decode", "err", err)
		return
	}
	if len(keys) > 0 {
		log.Warnw("index entries did not decode: purged for repair to rebuild", "count", len(keys), "first", keys[0])
	}
}

// sums answers OpSums: the index's slot sums, for the repair worker to
// find the slots whose owners agree without listing them.
func (n *Node) sums() *wire.Response {
	var groups map[index.SumKey]index.Sum
	err := n.healing(func() (err error) {
		groups, err = n.idx.Sums()
		return err
	})
	if err != nil {
		return failure(wire.StatusInternal, "sums: %v", err)
	}
	out := make([]wire.SlotSum, 0, len(groups))
	for k, g := range groups {
		out = append(out, wire.SlotSum{Slot: k.Slot, Kind: k.Kind, K: k.K, M: k.M, Pos: k.Pos, Count: g.Count, XOR: g.XOR, Older: g.Older})
	}
	return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendSumsPayload(nil, out)}
}

// drop removes this node's shard of sr.Key at sr.Pos and sr's version, with
// the older shards it keeps there, if the node owns the position in
// neither the map nor the rebalance target, or sr.Stale (a position the
// key's newest policy no longer uses). A Restore drop removes that one
// shard: a version that provably never reached its write quorum, so what
// the node keeps below it becomes its newest.
func (n *Node) drop(ctx context.Context, sr wire.ShardRef) (wire.Status, string) {
	c := n.cluster.Load()
	if !sr.Stale && c.Owns(n.selfID, placement.Slot(sr.Key), int(sr.Pos)) {
		return wire.StatusBadRequest, fmt.Sprintf("drop %q: this node owns shard %d of its slot at epoch %d", sr.Key, sr.Pos, c.Map.Epoch)
	}
	v := index.Version{HLC: sr.HLC, Writer: sr.Writer}
	that := func(h index.Held) bool { return h.Index == sr.Pos && h.Version == v }
	return n.dropShards(ctx, "drop", sr.Key, func(e index.Entry, h index.Held) bool {
		return slices.ContainsFunc(e.Shards(), that) && (that(h) || h.Index == sr.Pos && !sr.Restore && h.Version.Less(v))
	})
}

// supersede answers a writer's OpSupersede: version sr of the key is
// acknowledged with sr.Pos positions, so older values' shards past them go
// now, not at repair's next pass: readers that cannot reach the new
// version would find the older value whole among them. Tombstones stay: a
// deleted key reads as absent there already, and they show that the
// position never held a later write that failed (keptWithout).
func (n *Node) supersede(ctx context.Context, sr wire.ShardRef) (wire.Status, string) {
	if sr.Pos == 0 {
		// Width 0 would drop every older shard of the key, with no tombstone.
		return wire.StatusBadRequest, fmt.Sprintf("supersede %q: a version of no positions", sr.Key)
	}
	v := index.Version{HLC: sr.HLC, Writer: sr.Writer}
	return n.dropShards(ctx, "supersede", sr.Key, func(_ index.Entry, h index.Held) bool {
		return h.Version.Less(v) && h.Index >= sr.Pos && !h.Tombstone
	})
}

const (
	// forwardTimeout bounds one request's forwards, well under a writer's
	// request timeout.
	forwardTimeout = 5 * time.Second
	// forwardBackoff is how long an owner that failed a forward is skipped.
	forwardBackoff = 10 * time.Second
	// forwardBatchBytes bounds the shards of one forwarding request.
	forwardBatchBytes = 8 << 20
)
