package dscluster

import (
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/coding"
)

// A tally counts the answers to one attempt of a write (one version's
// shards) and says what they add up to. It does no I/O and keeps no
// clock: writeRound sends the shards and feeds it, and every rule here
// has a table test (quorum_test.go).
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

// quorate reports whether the write quorum has answered.
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

// verdict says what the attempt came to. It is written again when a node
// held a newer version (another front end wrote within the same clock
// tick, or with a clock ahead: a write that starts after another one
// returned must win, whatever the clocks say), unless its own version
// alone holds a majority quorum (ownsQuorum); answers for the newer
// version do not count toward that, or an acknowledged write could rest
// on a newer one that then failed and was rolled back. It is written again
// too when it failed while the map moved under it (moved): nodes refused
// its shards for a stale map, and the next round sends them by the new one.
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
// hold (answers for newer versions not counted) is acknowledged even though
// some nodes held a newer one: a quorum that is a majority of the positions
// no other version can also hold, so the newer one is a concurrent write's,
// which may be ordered after this one.
func ownsQuorum(holding, quorum, width int) bool {
	return holding >= quorum && 2*quorum > width
}
