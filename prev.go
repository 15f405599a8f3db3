package dscluster

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// A node keeps one current shard per key, and when a newer version
// replaces a value it keeps the value's shard as the key's previous one
// (wire.Request.Prev). An overwrite that fails after reaching more than m
// positions leaves fewer than k current shards of either version; the
// previous shards rebuild the older value, which is the newest
// acknowledged one, when the newer version provably never reached its
// write quorum (olderVersion).

// heldShard is what one position holds of a key, current or previous.
type heldShard struct {
	ok     bool
	ver    coding.Version
	policy coding.Policy
	tomb   bool
}

func heldOf(h *coding.Header, pos int) heldShard {
	if int(h.Index) != pos {
		return heldShard{} // a shard of another position (a rebalance): not usable here
	}
	return heldShard{ok: true, ver: h.Version, policy: h.Policy, tomb: h.Tombstone}
}

// olderVersion chooses the newest version that the current and previous
// shards of the positions (cur, prev) together make readable, when no
// version was readable from current shards alone. It reports for each
// position whether the chosen version's shard is its previous one (false:
// its current one, or none). A newer version forbids the choice unless it
// provably never reached its quorum: a node's current version only moves
// forward, so the positions whose current version is older than it never
// held it, and the others must be fewer than its quorum. An acknowledged
// newer version that lost shards therefore gives UnavailableError, never
// the older value.
func olderVersion(v *view, cur, prev []heldShard) (ver coding.Version, policy coding.Policy, fromPrev []bool, ok bool) {
	type cand struct {
		ver    coding.Version
		policy coding.Policy
		tomb   bool
	}
	seen := map[coding.Version]cand{}
	for _, list := range [][]heldShard{cur, prev} {
		for _, h := range list {
			if h.ok {
				seen[h.ver] = cand{h.ver, h.policy, h.tomb}
			}
		}
	}
	cands := make([]cand, 0, len(seen))
	for _, c := range seen {
		cands = append(cands, c)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[j].ver.Less(cands[i].ver) })
	for i, c := range cands {
		// Every version newer than c must be a failed write.
		for _, g := range cands[:i] {
			if g.tomb || !neverAcknowledged(v, cur, prev, g.ver, g.policy) {
				return coding.Version{}, coding.Policy{}, nil, false
			}
		}
		if c.tomb {
			return coding.Version{}, coding.Policy{}, nil, false
		}
		from := make([]bool, len(cur))
		n := 0
		for pos := range cur {
			switch {
			case cur[pos].ok && cur[pos].ver == c.ver && cur[pos].policy == c.policy:
				n++
			case pos < len(prev) && prev[pos].ok && prev[pos].ver == c.ver && prev[pos].policy == c.policy:
				from[pos] = true
				n++
			}
		}
		if n >= c.policy.DataShards && c.policy.Width() <= len(cur) {
			return c.ver, c.policy, from, true
		}
	}
	return coding.Version{}, coding.Policy{}, nil, false
}

// neverAcknowledged reports whether version g cannot have reached its
// write quorum: the positions that may have held it are fewer than the
// quorum. A position never held g when its current version is older, or
// when its current version is newer and the one that version replaced (its
// previous shard) is older: a node keeps the version each write replaced.
func neverAcknowledged(v *view, cur, prev []heldShard, g coding.Version, p coding.Policy) bool {
	without := 0
	for pos, h := range cur {
		switch {
		case !h.ok:
		case h.ver.Less(g):
			without++
		case g.Less(h.ver) && pos < len(prev) && prev[pos].ok && prev[pos].ver.Less(g):
			without++
		}
	}
	return len(cur)-without < v.c.Quorum(p)
}

// valueFromPrev is Get's last resort after an UnavailableError: it asks
// every position for its previous shard and rebuilds the older value when
// olderVersion allows it.
func (d *Datastore) valueFromPrev(ctx context.Context, v *view, key string, owners []uint16, res []fetched) ([]byte, bool) {
	prev := make([]fetched, len(res))
	defer putFrames(prev)
	var wg sync.WaitGroup
	for pos := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, frame, err := d.doInto(ctx, v, int(owners[pos]), &wire.Request{Op: wire.OpGet, Key: key, Prev: true}, getFrame())
			prev[pos] = d.fetchFrom(resp, err, key, pos)
			prev[pos].frame = frame
		}()
	}
	wg.Wait()
	held := func(fs []fetched) []heldShard {
		out := make([]heldShard, len(fs))
		for pos, f := range fs {
			if f.state == fetchOK {
				out[pos] = heldOf(&f.shard.Header, pos)
			}
		}
		return out
	}
	ver, policy, fromPrev, ok := olderVersion(v, held(res), held(prev))
	if !ok {
		return nil, false
	}
	shards := make([]*coding.Shard, policy.Width())
	for pos := range shards {
		f := res[pos]
		if fromPrev[pos] {
			f = prev[pos]
		}
		if f.state == fetchOK && f.shard.Header.Version == ver {
			shards[pos] = f.shard
		}
	}
	val, err := coding.Decode(shards)
	if err != nil {
		log.Warnw("previous shards do not rebuild the older value", "key", key, "version", ver.String(), "err", err)
		return nil, false
	}
	log.Debugw("served the value a failed overwrite replaced, from previous shards", "key", key, "version", ver.String())
	return val, true
}

// entryFromPrev is the probe's (Has, GetSize) last resort after an
// UnavailableError, as valueFromPrev is Get's.
func (d *Datastore) entryFromPrev(ctx context.Context, v *view, key string, owners []uint16, ans headerAnswers) (wire.ListEntry, bool) {
	prev := make(headerAnswers, len(ans))
	var wg sync.WaitGroup
	for pos := range ans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev[pos] = d.askHeaderOf(ctx, v, key, owners, pos, true)
		}()
	}
	wg.Wait()
	held := func(as headerAnswers) []heldShard {
		out := make([]heldShard, len(as))
		for pos := range as {
			if as.state(pos) == fetchOK {
				ver, p, tomb := as.version(pos)
				out[pos] = heldShard{ok: true, ver: ver, policy: p, tomb: tomb} // askHeader checked the position
			}
		}
		return out
	}
	ver, _, fromPrev, ok := olderVersion(v, held(ans), held(prev))
	if !ok {
		return wire.ListEntry{}, false
	}
	for pos := range ans {
		a := ans[pos]
		if fromPrev[pos] {
			a = prev[pos]
		}
		if a.state == fetchOK && a.h.HLC == ver.HLC && a.h.Writer == ver.Writer {
			return a.h.ListEntry, true
		}
	}
	return wire.ListEntry{}, false
}

// unavailableWithShards reports an UnavailableError that saw shards of
// some version: the case previous shards may resolve.
func unavailableWithShards(err error) bool {
	var ue *UnavailableError
	return errors.As(err, &ue) && ue.Found > 0
}
