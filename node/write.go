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
// versions it replaces (keepOlder): for writers, whose write may fail, not for the
// members' repair copies and forwards, which carry readable versions. For a
// writer's shard that this node holds once the put is done, at a position
// a rebalance moves to another node, it returns the copy to send there
// (sendForwards) before the request is answered; members' copies are the
// repair worker's, which plans the new owners' own, so two nodes whose
// views of the target differ never copy a shard back and forth.
func (n *Node) putShard(ctx context.Context, raw []byte, keep bool) (wire.BatchResult, *forward) {
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
	if holds && keep {
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
	e := entryOf(sh)
	var drop []index.Version // shards that go with this change
	switch {
	case err == nil:
		if r, held := heldAnswer(old, h); held {
			same := r.Status == wire.StatusOK && old.Version == e.Version
			// The writer's put again (a retry after a lost answer) must
			// still learn that the node kept older versions, to have them
			// dropped once the write is acknowledged.
			r.Kept = keep && same && len(old.Older) > 0
			return r, same
		}
		var full bool
		if e.Older, drop, full = keepOlder(old, keep && !h.Tombstone); full {
			return failed(wire.StatusUnavailable, "put %q: this node keeps %d older versions of the key beside its newest, none confirmed by an acknowledged write since; it takes no more until a write is acknowledged or repair drops them", h.Key, maxOlder), false
		}
	case errors.Is(err, index.ErrNotFound):
	default:
		return failed(wire.StatusInternal, "put %q: index: %v", h.Key, err), false
	}
	if err := n.storeShard(ctx, raw, e, drop); err != nil {
		return failed(wire.StatusInternal, "put %q: %v", h.Key, err), false
	}
	return wire.BatchResult{Status: wire.StatusOK, Kept: len(e.Older) > 0}, true
}

// maxOlder bounds the older versions a node keeps of a key beside its
// newest. A writer has them dropped once its version is acknowledged
// (dropOlder), and repair once the key is whole, so more pile up only
// under writes that fail one after another. At the bound the node refuses
// a writer's put of the key (keepOlder): dropping the oldest could drop
// the one acknowledged value under the failed ones.
const maxOlder = 16

// keepOlder returns the older versions a key keeps once a newer version
// replaces old as its newest, and the versions whose shards go. With keep
// (a writer's put, which may fail) old's versions are kept, newest first,
// but for tombstones: a failed write over a delete leaves nothing to
// restore, and a delete keeps nothing (it cannot fail into an older value:
// a retried delete expects the key gone). full reports that keeping them
// would pass maxOlder: the put must be refused.
func keepOlder(old index.Entry, keep bool) (older []index.Held, drop []index.Version, full bool) {
	for _, h := range old.Versions() {
		if keep && !h.Tombstone {
			older = append(older, h)
		} else {
			drop = append(drop, h.Version)
		}
	}
	return older, drop, len(older) > maxOlder
}

// entryOf is the index entry of shard sh.
func entryOf(sh *coding.Shard) index.Entry {
	h := &sh.Header
	return index.Entry{Key: h.Key, Slot: placement.Slot(h.Key), Held: heldOf(sh)}
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
	mu := n.lock(sr.Key)
	mu.Lock()
	defer mu.Unlock()
	e, err := n.idx.Get(sr.Key)
	switch {
	case errors.Is(err, index.ErrNotFound):
		return wire.StatusOK, ""
	case err != nil:
		return wire.StatusInternal, fmt.Sprintf("drop older versions of %q: index: %v", sr.Key, err)
	}
	acked := index.Version{HLC: sr.HLC, Writer: sr.Writer}
	var drop []index.Version
	e.Older = slices.DeleteFunc(e.Older, func(h index.Held) bool {
		if h.Version.Less(acked) {
			drop = append(drop, h.Version)
			return true
		}
		return false
	})
	if len(drop) == 0 {
		return wire.StatusOK, ""
	}
	if err := n.change(ctx, e.Key, drop, func(tx *bolt.Tx) error { return n.idx.ReplaceTx(tx, e) }); err != nil {
		return wire.StatusInternal, fmt.Sprintf("drop older versions of %q: %v", sr.Key, err)
	}
	return wire.StatusOK, ""
}

// heldAnswer is the answer to a put of shard h when the node already holds
// old for the key, and held is true, or held is false when h is newer and
// must be stored. An equal version is stored already, which a retried put
// is told with OK, but only at the same position: a node keeps one shard
// per key, and during a rebalance it may own one position of the slot in
// the map and another in the target. Holding shard q of a version does not
// store shard p of it, so that put is refused (the writer must not count it
// toward its quorum).
func heldAnswer(old index.Entry, h *coding.Header) (r wire.BatchResult, held bool) {
	in := toIndexVersion(h.Version)
	switch {
	case old.Version.Less(in):
		return r, false
	case old.Version == in && old.Index != h.Index:
		return failed(wire.StatusBadRequest, "put %q: this node holds shard %d of version %s, not shard %d (it keeps one shard per key)",
			h.Key, old.Index, h.Version, h.Index), true
	default:
		return wire.BatchResult{Status: wire.StatusOK, HeldHLC: old.Version.HLC, HeldWriter: old.Version.Writer}, true
	}
}

// errNewerHeld refuses to store a shard whose index entry would not be
// stored because the index holds a newer or equal version.
var errNewerHeld = errors.New("the index holds a newer version")

// storeShard makes shard raw and its index entry e durable, and drops the
// shards of the versions in drop, as one change (see change). A tombstone
// is stored too: a node's index is what its stored shards say (reindex).
func (n *Node) storeShard(ctx context.Context, raw []byte, e index.Entry, drop []index.Version) error {
	indexTx := func(tx *bolt.Tx) error {
		stored, err := n.idx.PutTx(tx, e)
		if err == nil && !stored {
			// The key's lock makes this impossible today; should it
			// happen, the older shard must not replace the newer one.
			err = errNewerHeld
		}
		return err
	}
	return n.commit(ctx, e.Key, shardName(e.Key, e.Version), raw, drop, indexTx)
}

// change is commit with no shard to store: index entries change and the
// shards of the versions in drop go.
func (n *Node) change(ctx context.Context, key string, drop []index.Version, indexTx func(*bolt.Tx) error) error {
	return n.commit(ctx, key, ds.Key{}, nil, drop, indexTx)
}

// commit is the shard store's commit of raw under name, with the shards
// of key's versions in drop (zero versions are skipped).
func (n *Node) commit(ctx context.Context, key string, name ds.Key, raw []byte, drop []index.Version, indexTx func(*bolt.Tx) error) error {
	var names []ds.Key
	for _, v := range drop {
		if !v.IsZero() {
			names = append(names, shardName(key, v))
		}
	}
	if err := n.shards.commit(ctx, name, raw, names, indexTx); err != nil {
		return fmt.Errorf("shard store: %w", err)
	}
	return nil
}

// purge drops key's index entry if it is still the tombstone of version
// (le.HLC, le.Writer): a newer write that arrived meanwhile is kept.
func (n *Node) purge(ctx context.Context, le wire.ListEntry) (wire.Status, string) {
	return n.removeIf(ctx, "purge", le.Key, func(e index.Entry) string {
		if !e.Tombstone || e.Version != (index.Version{HLC: le.HLC, Writer: le.Writer}) {
			return "not that tombstone"
		}
		return ""
	})
}
