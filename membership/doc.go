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
// # Map changes
//
// The slot map changes in two ways. When a node is out (its shards are lost
// anyway), Rebalance replaces the map at once and repair rebuilds. Otherwise
// (a join, a drain) Rebalance sets Cluster.Target: the new owners accept
// shards while the repair worker copies them, and Commit makes the target the
// map once they hold everything. Every new map has the next epoch.
package membership
