package dscluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/coding"
)

// TestTally runs the write rules over answer sequences. An answer is one
// letter: s stored this version, k stored it and kept older versions,
// n the node holds a newer version, o it holds an older one (it stored
// this version over it: the same as s), e an error.
func TestTally(t *testing.T) {
	ours := coding.Version{HLC: 100, Writer: 7}
	ec := coding.Erasure(4, 2)
	for _, tc := range []struct {
		name    string
		policy  coding.Policy
		quorum  int
		tomb    bool
		answers string
		moved   bool
		want    verdict
		kept    int
	}{
		{name: "every node stored it", policy: ec, quorum: 5, answers: "ssssss", want: acked},
		{name: "the quorum and no more", policy: ec, quorum: 5, answers: "sssssee", want: acked},
		{name: "one short of the quorum, readable", policy: ec, quorum: 5, answers: "kkkkee", want: failed, kept: 4},
		{name: "too scarce to read", policy: ec, quorum: 5, answers: "kkseee", want: failed, kept: 2},
		{name: "a failed delete", policy: ec, quorum: 5, tomb: true, answers: "seeeee", want: failed},
		{name: "nothing stored", policy: ec, quorum: 5, answers: "eeeeee", want: failed},
		{name: "a newer version on two: again", policy: ec, quorum: 5, answers: "kkkknn", want: writeAgain, kept: 4},
		{name: "a newer version on three: again", policy: ec, quorum: 5, answers: "kkknnn", want: writeAgain, kept: 3},
		{name: "own majority quorum wins over a newer version", policy: ec, quorum: 5, answers: "ssssn" + "s", want: acked},
		{name: "no majority: a quorum of 3 of 6 cannot own", policy: ec, quorum: 3, answers: "sssnnn", want: writeAgain},
		{name: "failed and newer: failed", policy: ec, quorum: 5, answers: "ssnnee", want: failed},
		{name: "an older version is written over", policy: ec, quorum: 5, answers: "oooooo", want: acked},
		{name: "failed while the map moved: again", policy: ec, quorum: 5, answers: "sseeee", moved: true, want: writeAgain},
		{name: "acknowledged while the map moved", policy: ec, quorum: 5, answers: "ssssse", moved: true, want: acked},
		{name: "replicas: one copy of three is readable", policy: coding.Replicas(3), quorum: 2, answers: "kee", want: failed, kept: 1},
		{name: "replicas: none stored", policy: coding.Replicas(3), quorum: 2, answers: "eee", want: failed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &coding.Header{Policy: tc.policy, Version: ours, Tombstone: tc.tomb}
			ta := newTally(h, tc.policy.Width(), tc.quorum)
			for i, a := range tc.answers {
				ne := NodeError{Node: fmt.Sprintf("node %d", i)}
				held := coding.Version{}
				switch a {
				case 'e':
					ne.Err = errors.New("refused")
				case 'n':
					held = coding.Version{HLC: ours.HLC + uint64(i), Writer: 1}
				case 'o':
					held = coding.Version{HLC: ours.HLC - 1, Writer: 9}
				}
				ta.answer(ne, peer.ID(fmt.Sprint(i)), held, a == 'k')
			}
			got := ta.verdict(tc.moved)
			if got != tc.want || len(ta.kept) != tc.kept {
				t.Fatalf("%s: verdict %d kept %d, want %d %d (stored %d holding %d newer %v)",
					tc.answers, got, len(ta.kept), tc.want, tc.kept, ta.stored, ta.holding, ta.newer)
			}
			if n := strings.Count(tc.answers, "n"); n > 0 && ta.newer != (coding.Version{HLC: ours.HLC + uint64(strings.LastIndexByte(tc.answers, 'n')), Writer: 1}) {
				t.Fatalf("newer %v, want the newest of %d newer answers", ta.newer, n)
			}
		})
	}
}

// TestTallyHeldBack: shards held back from slow nodes are sent once the
// failures and they leave too few for the quorum.
func TestTallyHeldBack(t *testing.T) {
	h := &coding.Header{Policy: coding.Erasure(4, 2)}
	ta := newTally(h, 6, 5)
	ta.heldBack = 1
	if ta.needsHeldBack() {
		t.Fatal("5 of 6 sent with a quorum of 5: the held-back shard is needed already")
	}
	ta.answer(NodeError{Node: "a"}, "a", coding.Version{}, false)
	if ta.needsHeldBack() {
		t.Fatal("after one stored answer: held-back shard needed")
	}
	ta.answer(NodeError{Node: "b", Err: errors.New("down")}, "b", coding.Version{}, false)
	if !ta.needsHeldBack() {
		t.Fatal("one failure and one held back leave 4 for a quorum of 5: the held-back shard must go")
	}
}
