package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

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
		return &wire.Response{Status: wire.StatusInternal, Message: fmt.Sprintf("%s: %v", req.Op, err)}
	}
	more := len(es) > limit
	if more {
		es = es[:limit]
	}
	out := make([]wire.InventoryEntry, len(es))
	for i, e := range es {
		out[i] = wire.InventoryEntry{
			Key: e.Key, Pos: e.Index, Kind: e.Kind, K: e.K, M: e.M,
			HLC: e.Version.HLC, Writer: e.Version.Writer, Tombstone: e.Tombstone,
			ValueLen: e.ValueLen, ShardLen: e.ShardLen, Older: uint8(min(len(e.Older), 255)),
		}
	}
	return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendInventoryPayload(nil, out, more)}
}

// healing runs read, and runs it again after purging the index entries
// that do not decode when it failed on one (another purge may have got
// there first).
func (n *Node) healing(read func() error) error {
	err := read()
	if errors.Is(err, index.ErrCorrupt) {
		n.purgeCorrupt()
		err = read()
	}
	return err
}

// purgeCorrupt drops the index entries that do not decode (bit rot in the
// index file): while one is there the node cannot list, sum or scrub its
// index, nor store that key. Once they are gone the keys read as not held
// here, and repair rebuilds them from the other shards; the rebuilt shard
// replaces the old one in the store. It takes no key lock (a put calls it
// holding one), and needs none: the index deletes only entries that still
// do not decode.
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
		return &wire.Response{Status: wire.StatusInternal, Message: fmt.Sprintf("sums: %v", err)}
	}
	out := make([]wire.SlotSum, 0, len(groups))
	for k, g := range groups {
		out = append(out, wire.SlotSum{Slot: k.Slot, Kind: k.Kind, K: k.K, M: k.M, Pos: k.Pos, Count: g.Count, XOR: g.XOR, Older: g.Older})
	}
	return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendSumsPayload(nil, out)}
}

// drop removes this node's shard of sr.Key if it is still shard sr.Pos at
// version sr.Version and the node owns that position in neither the map
// nor the rebalance target (the repair worker drops a copy only once its
// owner holds it), or the shard is stale: an older version at a position
// the key's newest policy no longer uses.
func (n *Node) drop(ctx context.Context, sr wire.ShardRef) (wire.Status, string) {
	c := n.cluster.Load()
	if !sr.Stale && c.Owns(n.selfID, placement.Slot(sr.Key), int(sr.Pos)) {
		return wire.StatusBadRequest, fmt.Sprintf("drop %q: this node owns shard %d of its slot at epoch %d", sr.Key, sr.Pos, c.Map.Epoch)
	}
	keep := func(e index.Entry) string {
		if e.Index != sr.Pos || e.Version != (index.Version{HLC: sr.HLC, Writer: sr.Writer}) {
			return "not that shard"
		}
		return ""
	}
	if sr.Restore {
		return n.restore(ctx, sr.Key, keep)
	}
	return n.removeIf(ctx, "drop", sr.Key, keep)
}

// restore removes key's shard of a failed write, as removeIf does, and
// makes the newest of the older versions the node keeps (the value the
// write replaced here) the key's newest. The repair leader asks for it
// only for a version that provably never reached its write quorum, which
// readers already skip for the older versions' value (see the front end's
// olderVersion).
func (n *Node) restore(ctx context.Context, key string, keep func(index.Entry) string) (wire.Status, string) {
	return n.unlessKept("restore", key, keep, func(e index.Entry) (wire.Status, string) {
		if len(e.Older) == 0 {
			return n.removeLocked(ctx, e) // nothing to put back
		}
		// The older shard is where it was: only the index changes.
		back := index.Entry{Key: key, Slot: e.Slot, Held: e.Older[0], Older: e.Older[1:]}
		if err := n.change(ctx, key, []index.Version{e.Version}, func(tx *bolt.Tx) error { return n.idx.ReplaceTx(tx, back) }); err != nil {
			return wire.StatusInternal, fmt.Sprintf("restore %q: %v", key, err)
		}
		return wire.StatusOK, "restored"
	})
}

// supersede answers a writer's OpSupersede: version sr (HLC, Writer) of the
// key is acknowledged with a policy of sr.Pos positions, and this node's
// shard sits past them, at an older version. Readers that cannot reach
// the newer version's positions would find the older value whole among
// such shards (a 4+2 value overwritten by 3 replicas), so the node drops
// it, and its previous shard, now rather than at repair's next pass.
func (n *Node) supersede(ctx context.Context, sr wire.ShardRef) (wire.Status, string) {
	if sr.Pos == 0 {
		// A width of no positions would have every older shard of the key
		// dropped, at every position, with no tombstone in its place.
		return wire.StatusBadRequest, fmt.Sprintf("supersede %q: a version of no positions", sr.Key)
	}
	ver := index.Version{HLC: sr.HLC, Writer: sr.Writer}
	keep := func(e index.Entry) string {
		switch {
		case !e.Version.Less(ver):
			return "not older"
		case e.Index < sr.Pos:
			return "a position the version covers"
		}
		return ""
	}
	return n.unlessKept("supersede", sr.Key, keep, func(e index.Entry) (wire.Status, string) { return n.removeLocked(ctx, e) })
}

// removeIf removes key's entry and shard unless keep, called under the
// key's lock with the current entry, gives a reason to keep them (then the
// answer is OK with "kept: reason"). A missing key answers not found.
func (n *Node) removeIf(ctx context.Context, op, key string, keep func(index.Entry) string) (wire.Status, string) {
	return n.unlessKept(op, key, keep, func(e index.Entry) (wire.Status, string) { return n.removeLocked(ctx, e) })
}

// unlessKept runs act with key's entry under the key's lock, unless keep
// gives a reason to keep it (then the answer is OK with "kept: reason").
// A missing key answers not found.
func (n *Node) unlessKept(op, key string, keep func(index.Entry) string, act func(index.Entry) (wire.Status, string)) (wire.Status, string) {
	mu := n.lock(key)
	mu.Lock()
	defer mu.Unlock()
	e, err := n.idx.Get(key)
	if errors.Is(err, index.ErrNotFound) {
		return wire.StatusNotFound, ""
	}
	if err != nil {
		return wire.StatusInternal, fmt.Sprintf("%s %q: index: %v", op, key, err)
	}
	if reason := keep(e); reason != "" {
		return wire.StatusOK, "kept: " + reason
	}
	return act(e)
}

// removeLocked deletes e's index entry and the shards of every version it
// holds; the caller holds the key's lock.
func (n *Node) removeLocked(ctx context.Context, e index.Entry) (wire.Status, string) {
	var drop []index.Version
	for _, h := range e.Versions() {
		drop = append(drop, h.Version)
	}
	if err := n.change(ctx, e.Key, drop, func(tx *bolt.Tx) error { return n.idx.DeleteTx(tx, e.Key) }); err != nil {
		return wire.StatusInternal, fmt.Sprintf("remove %q: %v", e.Key, err)
	}
	return wire.StatusOK, ""
}

const (
	// forwardTimeout bounds the wait for the new owners' answers to one
	// request's forwards (sendForwards), well under a writer's request
	// timeout.
	forwardTimeout = 5 * time.Second
	// forwardBackoff is how long a new owner that failed a forward is left
	// to the repair worker.
	forwardBackoff = 10 * time.Second
	// forwardBatchBytes bounds the shards of one forwarding request.
	forwardBatchBytes = 8 << 20
)
