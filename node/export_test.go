package node

import "github.com/libp2p/go-libp2p/core/peer"

// Vouch runs the check mayRaft starts for a raft peer this node does not
// know as a member, and reports whether a member vouched for it.
func (n *Node) Vouch(p peer.ID) bool {
	n.vouch(p, n.cluster.Load())
	n.vouchMu.Lock()
	defer n.vouchMu.Unlock()
	return n.vouched[p]
}
