package node

import (
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
	held := index.Entry{Key: "/k", Index: 3, Version: toIndexVersion(v)}
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
