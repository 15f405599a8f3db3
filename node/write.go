package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	ds "github.com/ipfs/go-datastore"
	bolt "go.etcd.io/bbolt"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

func (n *Node) lock(key string) *sync.Mutex {
	return &n.locks[placement.CRC16([]byte(key))%uint16(len(n.locks))]
}

func toIndexVersion(v coding.Version) index.Version {
	return index.Version{HLC: v.HLC, Writer: v.Writer}
}

// putShard stores a shard. keep says whether to keep the shards of the
// versions it replaces (keepOlder): for writers' shards, whose write may
// fail, and their forwards, not for repair's copies, which carry readable
// versions. With fwd, for a writer's shard that this node holds once
// the put is done, at a position a rebalance moves to another node, it
// returns the copy to send there (sendForwards) before the request is
// answered; members' copies are not forwarded again (repair plans the new
// owners' own), so two nodes whose views of the target differ never copy a
// shard back and forth.
func (n *Node) putShard(ctx context.Context, raw []byte, keep, fwd bool) (wire.BatchResult, *forward) {
	if len(raw) > wire.MaxShard {
		// Stored, it could never be served: its get response would not fit.
		return failed(wire.StatusTooLarge, "put: shard of %d bytes exceeds the limit of %d", len(raw), wire.MaxShard), nil
	}
	sh, err := coding.ParseShard(raw)
	if err != nil {
		return failed(wire.StatusCorrupt, "put: %v", err), nil
	}
	h := &sh.Header
	c := n.cluster.Load()
	slot := placement.Slot(h.Key)
	if !c.Owns(n.selfID, slot, int(h.Index)) {
		return failed(wire.StatusBadRequest, "put %q: shard %d of slot %d does not belong to this node at epoch %d", h.Key, h.Index, slot, c.Map.Epoch), nil
	}
	r, holds := n.putShardLocked(ctx, raw, sh, keep)
	if holds && fwd {
		return r, n.targetCopy(c, slot, int(h.Index), raw)
	}
	return r, nil
}

// failed is the answer of a put that stored nothing.
func failed(st wire.Status, format string, args ...any) wire.BatchResult {
	return wire.BatchResult{Status: st, Message: fmt.Sprintf(format, args...)}
}

// putShardLocked is putShard's store of the parsed shard sh, under its
// key's lock. holds reports that the node holds sh's version at sh's
// position once it is done: it stored sh, or held it already (a retry).
func (n *Node) putShardLocked(ctx context.Context, raw []byte, sh *coding.Shard, keep bool) (r wire.BatchResult, holds bool) {
	h := &sh.Header
	mu := n.lock(h.Key)
	mu.Lock()
	defer mu.Unlock()
	old, err := n.idx.Get(h.Key)
	if errors.Is(err, index.ErrCorrupt) {
		n.purgeCorrupt()
		old, err = n.idx.Get(h.Key)
	}
	in := heldOf(sh)
	shards := []index.Held{in}
	var drop []index.Held // shards that go with this change
	switch {
	case errors.Is(err, index.ErrNotFound):
	case err != nil:
		return failed(wire.StatusInternal, "put %q: index: %v", h.Key, err), false
	case in.Version.Less(old.Version):
		return wire.BatchResult{Status: wire.StatusOK, HeldHLC: old.Version.HLC, HeldWriter: old.Version.Writer}, false
	case in.Version == old.Version:
		// The version again: a retry (a lost answer), which must still
		// learn that the node kept older versions, to have them dropped
		// once the write is acknowledged; or another position of it,
		// which the node holds beside the others (during a rebalance it
		// may own one position of the slot in the map and another in the
		// target).
		if slices.ContainsFunc(old.Newest(), func(o index.Held) bool { return o.Index == in.Index }) {
			return wire.BatchResult{Status: wire.StatusOK, Kept: keep && len(old.Older) > 0, HeldHLC: in.Version.HLC, HeldWriter: in.Version.Writer}, true
		}
		shards = old.Shards()
	default:
		var full bool
		if shards, drop, full = keepOlder(in, old, keep && !h.Tombstone); full {
			return failed(wire.StatusUnavailable, "put %q: this node keeps %d older versions of the key beside its newest, none confirmed by an acknowledged write since; it takes no more until a write is acknowledged or repair drops them", h.Key, maxOlder), false
		}
	}
	e, _ := index.NewEntry(h.Key, placement.Slot(h.Key), append(shards, in))
	if err := n.commit(ctx, e, raw, in, drop); err != nil {
		return failed(wire.StatusInternal, "put %q: %v", h.Key, err), false
	}
	return wire.BatchResult{Status: wire.StatusOK, Kept: len(e.Older) > 0}, true
}

// maxOlder bounds the older shards a node keeps of a key beside its
// newest version's. A writer has them dropped once its version is
// acknowledged (dropOlder), and repair once the key is whole, so more pile
// up only under writes that fail one after another. At the bound the node
// refuses a writer's put of the key (keepOlder): dropping the oldest could
// drop the one acknowledged value under the failed ones.
const maxOlder = 16

// keepOlder returns the shards a key keeps once in, a newer version,
// replaces old's as its newest, and the shards that go. With keep (a
// writer's put, which may fail) old's shards are kept, but for tombstones:
// a failed write over a delete leaves nothing to restore, and a delete
// keeps nothing (it cannot fail into an older value: a retried delete
// expects the key gone). full reports that keeping them would pass
// maxOlder: the put must be refused.
func keepOlder(in index.Held, old index.Entry, keep bool) (shards, drop []index.Held, full bool) {
	shards = []index.Held{in}
	for _, h := range old.Shards() {
		if keep && !h.Tombstone {
			shards = append(shards, h)
		} else {
			drop = append(drop, h)
		}
	}
	return shards, drop, len(shards)-1 > maxOlder
}

// heldOf is what the index keeps of shard sh.
func heldOf(sh *coding.Shard) index.Held {
	h := &sh.Header
	return index.Held{
		Index:     h.Index,
		Kind:      uint8(h.Policy.Kind),
		K:         uint8(h.Policy.DataShards),
		M:         uint8(h.Policy.ParityShards),
		Tombstone: h.Tombstone,
		ValueLen:  h.ValueLen,
		ShardLen:  uint32(len(sh.Data)),
		ShardSum:  h.ShardSum,
		Version:   toIndexVersion(h.Version),
	}
}

// dropOlder drops the shards of key's versions older than sr's once sr's
// version was acknowledged: no reader needs a version older than an
// acknowledged one. The node's newest version stays, whatever it is.
func (n *Node) dropOlder(ctx context.Context, sr wire.ShardRef) (wire.Status, string) {
	acked := index.Version{HLC: sr.HLC, Writer: sr.Writer}
	return n.dropShards(ctx, "drop older versions of", sr.Key, func(e index.Entry, h index.Held) bool {
		return h.Version.Less(acked) && h.Version.Less(e.Version)
	})
}

// dropShards drops the shards of key that gone picks, given the key's
// entry: index and shard store change as one commit, and the entry goes
// with its last shard. It answers not found when the node holds nothing
// of key, and "kept" when gone picks none.
func (n *Node) dropShards(ctx context.Context, op, key string, gone func(index.Entry, index.Held) bool) (wire.Status, string) {
	mu := n.lock(key)
	mu.Lock()
	defer mu.Unlock()
	e, err := n.idx.Get(key)
	switch {
	case errors.Is(err, index.ErrNotFound):
		return wire.StatusNotFound, ""
	case err != nil:
		return wire.StatusInternal, fmt.Sprintf("%s %q: index: %v", op, key, err)
	}
	return n.dropLocked(ctx, op, e, func(h index.Held) bool { return gone(e, h) })
}

// dropLocked is dropShards under the key's lock, with its entry e.
func (n *Node) dropLocked(ctx context.Context, op string, e index.Entry, gone func(index.Held) bool) (wire.Status, string) {
	var keep, drop []index.Held
	for _, h := range e.Shards() {
		if gone(h) {
			drop = append(drop, h)
		} else {
			keep = append(keep, h)
		}
	}
	if len(drop) == 0 {
		return wire.StatusOK, "kept"
	}
	rest, ok := index.NewEntry(e.Key, e.Slot, keep)
	indexTx := func(tx *bolt.Tx) error { return n.idx.ReplaceTx(tx, rest) }
	if !ok {
		indexTx = func(tx *bolt.Tx) error { return n.idx.DeleteTx(tx, e.Key) }
	}
	if err := n.shards.commit(ctx, ds.Key{}, nil, shardNames(e.Key, drop), indexTx); err != nil {
		return wire.StatusInternal, fmt.Sprintf("%s %q: shard store: %v", op, e.Key, err)
	}
	return wire.StatusOK, ""
}

// commit makes shard raw (of in, the newest shard of entry e) and e
// durable, and drops the shards in drop, as one change of the shard store.
// A tombstone is stored too: a node's index is what its stored shards say
// (reindex).
func (n *Node) commit(ctx context.Context, e index.Entry, raw []byte, in index.Held, drop []index.Held) error {
	indexTx := func(tx *bolt.Tx) error { return n.idx.ReplaceTx(tx, e) }
	if err := n.shards.commit(ctx, shardName(e.Key, in.Version, in.Index), raw, shardNames(e.Key, drop), indexTx); err != nil {
		return fmt.Errorf("shard store: %w", err)
	}
	return nil
}

// shardNames are the names of key's shards hs.
func shardNames(key string, hs []index.Held) []ds.Key {
	names := make([]ds.Key, len(hs))
	for i, h := range hs {
		names[i] = shardName(key, h.Version, h.Index)
	}
	return names
}

// purge drops key's index entry if its newest version is still the
// tombstone of version (le.HLC, le.Writer): a newer write that arrived
// meanwhile is kept.
func (n *Node) purge(ctx context.Context, le wire.ListEntry) (wire.Status, string) {
	v := index.Version{HLC: le.HLC, Writer: le.Writer}
	return n.dropShards(ctx, "purge", le.Key, func(e index.Entry, _ index.Held) bool { return e.Tombstone && e.Version == v })
}
