package dscluster

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// A node keeps one current shard per key, and when a newer version
// replaces a value it keeps the value's shard as the key's previous one
// (wire.Request.Prev). An overwrite that fails after reaching more than m
// positions leaves fewer than k current shards of either version; the
// previous shards rebuild the older value, which is the newest
// acknowledged one, when the newer version provably never reached its
// write quorum (olderVersion).

// olderVersion chooses the newest version that the current and previous
// shards of the positions (cur, prev: answers already checked to be of
// their position) together make readable, when no version was readable
// from current shards alone. It reports for each position whether the
// chosen version's shard is its previous one (false: its current one, or
// none). A newer version forbids the choice unless it provably never
// reached its quorum: a node's current version only moves forward (but
// for a writer's undo, which puts back the shard a write replaced once the
// write failed its quorum on fewer than k positions, and repair's
// restoring drops, which undo only versions too scarce to read, and only
// when an older one is readable or the newer one provably never reached
// its quorum), so the positions whose current version is older than it
// never held it, or held it only for a write that failed, and the others
// must be fewer than its quorum. An acknowledged newer version that
// lost shards therefore gives UnavailableError, never the older value.
func olderVersion(v *view, slot uint16, cur, prev answers) (ver coding.Version, policy coding.Policy, fromPrev []bool, ok bool) {
	type cand struct {
		ver    coding.Version
		policy coding.Policy
		tomb   bool
	}
	seen := map[coding.Version]cand{}
	for _, a := range []answers{cur, prev} {
		for pos := 0; pos < a.n(); pos++ {
			if a.state(pos) == fetchOK {
				ver, p, tomb := a.version(pos)
				seen[ver] = cand{ver, p, tomb}
			}
		}
	}
	cands := make([]cand, 0, len(seen))
	for _, c := range seen {
		cands = append(cands, c)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[j].ver.Less(cands[i].ver) })
	holds := func(a answers, pos int, c cand) bool {
		if pos >= a.n() || a.state(pos) != fetchOK {
			return false
		}
		ver, p, _ := a.version(pos)
		return ver == c.ver && p == c.policy
	}
	for i, c := range cands {
		// Every version newer than c must be a failed write.
		for _, g := range cands[:i] {
			if g.tomb || !neverAcknowledged(v, slot, cur, prev, g.ver, g.policy) {
				return coding.Version{}, coding.Policy{}, nil, false
			}
		}
		if c.tomb {
			return coding.Version{}, coding.Policy{}, nil, false
		}
		from := make([]bool, cur.n())
		n := 0
		for pos := range from {
			switch {
			case holds(cur, pos, c):
				n++
			case holds(prev, pos, c):
				from[pos] = true
				n++
			}
		}
		if n >= c.policy.DataShards && c.policy.Width() <= cur.n() {
			return c.ver, c.policy, from, true
		}
	}
	return coding.Version{}, coding.Policy{}, nil, false
}

// neverAcknowledged reports whether version g cannot have reached its
// write quorum: the positions of its policy that may have held it are
// fewer than the quorum. A position never held g when its current version
// is older, or when its current version is newer and the one that version
// replaced (its previous shard) is older: a node keeps the version each
// write replaced. A position past the policy's width never holds it. A
// position that holds nothing may have lost g's shard, but no more of an
// acknowledged write's positions than its parity shards lose it within
// the guarantee: those past that many never held g. An owner that repair
// has not filled since it took its position over proves nothing. A small value's
// positions past its copies hold nothing, so a large write that failed
// over it is told from one that was acknowledged.
func neverAcknowledged(v *view, slot uint16, cur, prev answers, g coding.Version, p coding.Policy) bool {
	width := min(cur.n(), p.Width())
	without, empty := 0, 0
	for pos := 0; pos < width; pos++ {
		if !v.c.Vouches(slot, pos) {
			continue // a new owner repair has not filled may lack g
		}
		if cur.state(pos) == fetchNotFound {
			empty++
		}
		if cur.state(pos) != fetchOK {
			continue
		}
		ver, _, _ := cur.version(pos)
		switch {
		case ver.Less(g):
			without++
		case g.Less(ver) && pos < prev.n() && prev.state(pos) == fetchOK:
			if pv, _, _ := prev.version(pos); pv.Less(g) {
				without++
			}
		}
	}
	without += max(0, empty-p.ParityShards)
	return width-without < v.c.Quorum(p)
}

// askAll asks every one of n positions at once and returns the answers.
func askAll[T any](n int, ask func(pos int) T) []T {
	out := make([]T, n)
	var wg sync.WaitGroup
	for pos := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[pos] = ask(pos)
		}()
	}
	wg.Wait()
	return out
}

// valueFromPrev is Get's last resort after an UnavailableError: it asks
// every position for its previous shard and rebuilds the older value when
// olderVersion allows it.
func (d *Datastore) valueFromPrev(ctx context.Context, v *view, key string, owners []uint16, res []fetched) ([]byte, bool) {
	prev := askAll(len(res), func(pos int) fetched { return d.fetchShard(ctx, v, key, int(owners[pos]), pos, true) })
	defer putFrames(prev)
	ver, policy, fromPrev, ok := olderVersion(v, placement.Slot(key), fetchedAnswers(res), fetchedAnswers(prev))
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
	prev := headerAnswers(askAll(len(ans), func(pos int) headerAnswer { return d.askHeaderOf(ctx, v, key, owners, pos, true) }))
	ver, _, fromPrev, ok := olderVersion(v, placement.Slot(key), ans, prev)
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
