package dscluster

import (
	"testing"

	"github.com/filedrive-team/go-ds-cluster/wire"
)

// TestPurgeable: a tombstone goes only when each owner lists exactly it
// and no node lists anything else, counted by node, not by entry.
func TestPurgeable(t *testing.T) {
	top := wire.ListEntry{Key: "/k", HLC: 100, Writer: 1, Tombstone: true}
	old := wire.ListEntry{Key: "/k", HLC: 50, Writer: 1}
	owners := []uint16{0, 1, 2}
	rep := func(e wire.ListEntry, n int) []wire.ListEntry {
		out := make([]wire.ListEntry, n)
		for i := range out {
			out[i] = e
		}
		return out
	}
	for _, c := range []struct {
		name string
		es   []wire.ListEntry
		from []int
		want bool
	}{
		{"every owner holds it", rep(top, 3), []int{0, 1, 2}, true},
		{"and a leftover copy of it", rep(top, 4), []int{0, 1, 2, 5}, true},
		{"an owner lacks it", rep(top, 2), []int{0, 2}, false},
		// The review's case: a leftover tombstone on node 5 stands in for
		// owner 1, which did not list it. Counting entries would purge.
		{"a leftover stands in for an owner", rep(top, 3), []int{0, 2, 5}, false},
		{"an owner holds an older shard", append(rep(top, 2), old), []int{0, 2, 1}, false},
		{"a non-owner holds an older shard", append(rep(top, 3), old), []int{0, 1, 2, 4}, false},
	} {
		if got := purgeable(top, c.es, c.from, owners); got != c.want {
			t.Errorf("%s: purgeable %v, want %v", c.name, got, c.want)
		}
	}
}
