package node

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/volume"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// ScrubStats describes the scrubber's last complete pass.
type ScrubStats struct {
	Finished time.Time `json:"finished"`
	Scanned  int       `json:"scanned"`
	Corrupt  int       `json:"corrupt"` // shards found bad and removed for repair
	Total    int       `json:"corrupt_total"`
	// Reclaimed counts shards no index entry named (a crash or a failed
	// delete on a flatfs or MongoDB store) that the pass deleted.
	Reclaimed int `json:"reclaimed"`
}

type scrubber struct {
	mu   sync.Mutex
	last ScrubStats
}

// Scrub reads and verifies every shard this node holds, of every version,
// and removes one that is missing, does not verify, or does not match its
// index entry (scrubRemove), for repair to rebuild. On a store other than
// the volume store it then deletes the shards no entry names (reclaim).
func (n *Node) Scrub(ctx context.Context) (ScrubStats, error) {
	var st ScrubStats
	after := ""
	named := map[uint64]struct{}{} // hashes of the shard names entries hold
	for {
		var es []index.Entry
		err := n.healing(func() (err error) {
			es, err = n.idx.ListPrefix("", after, listLimit)
			return err
		})
		if err != nil {
			return st, fmt.Errorf("scrub: %w", err)
		}
		for _, e := range es {
			if err := ctx.Err(); err != nil {
				return st, err
			}
			for _, h := range e.Shards() {
				st.Scanned++
				named[nameHash(shardName(e.Key, h.Version, h.Index))] = struct{}{}
				if h.Tombstone || n.checkShard(ctx, e.Key, h) {
					continue
				}
				if n.scrubRemove(ctx, e.Key, h) {
					st.Corrupt++
				}
			}
		}
		if len(es) < listLimit {
			break
		}
		after = es[len(es)-1].Key
	}
	if d, ok := n.shards.(datastoreShards); ok {
		var err error
		if st.Reclaimed, err = n.reclaim(ctx, d.d, named); err != nil {
			return st, fmt.Errorf("scrub: reclaim shards no entry names: %w", err)
		}
	}
	st.Finished = time.Now()
	n.scrub.mu.Lock()
	st.Total = n.scrub.last.Total + st.Corrupt
	n.scrub.last = st
	n.scrub.mu.Unlock()
	if st.Corrupt > 0 {
		log.Warnw("scrub removed bad shards for repair", "corrupt", st.Corrupt, "scanned", st.Scanned)
	}
	if st.Reclaimed > 0 {
		log.Infow("scrub deleted shards no index entry named", "reclaimed", st.Reclaimed)
	}
	return st, nil
}

func nameHash(name ds.Key) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name.String()))
	return h.Sum64()
}

// reclaim deletes the shards in store that no index entry names (those
// datastoreShards leaves behind). named holds the hashes of the names the
// entries held when the pass read them; a shard outside it is read for its
// key and deleted only if, under the key's lock (which every write holds
// from storing its shard to committing its entry), the entry still does
// not name it. A shard that does not parse is left alone: its key cannot
// be known.
func (n *Node) reclaim(ctx context.Context, store ds.Datastore, named map[uint64]struct{}) (int, error) {
	res, err := store.Query(ctx, query.Query{KeysOnly: true})
	if err != nil {
		return 0, err
	}
	var stray []ds.Key
	for r := range res.Next() {
		if r.Error != nil {
			res.Close()
			return 0, r.Error
		}
		k := ds.RawKey(r.Key)
		if _, ok := named[nameHash(k)]; !ok {
			stray = append(stray, k)
		}
	}
	if err := res.Close(); err != nil {
		return 0, err
	}
	reclaimed := 0
	for _, name := range stray {
		if err := ctx.Err(); err != nil {
			return reclaimed, err
		}
		ok, err := n.reclaimShard(ctx, store, name)
		if err != nil {
			return reclaimed, err
		}
		if ok {
			reclaimed++
		}
	}
	return reclaimed, nil
}

// reclaimShard deletes the shard under name if no entry names it.
func (n *Node) reclaimShard(ctx context.Context, store ds.Datastore, name ds.Key) (bool, error) {
	raw, err := store.Get(ctx, name)
	if errors.Is(err, ds.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	sh, err := coding.ParseShardUnverified(raw)
	if err != nil {
		log.Warnw("scrub: a shard no entry names does not parse: left alone", "name", name.String(), "err", err)
		return false, nil
	}
	h := heldOf(sh)
	if shardName(sh.Header.Key, h.Version, h.Index) != name {
		log.Warnw("scrub: a shard no entry names is not of its name: left alone", "name", name.String())
		return false, nil
	}
	mu := n.lock(sh.Header.Key)
	mu.Lock()
	defer mu.Unlock()
	cur, err := n.idx.Get(sh.Header.Key)
	switch {
	case errors.Is(err, index.ErrNotFound):
	case err != nil:
		return false, err
	case slices.ContainsFunc(cur.Shards(), func(o index.Held) bool { return o.Index == h.Index && o.Version == h.Version }):
		return false, nil
	}
	if err := store.Delete(ctx, name); err != nil && !errors.Is(err, ds.ErrNotFound) {
		return false, err
	}
	return true, nil
}

// checkShard reports whether key's shard h reads back valid and matching.
func (n *Node) checkShard(ctx context.Context, key string, h index.Held) bool {
	raw, _, err := n.shards.get(ctx, key, h, nil)
	switch {
	case errors.Is(err, ds.ErrNotFound), errors.Is(err, volume.ErrCorrupt):
		return false
	case err != nil:
		// A read error (shutting down, I/O) proves nothing: keep the shard,
		// the next pass looks again.
		return true
	}
	sh, err := coding.ParseShard(raw)
	return err == nil && sh.Header.Key == key && sh.Header.Index == h.Index && toIndexVersion(sh.Header.Version) == h.Version
}

// scrubRemove removes key's shard h, under key's lock, if the node still
// holds it and it is still bad, with the older shards at its position:
// left alone they would tell readers the position never held h's version.
// They are only best-effort redundancy for a failed overwrite.
func (n *Node) scrubRemove(ctx context.Context, key string, h index.Held) bool {
	mu := n.lock(key)
	mu.Lock()
	defer mu.Unlock()
	cur, err := n.idx.Get(key)
	if err != nil || !slices.Contains(cur.Shards(), h) || n.checkShard(ctx, key, h) {
		return false
	}
	log.Warnw("scrub: bad shard removed, repair will rebuild it", "key", key, "pos", h.Index)
	st, msg := n.dropLocked(ctx, "scrub", cur, func(o index.Held) bool { return o.Index == h.Index && !h.Version.Less(o.Version) })
	if st != wire.StatusOK {
		log.Warnw("scrub: remove bad shard", "key", key, "err", msg)
		return false
	}
	return true
}
