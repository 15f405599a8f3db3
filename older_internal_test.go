package dscluster

import (
	"testing"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/config"
)

// posHeld is what one position holds of a key in these tests: nothing
// (no versions), or its versions, newest first.
type posHeld []held

// heldAnswers are positions' answers as olderVersion reads them.
type heldAnswers []posHeld

func (h heldAnswers) n() int { return len(h) }
func (h heldAnswers) state(pos int) fetchState {
	if len(h[pos]) > 0 {
		return fetchOK
	}
	return fetchNone
}
func (h heldAnswers) failure(pos int) error { return nil }
func (h heldAnswers) version(pos int) (coding.Version, coding.Policy, bool) {
	return h[pos][0].ver, h[pos][0].policy, h[pos][0].tomb
}
func (h heldAnswers) held(pos int) []held { return h[pos] }

// olderVersion, position by position for a 4+2 key (quorum 5): which
// version the newest and older shards allow a reader to rebuild.
func TestOlderVersion(t *testing.T) {
	p := coding.Erasure(4, 2)
	v := &view{c: &config.Cluster{Policy: p}}
	ver := func(n uint64) coding.Version { return coding.Version{HLC: n << 16, Writer: 1} }
	// at gives each position's versions, newest first, as digits: "21" is
	// v2 over v1, "" nothing.
	at := func(ps ...string) heldAnswers {
		out := make(heldAnswers, len(ps))
		for i, s := range ps {
			for _, c := range s {
				out[i] = append(out[i], held{ver: ver(uint64(c - '0')), policy: p})
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		a    heldAnswers
		want uint64 // 0: none
	}{
		{"v2 failed on 3 positions", at("21", "21", "21", "1", "1", "1"), 1},
		{"v2 acknowledged on 5, 2 lost", at("21", "", "", "21", "21", "1"), 0},
		{"v2 failed on 3, v3 failed on the other 3", at("21", "21", "21", "31", "31", "31"), 1},
		{"v3 failed over v2 on 3 positions", at("21", "21", "21", "32", "32", "32"), 2},
		{"v2 failed on 2 positions, v3 on 3 others", at("21", "21", "31", "31", "31", "1"), 1},
		{"v2 readable from newest and older shards", at("32", "32", "31", "21", "21", "1"), 2},
		{"v1 has too few shards left", at("21", "2", "2", "1", "1", ""), 0},
		{"unknown positions may hold v2", at("21", "21", "21", "1", "", ""), 0},
		// Two overwrites in a row failed on the same three positions: the
		// nodes keep both beside v1.
		{"v3 and v2 failed on the same 3 positions", at("321", "321", "321", "1", "1", "1"), 1},
		{"v3 failed over v2, which is readable", at("32", "32", "32", "2", "2", "2"), 2},
		// A node that kept nothing older (a repair copy) proves nothing.
		{"positions without older versions prove nothing", at("3", "3", "3", "1", "1", "1"), 0},
	} {
		got, holders, ok := olderVersion(v, 0, tc.a, nil)
		switch {
		case tc.want == 0 && ok:
			t.Errorf("%s: chose %s, want none", tc.name, got.ver)
		case tc.want != 0 && (!ok || got.ver != ver(tc.want)):
			t.Errorf("%s: chose %s (%v), want v%d", tc.name, got.ver, ok, tc.want)
		case ok && len(holders) < p.DataShards:
			t.Errorf("%s: %d positions hold it, fewer than %d", tc.name, len(holders), p.DataShards)
		}
	}
	// A version tried already (it decoded to bytes that were refused) is
	// passed over when it provably never reached its quorum, and forbids
	// the older ones when it may have.
	tried := map[coding.Version]bool{ver(2): true}
	if got, _, ok := olderVersion(v, 0, at("21", "21", "21", "21", "1", "1"), tried); !ok || got.ver != ver(1) {
		t.Errorf("v2 on 4 positions, refused: chose %s (%v), want v1", got.ver, ok)
	}
	if got, _, ok := olderVersion(v, 0, at("21", "21", "21", "21", "21", "1"), tried); ok {
		t.Errorf("v2 on 5 positions (its quorum), refused: chose %s, want none", got.ver)
	}
	// A node keeps nothing under a tombstone, nor a tombstone under a
	// newer version (node.keepOlder). A tombstone newer than the value
	// forbids it, and is itself the answer: one shard of it makes the key
	// absent.
	tomb := held{ver: ver(2), policy: p, tomb: true}
	a := heldAnswers{{tomb}, {tomb}, {tomb}, at("1")[0], at("1")[0], at("1")[0]}
	if got, _, ok := olderVersion(v, 0, a, nil); !ok || got.ver != ver(2) || !got.tomb {
		t.Errorf("a tombstone newer than v1: chose %s (%v), want the tombstone v2", got.ver, ok)
	}
	// A failed write over a tombstone on 3 positions: the tombstone.
	a = heldAnswers{at("3")[0], at("3")[0], at("3")[0], {tomb}, {tomb}, {tomb}}
	if got, _, ok := olderVersion(v, 0, a, nil); !ok || got.ver != ver(2) || !got.tomb {
		t.Errorf("v3 failed over the tombstone v2: chose %s (%v), want the tombstone", got.ver, ok)
	}
	// Seed 360: a small value v2 acknowledged on copies 0 and 1 over the
	// tombstone v1, then a large write v3 failed on positions 0, 1, 3 and
	// 4; position 0 does not answer. Position 1 keeps the small value
	// under the failed write; positions 2 and 5 show only the tombstone.
	r := coding.Replicas(3)
	t1 := held{ver: ver(1), policy: p, tomb: true}
	a = heldAnswers{
		nil,
		{{ver: ver(3), policy: p}, {ver: ver(2), policy: r}},
		{t1},
		at("3")[0],
		at("3")[0],
		{t1},
	}
	if got, holders, ok := olderVersion(v, 0, a, nil); !ok || got.ver != ver(2) || len(holders) != 1 || holders[0] != 1 {
		t.Errorf("small value under a failed write: chose %s at %v (%v), want v2 at position 1", got.ver, holders, ok)
	}
}
