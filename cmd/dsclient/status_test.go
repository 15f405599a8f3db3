package main

import (
	"strings"
	"testing"
	"time"

	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/repair"
)

// TestStatusTellsTheTruth: right after a node died and the map moved, the
// repair figures are an older pass's. Status says so (no pass since the
// map changed, how long ago the last one ran, slots below full redundancy
// that it did not see) instead of printing its zeros as the state of
// things, and lists the down and out members first.
func TestStatusTellsTheTruth(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	out := &statusOut{
		Cluster: "dsc-test", Policy: "4+2", Epoch: 5, Slots: 16384, SlotsReadable: 16384, SlotsRedundant: 2340,
		Nodes: []nodeOut{
			{Index: 0, Peer: "peer-up", State: membership.Up, Reachable: true},
			{Index: 1, Peer: "peer-down", State: membership.Down},
			{Index: 2, Peer: "peer-up-2", State: membership.Up, Reachable: true},
			{Index: -1, Peer: "peer-out", State: membership.Out},
		},
		Repair: &repair.Stats{Epoch: 4, Keys: 100, Started: now.Add(-42 * time.Second), Finished: now.Add(-40 * time.Second)},
	}
	var b strings.Builder
	writeStatus(&b, out, now)
	got := b.String()
	for _, want := range []string{
		"repair: no pass since the map changed (the last one planned for epoch 4, the map is at 5)",
		"repair (last pass 40s ago, for map epoch 4): 100 keys, 0 degraded",
		"repair: 14044 slots are below full redundancy since that pass",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
	order := []int{strings.Index(got, "peer-down"), strings.Index(got, "peer-out"), strings.Index(got, "peer-up "), strings.Index(got, "peer-up-2")}
	for i := 1; i < len(order); i++ {
		if order[i-1] < 0 || order[i] < 0 || order[i-1] > order[i] {
			t.Fatalf("members not listed down and out first (positions %v):\n%s", order, got)
		}
	}

	// A pass running, none finished yet.
	out.Repair = &repair.Stats{Started: now.Add(-time.Second)}
	b.Reset()
	writeStatus(&b, out, now)
	if !strings.Contains(b.String(), "repair (no pass has finished yet; a pass is running)") {
		t.Errorf("status with a first pass running:\n%s", b.String())
	}
}
