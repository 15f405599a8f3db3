package dscluster

import (
	"testing"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/placement"
)

// sevenNodeMap is a map of 7 nodes, width 6.
func sevenNodeMap(t *testing.T) *placement.Map {
	t.Helper()
	var nodes []placement.Node
	for i := range 7 {
		nodes = append(nodes, placement.Node{ID: string(rune('a' + i))})
	}
	m, err := placement.Assign(nil, nodes, 6)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestUnfilledPositionProvesNothing: a position whose owner changed since
// repair last filled every owner may hold an older version of a key than
// the writes it missed. A small value v2 acknowledged on positions 0 (its
// owner then) and 2, over v1 that positions 0 (its new owner) and 1 still
// hold: the answers of positions 0 and 1 would show every set of positions
// a write can be on, and v1 served as the newest, were position 0 taken at
// its word. The read must wait for position 2, and serve v2.
func TestUnfilledPositionProvesNothing(t *testing.T) {
	m := sevenNodeMap(t)
	const key = "/unfilled/small"
	slot := placement.Slot(key)
	c := &config.Cluster{Policy: coding.Erasure(4, 2), Map: m}
	d := &Datastore{clock: newClock()}
	small := coding.Replicas(3)
	v1, v2 := coding.Version{HLC: 1 << 16, Writer: 1}, coding.Version{HLC: 2 << 16, Writer: 1}
	answers := heldAnswers{{{ver: v1, policy: small}}, {{ver: v1, policy: small}}, nil, nil, nil, nil}

	// Every owner vouched for: two answers show every set of positions a
	// write can be on, so v1 is the newest acknowledged version.
	g, err, done := d.pick(&view{c: c}, key, m.Owners(slot), answers, false, nil)
	if !done || err != nil || g == nil || g.ver != v1 {
		t.Fatalf("with every owner filled: pick = %v, %v, done %v; want v1, done", g, err, done)
	}

	// Position 0's owner is new and not filled: its answer proves nothing.
	c.Unfilled = make([]byte, (placement.NumSlots*m.Width+7)/8)
	bit := int(slot) * m.Width
	c.Unfilled[bit/8] |= 1 << (bit % 8)
	if c.Vouches(slot, 0) || !c.Vouches(slot, 1) {
		t.Fatal("Vouches does not follow Unfilled")
	}
	if g, err, done := d.pick(&view{c: c}, key, m.Owners(slot), answers, false, nil); done {
		t.Fatalf("with position 0 not filled: pick = %v, %v, done; want it to wait for more positions", g, err)
	}
	answers[2] = posHeld{{ver: v2, policy: small}}
	g, err, done = d.pick(&view{c: c}, key, m.Owners(slot), answers, false, nil)
	if !done || err != nil || g == nil || g.ver != v2 {
		t.Fatalf("with position 2's answer: pick = %v, %v, done %v; want v2, done", g, err, done)
	}
}

// TestUnfilledPositionsDoNotProveAFailedWrite: v2 on positions 0 to 2 over
// v1 on 3 to 5 never reached its quorum of 5 when positions 3 to 5 are
// taken at their word; when two of them are new owners repair has not
// filled, v2 may have been acknowledged on their old owners, and v1 must
// not be served.
func TestUnfilledPositionsDoNotProveAFailedWrite(t *testing.T) {
	m := sevenNodeMap(t)
	p := coding.Erasure(4, 2)
	c := &config.Cluster{Policy: p, Map: m}
	ver := func(n uint64) coding.Version { return coding.Version{HLC: n << 16, Writer: 1} }
	a := make(heldAnswers, 6)
	for pos := range a {
		if pos < 3 {
			a[pos] = posHeld{{ver: ver(2), policy: p}, {ver: ver(1), policy: p}}
		} else {
			a[pos] = posHeld{{ver: ver(1), policy: p}}
		}
	}
	const slot = 7
	if got, _, ok := olderVersion(&view{c: c}, slot, a, nil); !ok || got.ver != ver(1) {
		t.Fatalf("every owner filled: olderVersion = %v, %v; want v1", got.ver, ok)
	}
	c.Unfilled = make([]byte, (placement.NumSlots*m.Width+7)/8)
	for _, pos := range []int{3, 4} {
		bit := slot*m.Width + pos
		c.Unfilled[bit/8] |= 1 << (bit % 8)
	}
	if got, _, ok := olderVersion(&view{c: c}, slot, a, nil); ok {
		t.Fatalf("positions 3 and 4 not filled: olderVersion = %v; want none", got.ver)
	}
}
