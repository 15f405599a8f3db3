package node

import (
	"slices"
	"testing"

	"github.com/filedrive-team/go-ds-cluster/index"
)

// keepOlder: a writer's overwrite or delete keeps the versions it
// replaces, newest first, tombstones too; a repair copy or a forward
// keeps none. Past maxOlder the put is refused (full)
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
	// twice(e) holds each of e's versions at positions 0 and 1.
	twice := func(e index.Entry) index.Entry {
		var hs []index.Held
		for _, h := range e.Shards() {
			h1 := h
			h1.Index = 1
			hs = append(hs, h, h1)
		}
		e, _ = index.NewEntry(e.Key, e.Slot, hs)
		return e
	}
	downTwice := func(n int) []uint64 {
		var out []uint64
		for _, v := range down(n) {
			out = append(out, v, v)
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
		{"at the bound, two positions a version", twice(chain(maxOlder)), true, downTwice(maxOlder), nil, false},
		{"past the bound, two positions a version", twice(chain(maxOlder + 1)), true, downTwice(maxOlder + 1), nil, true},
		{"past the bound", chain(maxOlder + 1), true, down(maxOlder + 1), nil, true},
		{"past the bound, not kept", chain(maxOlder + 1), false, nil, down(maxOlder + 1), false},
		{"a tombstone", index.Entry{Held: held(5, true)}, true, []uint64{5}, nil, false},
		{"a tombstone and the value under it", index.Entry{Held: held(5, true), Older: []index.Held{held(4, false)}}, true, []uint64{5, 4}, nil, false},
		{"a tombstone, not kept", index.Entry{Held: held(5, true), Older: []index.Held{held(4, false)}}, false, nil, []uint64{5, 4}, false},
		{"not kept", index.Entry{Held: held(5, false), Older: []index.Held{held(4, false)}}, false, nil, []uint64{5, 4}, false},
	} {
		shards, drop, full := keepOlder(held(200, false), tc.old, tc.keep)
		if shards[0] != held(200, false) {
			t.Errorf("%s: the new shard is not first: %v", tc.name, shards)
		}
		older, dropped := versions(shards[1:]), versions(drop)
		if !slices.Equal(older, tc.kept) || !slices.Equal(dropped, tc.drop) || full != tc.full {
			t.Errorf("%s: kept %v, dropped %v, full %v; want %v, %v, %v", tc.name, older, dropped, full, tc.kept, tc.drop, tc.full)
		}
	}
}
