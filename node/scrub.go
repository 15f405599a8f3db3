package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"

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
}

type scrubber struct {
	mu   sync.Mutex
	last ScrubStats
}

// scrubLoop scrubs every interval until the node closes.
func (n *Node) scrubLoop(every time.Duration) {
	n.every(every, func() {
		if _, err := n.Scrub(n.bgCtx); err != nil && n.bgCtx.Err() == nil {
			log.Warnw("scrub", "err", err)
		}
	})
}

// Scrub reads and verifies every shard this node holds, of every version,
// and removes one that is missing, does not verify, or does not match its
// index entry (scrubRemove), for repair to rebuild.
func (n *Node) Scrub(ctx context.Context) (ScrubStats, error) {
	var st ScrubStats
	after := ""
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

// checkShard reports whether key's shard h reads back valid and matching.
func (n *Node) checkShard(ctx context.Context, key string, h index.Held) bool {
	raw, _, err := n.shards.get(ctx, shardName(key, h.Version, h.Index), nil)
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
