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

// A node keeps, beside its newest shard of a key, the older versions that
// a writer's overwrites replaced there, until the writer has them dropped
// once its version is acknowledged (wire.HeaderEntry.Older). An overwrite
// that fails after reaching more than m positions leaves fewer than k
// newest shards of either version; the older shards rebuild the older
// value, which is the newest acknowledged one, when every newer version
// provably never reached its write quorum (olderVersion).

// held is one version a position holds of a key.
type held struct {
	ver      coding.Version
	policy   coding.Policy
	tomb     bool
	valueLen uint64
}

// olderVersion chooses the newest version that the positions' newest and
// older shards (a's answers, already checked to be of their position)
// together make readable, when no version was readable from the newest
// alone, but for those tried already (read, and refused). It returns the
// positions that hold the chosen version. A newer version, tried or not,
// forbids the choice unless it provably never reached its quorum
// (neverAcknowledged), so an acknowledged newer version that lost shards
// gives UnavailableError, never the older value.
func olderVersion(v *view, slot uint16, a answers, tried map[coding.Version]bool) (c held, holders []int, ok bool) {
	seen := map[coding.Version]held{}
	for pos := 0; pos < a.n(); pos++ {
		if a.state(pos) != fetchOK {
			continue
		}
		for _, h := range a.held(pos) {
			seen[h.ver] = h
		}
	}
	cands := make([]held, 0, len(seen))
	for _, c := range seen {
		cands = append(cands, c)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[j].ver.Less(cands[i].ver) })
	for i, c := range cands {
		// Every version newer than c must be a failed write.
		for _, g := range cands[:i] {
			if g.tomb || !neverAcknowledged(v, slot, a, g.ver, g.policy) {
				return held{}, nil, false
			}
		}
		if c.tomb || c.policy.Width() > a.n() {
			return held{}, nil, false
		}
		if tried[c.ver] {
			continue
		}
		holders = holders[:0]
		for pos := 0; pos < c.policy.Width(); pos++ {
			if a.state(pos) != fetchOK {
				continue
			}
			for _, h := range a.held(pos) {
				if h.ver == c.ver && h.policy == c.policy {
					holders = append(holders, pos)
				}
			}
		}
		if len(holders) >= c.policy.DataShards {
			return c, holders, true
		}
	}
	return held{}, nil, false
}

// neverAcknowledged reports whether version g cannot have reached its
// write quorum: the positions of its policy that may have held it are
// fewer than the quorum. A position never held g when its newest version
// is older, or when one of the older versions it keeps is older and g is
// not among them: a node keeps, in order, the versions writes replaced
// (only an acknowledged newer version, or a write that keeps nothing,
// drops them). A position past the policy's width never holds it. A
// position that holds nothing may have lost g's shard, but no more of an
// acknowledged write's positions than its parity shards lose it within
// the guarantee: those past that many never held g. An owner that repair
// has not filled since it took its position over proves nothing. A small
// value's positions past its copies hold nothing, so a large write that
// failed over it is told from one that was acknowledged.
func neverAcknowledged(v *view, slot uint16, a answers, g coding.Version, p coding.Policy) bool {
	width := min(a.n(), p.Width())
	without, empty := 0, 0
	for pos := 0; pos < width; pos++ {
		if !v.c.Vouches(slot, pos) {
			continue // a new owner repair has not filled may lack g
		}
		if a.state(pos) == fetchNotFound {
			empty++
		}
		if a.state(pos) != fetchOK {
			continue
		}
		if keptWithout(a.held(pos), g) {
			without++
		}
	}
	without += max(0, empty-p.ParityShards)
	return width-without < v.c.Quorum(p)
}

// keptWithout reports whether the versions a position holds, newest
// first, show that it never held g: one of them is older than g, and g is
// not among the newer ones.
func keptWithout(hs []held, g coding.Version) bool {
	for _, h := range hs {
		switch {
		case h.ver == g:
			return false
		case h.ver.Less(g):
			return true
		}
	}
	return false
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

// valueFromOlder is Get's last resort after an UnavailableError: it asks
// every position which versions it holds and rebuilds the older value
// olderVersion allows, from the shards of that version; when that value
// does not decode or verify refuses it, the next one olderVersion allows.
func (d *Datastore) valueFromOlder(ctx context.Context, v *view, key string, owners []uint16, verify func([]byte) error) ([]byte, bool) {
	ans := headerAnswers(askAll(v.c.Policy.Width(), func(pos int) headerAnswer { return d.askHeaderOf(ctx, v, key, owners, pos) }))
	tried := map[coding.Version]bool{}
	for {
		c, holders, ok := olderVersion(v, placement.Slot(key), ans, tried)
		if !ok {
			return nil, false
		}
		val, err := d.readVersion(ctx, v, key, owners, c, holders)
		if err == nil {
			err = verify(val)
		}
		if err == nil {
			log.Debugw("served the value a failed overwrite replaced, from older shards", "key", key, "version", c.ver.String())
			return val, true
		}
		log.Warnw("an older version is not served", "key", key, "version", c.ver.String(), "err", err)
		tried[c.ver] = true
	}
}

// readVersion reads version c of key from the positions that hold it and
// decodes the value.
func (d *Datastore) readVersion(ctx context.Context, v *view, key string, owners []uint16, c held, holders []int) ([]byte, error) {
	got := askAll(len(holders), func(i int) fetched {
		return d.fetchShard(ctx, v, key, int(owners[holders[i]]), holders[i], c.ver)
	})
	defer putFrames(got)
	shards := make([]*coding.Shard, c.policy.Width())
	for i, pos := range holders {
		if f := got[i]; f.state == fetchOK && f.shard.Header.Version == c.ver {
			shards[pos] = f.shard
		}
	}
	return coding.Decode(shards)
}

// entryFromOlder is the probe's (Has, GetSize) last resort after an
// UnavailableError, as valueFromOlder is Get's: the header answers list
// the versions each position holds already.
func entryFromOlder(v *view, key string, ans headerAnswers) (wire.ListEntry, bool) {
	c, _, ok := olderVersion(v, placement.Slot(key), ans, nil)
	if !ok {
		return wire.ListEntry{}, false
	}
	return wire.ListEntry{Key: key, HLC: c.ver.HLC, Writer: c.ver.Writer, ValueLen: c.valueLen}, true
}

// unavailableWithShards reports an UnavailableError that saw shards of
// some version: the case older versions may resolve.
func unavailableWithShards(err error) bool {
	var ue *UnavailableError
	return errors.As(err, &ue) && ue.Found > 0
}
