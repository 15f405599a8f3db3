package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// lock is key's stripe of the key locks, held across a read-compare-write.
func (n *Node) lock(key string) *sync.Mutex {
	return &n.locks[placement.CRC16([]byte(key))%uint16(len(n.locks))]
}

func toIndexVersion(v coding.Version) index.Version {
	return index.Version{HLC: v.HLC, Writer: v.Writer}
}

// putShard stores a shard at a position this node owns. keep keeps the
// versions it replaces (keepOlder): set for writers' shards, whose write
// may fail, and their forwards. With fwd, set for writers' shards only (so
// nodes whose views of the target differ never bounce a shard), it returns
// the copy to send to the position's rebalance target owner (targetCopy)
// if the node holds the shard afterwards. The copy aliases raw.
func (n *Node) putShard(ctx context.Context, raw []byte, keep, fwd bool) (wire.BatchResult, *forward) {
	if len(raw) > wire.MaxShard {
		// Its get response would not fit: it could never be served.
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

// putShardLocked stores the parsed shard sh under its key's lock. holds
// reports that the node holds sh afterwards: stored, or held already.
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
		// A retry, which must still learn of the kept older versions
		// (Kept) to have them dropped; or another position of the
		// version (one owned in the map, another in the target).
		if slices.ContainsFunc(old.Newest(), func(o index.Held) bool { return o.Index == in.Index }) {
			return wire.BatchResult{Status: wire.StatusOK, Kept: keep && len(old.Older) > 0, HeldHLC: in.Version.HLC, HeldWriter: in.Version.Writer}, true
		}
		shards = old.Shards()
	default:
		var full bool
		if shards, drop, full = keepOlder(in, old, keep); full {
			return failed(wire.StatusUnavailable, "put %q: this node keeps %d older versions of the key beside its newest, none confirmed by an acknowledged write since; it takes no more until a write is acknowledged or repair drops them", h.Key, maxOlder), false
		}
	}
	e, _ := index.NewEntry(h.Key, placement.Slot(h.Key), append(shards, in))
	if err := n.commit(ctx, e, raw, in, drop); err != nil {
		return failed(wire.StatusInternal, "put %q: %v", h.Key, err), false
	}
	return wire.BatchResult{Status: wire.StatusOK, Kept: len(e.Older) > 0}, true
}

// maxOlder bounds the older versions a node keeps of a key (index.MaxOlder
// their shards), which pile up only under failing writes until dropOlder or
// repair drops them. At the bound a writer's put is refused: dropping the
// oldest could drop the one acknowledged value under the failed ones.
const maxOlder = 16

// keepOlder returns the shards a key keeps once in, a newer version,
// replaces old, and the shards that go. With keep old's shards stay,
// tombstones too: a delete may fail like a put, and the value under it
// must stay readable; and a node's list must show every version it took
// (keptWithout), or a tombstone whose older versions are not dropped yet
// could vanish under failed puts and the value it hid come back. full
// reports that keeping would pass maxOlder: refuse the put.
func keepOlder(in index.Held, old index.Entry, keep bool) (shards, drop []index.Held, full bool) {
	shards = []index.Held{in}
	versions := 0 // kept, shards being in version order
	for _, h := range old.Shards() {
		switch {
		case !keep:
			drop = append(drop, h)
			continue
		case h.Version != shards[len(shards)-1].Version:
			versions++
		}
		shards = append(shards, h)
	}
	return shards, drop, versions > maxOlder || len(shards)-1 > index.MaxOlder
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

// dropOlder drops key's shards older than sr's acknowledged version, which
// no reader needs. The node's newest version stays, whatever it is.
func (n *Node) dropOlder(ctx context.Context, sr wire.ShardRef) (wire.Status, string) {
	acked := index.Version{HLC: sr.HLC, Writer: sr.Writer}
	return n.dropShards(ctx, "drop older versions of", sr.Key, func(e index.Entry, h index.Held) bool {
		return h.Version.Less(acked) && h.Version.Less(e.Version)
	})
}

// dropShards drops, under key's lock and in one commit, the shards of key
// that gone picks; the entry goes with its last shard. It answers NotFound
// when the node holds nothing of key, and OK "kept" when gone picks none.
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
	indexTx := func(tx *bolt.Tx, _ [16]byte) ([][16]byte, error) { return n.idx.ReplaceTx(tx, rest) }
	if !ok {
		indexTx = func(tx *bolt.Tx, _ [16]byte) ([][16]byte, error) { return n.idx.DeleteTx(tx, e.Key) }
	}
	if err := n.shards.commit(ctx, e.Key, nil, index.Held{}, drop, indexTx); err != nil {
		return wire.StatusInternal, fmt.Sprintf("%s %q: shard store: %v", op, e.Key, err)
	}
	return wire.StatusOK, ""
}

// commit stores shard raw (in, e's newest) with entry e and drops the
// shards in drop, as one durable change of the shard store.
func (n *Node) commit(ctx context.Context, e index.Entry, raw []byte, in index.Held, drop []index.Held) error {
	indexTx := func(tx *bolt.Tx, at [16]byte) ([][16]byte, error) {
		hs := e.Shards()
		for i, h := range hs {
			if h.Version == in.Version && h.Index == in.Index {
				hs[i].Loc = at
			}
		}
		located, _ := index.NewEntry(e.Key, e.Slot, hs)
		return n.idx.ReplaceTx(tx, located)
	}
	if err := n.shards.commit(ctx, e.Key, raw, in, drop, indexTx); err != nil {
		return fmt.Errorf("shard store: %w", err)
	}
	return nil
}

// purge drops key's entry if its newest version is still the tombstone
// of version (le.HLC, le.Writer): a newer write is kept.
func (n *Node) purge(ctx context.Context, le wire.ListEntry) (wire.Status, string) {
	v := index.Version{HLC: le.HLC, Writer: le.Writer}
	return n.dropShards(ctx, "purge", le.Key, func(e index.Entry, _ index.Held) bool { return e.Tombstone && e.Version == v })
}
