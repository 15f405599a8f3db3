package node

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/internal/testpeer"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/placement"
)

// memberIDs follows the description it is given: a member removed in a
// newer description is no member, and one that never was is none.
func TestMemberIDsFollowTheDescription(t *testing.T) {
	a, b, stranger := testpeer.ID("a"), testpeer.ID("b"), testpeer.ID("stranger")
	desc := func(bState string) *config.Cluster {
		return &config.Cluster{Members: []config.Member{
			{Node: placement.Node{ID: a}, State: membership.Up},
			{Node: placement.Node{ID: b}, State: bState},
		}}
	}
	var n Node
	for _, tc := range []struct {
		c    *config.Cluster
		want map[string]bool
	}{
		{desc(membership.Up), map[string]bool{a: true, b: true, stranger: false}},
		{desc(membership.Removed), map[string]bool{a: true, b: false, stranger: false}},
		{desc(membership.Down), map[string]bool{a: true, b: true, stranger: false}},
	} {
		for _, again := range []bool{false, true} { // built, then kept
			ids := n.memberIDs(tc.c)
			for s, want := range tc.want {
				id, err := peer.Decode(s)
				if err != nil {
					t.Fatal(err)
				}
				if ids[id] != want {
					t.Errorf("b %s, asked again %v: %s member %v, want %v", tc.c.Members[1].State, again, s, ids[id], want)
				}
			}
		}
	}
}
