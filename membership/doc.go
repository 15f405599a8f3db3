// Package membership is the cluster's membership state machine: the node
// states, the commands that change them and the cluster map, and the
// decisions the raft leader takes from heartbeats. It is pure: no I/O, no
// clock (times are passed in), so that every transition is tested as a
// scenario. The raft FSM in package node applies Commands with Apply; the
// leader's controller proposes what Decide returns.
//
// # States
//
//	joining   asked to join; not yet owner of any slot (or only in Target)
//	up        answering heartbeats; owner of slots
//	down      stopped answering; still owner (a restart costs no repair)
//	out       down for longer than the grace period: its slots are
//	          reassigned and the repair worker rebuilds its shards
//	draining  asked to leave: its slots move away, then it is removed
//	removed   left the cluster; holds nothing
//
// A drain sets Member.Leaving, which nothing clears but a fresh join after
// removal: a draining member that goes down comes back draining, and one
// that goes out and answers again rejoins draining (not joining), so it
// gets no slots, and is removed once it holds none.
//
// # Joins
//
// A join is checked before it is applied, since a bad member would block
// the cluster for good: a new member's ID must be a libp2p peer ID (raft
// servers are named by it), its weight within 0..placement.MaxWeight (or
// every later Assign fails), and it needs at least one address, each a
// multiaddr. The join of a known ID is that member's re-join: it refreshes
// its addresses, or re-adds it when it was out or removed.
//
// # Map changes
//
// The slot map changes in two ways. When a node is out (its shards are lost
// anyway), Rebalance replaces the map at once and repair rebuilds. Otherwise
// (a join, a drain) Rebalance sets Cluster.Target: the new owners accept
// shards while the repair worker copies them, and Commit makes the target the
// map once they hold everything. Every new map has the next epoch. When the
// members call for a map that cannot be built (fewer eligible members than
// the width), Decide returns Desired's error and proposes no rebalance.
//
// # Raft voters
//
// Voters picks the raft voters from the members and the current voters:
// 3, or 5 from 7 members that are neither out nor removed. A voter stays a
// voter while it is down, so a restart changes nothing, and is replaced
// once it is out, removed or leaving; only up members are ever added, so a
// second failure among the non-voters cannot cost the quorum.
package membership
