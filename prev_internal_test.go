package dscluster

import (
	"testing"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/config"
)

// held is what one position holds of a key in these tests.
type held struct {
	ok     bool
	ver    coding.Version
	policy coding.Policy
	tomb   bool
}

// heldAnswers are positions' answers as olderVersion reads them.
type heldAnswers []held

func (h heldAnswers) n() int { return len(h) }
func (h heldAnswers) state(pos int) fetchState {
	if h[pos].ok {
		return fetchOK
	}
	return fetchNone
}
func (h heldAnswers) failure(pos int) error { return nil }
func (h heldAnswers) version(pos int) (coding.Version, coding.Policy, bool) {
	return h[pos].ver, h[pos].policy, h[pos].tomb
}

// olderVersion, position by position for a 4+2 key (quorum 5): which
// version the current and previous shards allow a reader to rebuild.
func TestOlderVersion(t *testing.T) {
	p := coding.Erasure(4, 2)
	v := &view{c: &config.Cluster{Policy: p}}
	ver := func(n uint64) coding.Version { return coding.Version{HLC: n << 16, Writer: 1} }
	at := func(ns ...uint64) heldAnswers { // 0: nothing
		out := make(heldAnswers, len(ns))
		for i, n := range ns {
			if n != 0 {
				out[i] = held{ok: true, ver: ver(n), policy: p}
			}
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		cur, prev heldAnswers
		want      uint64 // 0: none
	}{
		{"v2 failed on 3 positions", at(2, 2, 2, 1, 1, 1), at(1, 1, 1, 0, 0, 0), 1},
		{"v2 acknowledged on 5, 2 lost", at(2, 0, 0, 2, 2, 1), at(1, 0, 0, 1, 1, 0), 0},
		{"v2 failed on 3, v3 failed on the other 3", at(2, 2, 2, 3, 3, 3), at(1, 1, 1, 1, 1, 1), 1},
		{"v3 failed over v2 on 3 positions", at(2, 2, 2, 3, 3, 3), at(1, 1, 1, 2, 2, 2), 2},
		{"v2 failed on 2 positions, v3 on 3 others", at(2, 2, 3, 3, 3, 1), at(1, 1, 1, 1, 1, 0), 1},
		{"v2 readable from current and previous shards", at(3, 3, 3, 2, 2, 1), at(2, 2, 1, 1, 1, 0), 2},
		{"v1 has too few shards left", at(2, 2, 2, 1, 1, 0), at(1, 0, 0, 0, 0, 0), 0},
		{"unknown positions may hold v2", at(2, 2, 2, 1, 0, 0), at(1, 1, 1, 0, 0, 0), 0},
	} {
		got, _, from, ok := olderVersion(v, 0, tc.cur, tc.prev)
		switch {
		case tc.want == 0 && ok:
			t.Errorf("%s: chose %s, want none", tc.name, got)
		case tc.want != 0 && (!ok || got != ver(tc.want)):
			t.Errorf("%s: chose %s (%v), want v%d", tc.name, got, ok, tc.want)
		case ok && len(from) != len(tc.cur):
			t.Errorf("%s: %d sources for %d positions", tc.name, len(from), len(tc.cur))
		}
	}
	// A tombstone newer than the value forbids it.
	cur, prev := at(2, 2, 2, 1, 1, 1), at(1, 1, 1, 0, 0, 0)
	for i := range 3 {
		cur[i].tomb = true
	}
	if got, _, _, ok := olderVersion(v, 0, cur, prev); ok {
		t.Errorf("a tombstone newer than v1: chose %s", got)
	}
}
