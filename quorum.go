package dscluster

import (
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/coding"
)

// A tally counts the answers to one attempt of a write (one version's
// shards) and says what they add up to. It does no I/O: writeRound feeds
// it, and quorum_internal_test.go tests its rules.
type tally struct {
	width, quorum int
	ver           coding.Version // the attempt's version

	stored   int            // answers that the node holds this version or a newer one
	holding  int            // of them, this version
	newer    coding.Version // the newest version a node held instead of this one
	failed   []NodeError
	kept     []peer.ID // nodes that kept older versions beside this one
	heldBack int       // shards not sent: their node is slow with a full backlog
}

func newTally(h *coding.Header, width, quorum int) tally {
	return tally{width: width, quorum: quorum, ver: h.Version}
}

// answer records a node's answer to its shard: err, or the version it
// holds (this one, zero when it says nothing, or a newer one it kept
// instead) and whether it kept older versions beside it.
func (t *tally) answer(node NodeError, p peer.ID, held coding.Version, kept bool) {
	if node.Err != nil {
		t.failed = append(t.failed, node)
		return
	}
	t.stored++
	if kept {
		t.kept = append(t.kept, p)
	}
	// An equal version is this write seen twice (a retry).
	if !t.ver.Less(held) {
		t.holding++
	} else if t.newer.Less(held) {
		t.newer = held
	}
}

func (t *tally) quorate() bool { return t.stored >= t.quorum }

// needsHeldBack reports whether the write cannot make its quorum without
// the shards held back: its failures and those shards leave too few.
func (t *tally) needsHeldBack() bool {
	return t.heldBack > 0 && t.width-len(t.failed)-t.heldBack < t.quorum
}

// A verdict is what an attempt came to once its round ended.
type verdict int

const (
	acked      verdict = iota // durable on the quorum: the write returns nil
	failed                    // below the quorum: the write fails with a QuorumError
	writeAgain                // written again with a newer version: see tally.verdict
)

// verdict says what the attempt came to. A write that failed while the
// map moved goes again by the new map. A quorate write that met a newer
// version goes again after it, so that a write that starts after another
// returned wins whatever the clocks say, unless its own version alone
// holds a majority quorum (ownsQuorum). Answers for the newer version do
// not count toward that: the newer write may yet fail, and reads then
// pass over it.
func (t *tally) verdict(moved bool) verdict {
	switch {
	case !t.quorate() && moved:
		return writeAgain
	case !t.quorate():
		return failed
	case !t.newer.IsZero() && !ownsQuorum(t.holding, t.quorum, t.width):
		return writeAgain
	}
	return acked
}

// ownsQuorum reports whether a version that holding of its width positions
// hold is acknowledged although some nodes held a newer one: no other
// version can also hold a majority quorum, so the newer one is a
// concurrent write's, which may be ordered after this one.
func ownsQuorum(holding, quorum, width int) bool {
	return holding >= quorum && 2*quorum > width
}
