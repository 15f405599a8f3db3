package node

import (
	"slices"
	"testing"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// A put of a version the node already holds is answered OK only for the
// same position. During a rebalance a node can own position p of a slot
// in the map and q in the target, so it may hold shard q of a version (a
// forward, a repair copy) when the writer's shard p of it arrives: it
// does not store p (one shard per key), and answering OK made the writer
// count a position nobody holds toward its quorum.
func TestHeldAnswer(t *testing.T) {
	v := coding.Version{HLC: 5 << 16, Writer: 2}
	held := index.Entry{Key: "/k", Held: index.Held{Index: 3, Version: toIndexVersion(v)}}
	for _, tc := range []struct {
		name   string
		in     coding.Header
		held   bool
		status wire.Status
	}{
		{"newer version", coding.Header{Key: "/k", Index: 1, Version: coding.Version{HLC: 6 << 16, Writer: 1}}, false, 0},
		{"same version, same position (a retry)", coding.Header{Key: "/k", Index: 3, Version: v}, true, wire.StatusOK},
		{"same version, other position", coding.Header{Key: "/k", Index: 1, Version: v}, true, wire.StatusBadRequest},
		{"older version", coding.Header{Key: "/k", Index: 1, Version: coding.Version{HLC: 4 << 16, Writer: 9}}, true, wire.StatusOK},
		{"same clock, lower writer", coding.Header{Key: "/k", Index: 3, Version: coding.Version{HLC: 5 << 16, Writer: 1}}, true, wire.StatusOK},
	} {
		r, isHeld := heldAnswer(held, &tc.in)
		if isHeld != tc.held || (isHeld && r.Status != tc.status) {
			t.Errorf("%s: %+v (held %v), want held %v status %v", tc.name, r, isHeld, tc.held, tc.status)
		}
		if r.Status == wire.StatusOK && isHeld && (r.HeldHLC != v.HLC || r.HeldWriter != v.Writer) {
			t.Errorf("%s: %+v does not name the version held", tc.name, r)
		}
	}
}

// keepOlder: a writer's overwrite keeps the versions it replaces, newest
// first, but never a tombstone nor anything behind one; a delete, a repair
// copy or a forward keeps none. Past maxOlder the put is refused (full)
// rather than dropping the oldest, which may be the acknowledged value.
func TestKeepOlder(t *testing.T) {
	held := func(hlc uint64, tomb bool) index.Held {
		return index.Held{Version: index.Version{HLC: hlc}, Tombstone: tomb}
	}
	// chain(n) is an entry of n versions, 100 the newest; down(n) their
	// clocks, newest first.
	chain := func(n int) index.Entry {
		e := index.Entry{Held: held(100, false)}
		for i := 1; i < n; i++ {
			e.Older = append(e.Older, held(uint64(100-i), false))
		}
		return e
	}
	down := func(n int) []uint64 {
		var out []uint64
		for i := range n {
			out = append(out, uint64(100-i))
		}
		return out
	}
	versions := func(hs []index.Held) []uint64 {
		var out []uint64
		for _, h := range hs {
			out = append(out, h.Version.HLC)
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		old        index.Entry
		keep       bool
		kept, drop []uint64
		full       bool
	}{
		{"one value", index.Entry{Held: held(5, false)}, true, []uint64{5}, nil, false},
		{"a value and its older ones", index.Entry{Held: held(5, false), Older: []index.Held{held(4, false), held(3, false)}}, true, []uint64{5, 4, 3}, nil, false},
		{"at the bound", chain(maxOlder), true, down(maxOlder), nil, false},
		{"past the bound", chain(maxOlder + 1), true, down(maxOlder + 1), nil, true},
		{"past the bound, not kept", chain(maxOlder + 1), false, nil, down(maxOlder + 1), false},
		{"a tombstone", index.Entry{Held: held(5, true)}, true, nil, []uint64{5}, false},
		{"not kept", index.Entry{Held: held(5, false), Older: []index.Held{held(4, false)}}, false, nil, []uint64{5, 4}, false},
	} {
		older, drop, full := keepOlder(tc.old, tc.keep)
		var dropped []uint64
		for _, v := range drop {
			dropped = append(dropped, v.HLC)
		}
		if !slices.Equal(versions(older), tc.kept) || !slices.Equal(dropped, tc.drop) || full != tc.full {
			t.Errorf("%s: kept %v, dropped %v, full %v; want %v, %v, %v", tc.name, versions(older), dropped, full, tc.kept, tc.drop, tc.full)
		}
	}
}
