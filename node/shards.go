package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// inventoryLimit caps the entries of one inventory response.
const inventoryLimit = 5000

// inventory lists the shards this node holds, for the repair planner.
func (n *Node) inventory(req *wire.Request) *wire.Response {
	limit := int(req.Limit)
	if limit <= 0 || limit > inventoryLimit {
		limit = inventoryLimit
	}
	es, err := n.idx.ListPrefix("", req.After, limit+1)
	if err != nil {
		return &wire.Response{Status: wire.StatusInternal, Message: fmt.Sprintf("inventory: %v", err)}
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
			ValueLen: e.ValueLen, ShardLen: e.ShardLen,
		}
	}
	return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendInventoryPayload(nil, out, more)}
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
	mu := n.lock(sr.Key)
	mu.Lock()
	defer mu.Unlock()
	e, err := n.idx.Get(sr.Key)
	if errors.Is(err, index.ErrNotFound) {
		return wire.StatusNotFound, ""
	}
	if err != nil {
		return wire.StatusInternal, fmt.Sprintf("drop %q: index: %v", sr.Key, err)
	}
	if e.Index != sr.Pos || e.Version != (index.Version{HLC: sr.HLC, Writer: sr.Writer}) {
		return wire.StatusOK, "kept: not that shard"
	}
	return n.removeLocked(ctx, e)
}

// removeLocked deletes e's index entry, then its shard; the caller holds
// the key's lock. The index goes first: a shard without an entry is
// invisible garbage, an entry without a shard would be reported corrupt.
func (n *Node) removeLocked(ctx context.Context, e index.Entry) (wire.Status, string) {
	if err := n.idx.Delete(e.Key); err != nil {
		return wire.StatusInternal, fmt.Sprintf("remove %q: index: %v", e.Key, err)
	}
	if !e.Tombstone {
		if err := n.store.Delete(ctx, shardName(e.Key)); err != nil && !errors.Is(err, ds.ErrNotFound) {
			log.Warnw("remove shard", "key", e.Key, "err", err)
		}
	}
	return wire.StatusOK, ""
}

// ScrubStats describes the scrubber's last complete pass.
type ScrubStats struct {
	Finished time.Time `json:"finished"`
	Scanned  int       `json:"scanned"`
	Corrupt  int       `json:"corrupt"` // shards found bad and removed for repair
	Total    int       `json:"corrupt_total"`
}

type scrubber struct {
	mu   sync.Mutex
	last ScrubStats
}

// scrubLoop scrubs every interval until the node closes.
func (n *Node) scrubLoop(every time.Duration) {
	defer n.bgWG.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-n.closed:
			return
		case <-t.C:
		}
		if _, err := n.Scrub(n.bgCtx); err != nil && n.bgCtx.Err() == nil {
			log.Warnw("scrub", "err", err)
		}
	}
}

// Scrub reads and verifies every shard this node holds. A shard that is
// missing, does not verify, or does not match its index entry is removed
// (entry and file), so the repair worker sees it missing and rebuilds it
// from the other shards: a bad shard is never served, and never kept.
func (n *Node) Scrub(ctx context.Context) (ScrubStats, error) {
	var st ScrubStats
	after := ""
	for {
		es, err := n.idx.ListPrefix("", after, listLimit)
		if err != nil {
			return st, fmt.Errorf("scrub: %w", err)
		}
		for _, e := range es {
			if err := ctx.Err(); err != nil {
				return st, err
			}
			st.Scanned++
			if e.Tombstone {
				continue
			}
			if n.checkShard(ctx, e) {
				continue
			}
			if n.scrubRemove(ctx, e) {
				st.Corrupt++
			}
		}
		if len(es) < listLimit {
			break
		}
		after = es[len(es)-1].Key
	}
	st.Finished = time.Now()
	n.scrub.mu.Lock()
	st.Total = n.scrub.last.Total + st.Corrupt
	n.scrub.last = st
	n.scrub.mu.Unlock()
	if st.Corrupt > 0 {
		log.Warnw("scrub removed bad shards for repair", "corrupt", st.Corrupt, "scanned", st.Scanned)
	}
	return st, nil
}

// checkShard reports whether e's shard reads back valid and matching.
func (n *Node) checkShard(ctx context.Context, e index.Entry) bool {
	raw, err := n.store.Get(ctx, shardName(e.Key))
	if err != nil {
		// Shutting down says nothing about the shard; any other error does.
		return errors.Is(err, context.Canceled)
	}
	sh, err := coding.ParseShard(raw)
	return err == nil && sh.Header.Key == e.Key && int(sh.Header.Index) == int(e.Index) &&
		sh.Header.Version == (coding.Version{HLC: e.Version.HLC, Writer: e.Version.Writer})
}

// scrubRemove removes e if the node still holds exactly e and its shard is
// still bad (a write may have replaced it since the check).
func (n *Node) scrubRemove(ctx context.Context, e index.Entry) bool {
	mu := n.lock(e.Key)
	mu.Lock()
	defer mu.Unlock()
	cur, err := n.idx.Get(e.Key)
	if err != nil || cur.Version != e.Version || cur.Index != e.Index {
		return false
	}
	if n.checkShard(ctx, cur) {
		return false
	}
	log.Warnw("scrub: bad shard removed, repair will rebuild it", "key", e.Key, "pos", e.Index)
	st, msg := n.removeLocked(ctx, cur)
	if st != wire.StatusOK {
		log.Warnw("scrub: remove bad shard", "key", e.Key, "err", msg)
		return false
	}
	return true
}
