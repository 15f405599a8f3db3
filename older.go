package dscluster

import (
	"context"
	"errors"
	"sort"
	"sync"

	ds "github.com/ipfs/go-datastore"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// held is one version a position holds of a key.
type held struct {
	ver      coding.Version
	policy   coding.Policy
	tomb     bool
	valueLen uint64
}

// group is c as the version group of its holders, as a read's answers
// give it.
func (c held) group(holders []int) *versionGroup {
	return &versionGroup{ver: c.ver, policy: c.policy, tomb: c.tomb, pos: holders}
}

// olderVersion chooses the newest version not yet tried that the
// positions' newest and older shards (a's answers, checked to be of their
// position) together make readable, and returns the positions holding
// it; a tombstone is readable from one. A newer version, tried or not,
// forbids the choice unless it provably never reached its quorum, so an
// acknowledged version that lost shards gives UnavailableError, never the
// older value.
func olderVersion(v *view, slot uint16, a answers, tried map[coding.Version]bool) (c held, holders []int, ok bool) {
	seen := map[coding.Version]held{}
	for pos := range a.n() {
		if a.state(pos) == fetchOK {
			for _, h := range a.held(pos) {
				seen[h.ver] = h
			}
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
		if c.policy.Width() > a.n() {
			return held{}, nil, false
		}
		if tried[c.ver] {
			continue
		}
		holders = holders[:0]
		for pos := range c.policy.Width() {
			if a.state(pos) == fetchOK {
				for _, h := range a.held(pos) {
					if h.ver == c.ver && h.policy == c.policy {
						holders = append(holders, pos)
					}
				}
			}
		}
		if len(holders) >= need(c.policy, c.tomb) {
			return c, holders, true
		}
	}
	return held{}, nil, false
}

// neverAcknowledged reports whether version g of policy p cannot have
// reached its write quorum: fewer positions of p than the quorum may have
// held it. A position never held g when the versions it holds say so
// (keptWithout). Of the positions that hold nothing, all but p's parity
// count never held g: an acknowledged write loses no more shards within
// the guarantee.
func neverAcknowledged(v *view, slot uint16, a answers, g coding.Version, p coding.Policy) bool {
	width := min(a.n(), p.Width())
	without, empty := 0, 0
	for pos := range width {
		switch {
		case !v.c.Vouches(slot, pos):
			// A new owner repair has not filled may lack g.
		case a.state(pos) == fetchNotFound:
			empty++
		case a.state(pos) == fetchOK && keptWithout(a.held(pos), g):
			without++
		}
	}
	without += max(0, empty-p.ParityShards)
	return width-without < v.c.Quorum(p)
}

// keptWithout reports whether the versions a position holds, newest
// first, show that it never held g: one of them is older than g, and g is
// not among the newer ones. A node keeps, in order, the versions writes
// replaced; only an acknowledged newer version, or a write that keeps
// nothing, drops them.
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

func askAll[T any](n int, ask func(pos int) T) []T {
	out := make([]T, n)
	var wg sync.WaitGroup
	for pos := range out {
		wg.Add(1)
		goAsk(func() {
			defer wg.Done()
			out[pos] = ask(pos)
		})
	}
	wg.Wait()
	return out
}

// valueFromOlder is Get's way past a newest version it cannot serve: it
// asks every position which versions it holds and rebuilds the older value
// olderVersion allows, or, when that fails or verify refuses it, the next.
// err is ds.ErrNotFound when that version is a tombstone.
func (d *Datastore) valueFromOlder(ctx context.Context, v *view, key string, owners []uint16, verify func([]byte) error) (val []byte, err error, ok bool) {
	ans := headerAnswers(askAll(v.c.Policy.Width(), func(pos int) headerAnswer { return d.askHeaderOf(ctx, v, key, owners, pos) }))
	tried := map[coding.Version]bool{}
	for {
		c, holders, ok := olderVersion(v, placement.Slot(key), ans, tried)
		if !ok {
			return nil, nil, false
		}
		if c.tomb {
			d.writeBack(ctx, v, key, c.group(holders), nil)
			return nil, ds.ErrNotFound, true
		}
		val, err := d.readVersion(ctx, v, key, owners, c, holders)
		if err == nil {
			err = verify(val)
		}
		if err == nil {
			log.Debugw("served the value a failed overwrite replaced, from older shards", "key", key, "version", c.ver.String())
			return val, nil, true
		}
		log.Warnw("an older version is not served", "key", key, "version", c.ver.String(), "err", err)
		tried[c.ver] = true
	}
}

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

// entryFromOlder is the probe's way past a newest version, as
// valueFromOlder is Get's. A tombstone it serves is written back when
// writeBack is set.
func (d *Datastore) entryFromOlder(ctx context.Context, v *view, key string, ans headerAnswers, writeBack bool) (le wire.ListEntry, found, ok bool) {
	c, holders, ok := olderVersion(v, placement.Slot(key), ans, nil)
	switch {
	case !ok:
		return wire.ListEntry{}, false, false
	case c.tomb:
		if writeBack {
			d.writeBack(ctx, v, key, c.group(holders), nil)
		}
		return wire.ListEntry{}, false, true
	}
	return wire.ListEntry{Key: key, HLC: c.ver.HLC, Writer: c.ver.Writer, ValueLen: c.valueLen}, true, true
}

// olderMayResolve reports an UnavailableError of a read that some
// position answered with a version: older versions may resolve it.
func olderMayResolve(err error, a answers) bool {
	var ue *UnavailableError
	return errors.As(err, &ue) && anyHeld(a)
}

// anyHeld reports whether a position answered with a version.
func anyHeld(a answers) bool {
	for pos := range a.n() {
		if a.state(pos) == fetchOK {
			return true
		}
	}
	return false
}
