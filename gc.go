package dscluster

import (
	"context"
	"fmt"
	"time"

	ds "github.com/ipfs/go-datastore"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

var _ ds.GCDatastore = (*Datastore)(nil)

// DefaultTombstoneGrace is how old a tombstone must be before
// CollectGarbage purges it: a write delayed in the network for longer than
// this could otherwise bring back a deleted value on one node.
const DefaultTombstoneGrace = 10 * time.Minute

// graceCutoff is the clock value below which a tombstone is past the
// tombstone grace, and the garbage collector may purge it.
func (d *Datastore) graceCutoff() uint64 {
	return coding.HLCAt(time.Now().Add(-d.opts.TombstoneGrace))
}

// CollectGarbage purges the tombstones older than the tombstone grace that
// every shard owner of their key holds and no node lists anything else for.
// A tombstone stays while it may hide an older copy, so nothing is purged
// while a node of the map does not answer, a rebalance is under way, or a
// member outside the map may hold shards (an out member may come back
// with its disk); the next run retries. A front end with a namespace
// purges the tombstones of its namespace only.
func (d *Datastore) CollectGarbage(ctx context.Context) error {
	if err := d.refreshAny(ctx); err != nil {
		return fmt.Errorf("collect garbage: %w", err)
	}
	v := d.view.Load()
	if hold := membership.GCHold(v.c); hold != "" {
		log.Infow("collect garbage: tombstones are kept", "because", hold)
		return nil
	}
	m, err := d.openMerger(ctx, v, d.nsPrefix())
	if err != nil {
		return fmt.Errorf("collect garbage: %w", err)
	}
	if len(m.curs) < len(v.peers) {
		log.Infow("collect garbage: a node did not answer; tombstones are kept until every node lists its keys",
			"answered", len(m.curs), "nodes", len(v.peers))
		return nil
	}
	cutoff := d.graceCutoff()
	width := v.c.Policy.Width()
	perNode := make(map[int][]wire.ListEntry)
	purge := func() error {
		for n, es := range perNode {
			resp, err := d.do(ctx, v, n, &wire.Request{Op: wire.OpPurge, Purge: es})
			if err == nil && resp.Status != wire.StatusOK {
				err = statusError(resp)
			}
			if err != nil {
				return fmt.Errorf("collect garbage: %s: %w", v.nodeName(n), err)
			}
			delete(perNode, n)
		}
		return nil
	}
	queued := 0
	for {
		es, from, ok, err := m.nextKey(ctx)
		if err != nil {
			return fmt.Errorf("collect garbage: %w", err)
		}
		if !ok {
			break
		}
		top := newest(es)
		if !top.Tombstone || top.HLC > cutoff {
			continue
		}
		owners := v.c.Map.Owners(placement.Slot(top.Key))[:width]
		if !purgeable(top, es, from, owners) {
			continue
		}
		for _, n := range owners {
			perNode[int(n)] = append(perNode[int(n)], top)
		}
		if queued++; queued%wire.MaxBatch == 0 {
			if err := purge(); err != nil {
				return err
			}
		}
	}
	return purge()
}

// purgeable reports whether tombstone top, the newest of a key's entries
// es (listed by the map nodes from), can go: every owner of the key's
// positions lists exactly it, and no node lists anything else.
func purgeable(top wire.ListEntry, es []wire.ListEntry, from []int, owners []uint16) bool {
	held := map[int]bool{}
	for i, e := range es {
		if !e.Tombstone || e.HLC != top.HLC || e.Writer != top.Writer {
			return false // an older shard (a leftover, or one the delete missed)
		}
		held[from[i]] = true
	}
	for _, n := range owners {
		if !held[int(n)] {
			return false
		}
	}
	return true
}

// GCHold says why CollectGarbage would purge nothing now, from the
// cluster description this front end holds, or "". A node that does not
// answer the listing also holds it back, which only a run finds out.
func (d *Datastore) GCHold() string { return membership.GCHold(d.view.Load().c) }
