// Package repair keeps every key at full redundancy: it copies, rebuilds or
// drops the shards that are missing, misplaced or left over. This is how the
// cluster recovers after a node is declared out, moves data when a node
// joins or drains, and completes writes that reached only their quorum.
//
// A pure planner is driven by a thin driver, in the etcd raft style:
//
//   - Make takes a View (the cluster map, the rebalance target, which nodes
//     answered, and every shard they hold) and returns a Plan. It does no
//     I/O, keeps no state and reads no clock.
//   - The Driver lists the nodes (only the unsettled slots with SlotPeers),
//     calls Make, records the plan so that a crash resumes it, and carries
//     it out at a limited rate (with a Delegator, each node makes the
//     shards it is to store).
//
// # Contracts of Make
//
//   - Make modifies nothing in the View. The same View gives the same Plan
//     whatever the order of Holdings (a shard listed twice counts once).
//     Make is safe for concurrent use on Views that nobody modifies.
//   - Cost is linear in the holdings plus sorting the distinct keys: a
//     quarter of a second for a million holdings (BenchmarkMake_1M).
//   - The actions of a plan may run in any order, or concurrently: no
//     action's source is dropped by the same plan, no drop relies on a
//     shard that another action takes away, and a node is sent at most one
//     shard per position of a key.
//   - Actions are idempotent against the state they were planned from: a
//     node keeps every position it holds of its newest version of a key,
//     adds another position of that version, takes a newer version in
//     their place and refuses an older one; a Drop names the exact position
//     and version it removes. A drop is justified only by the View it was
//     planned from: a replayed plan relies on the node checking ownership.
//   - A node not in View.Reachable is never a source, never a destination,
//     never asked to drop, and its holdings do not count as copies.
//
// # Rules
//
// For each key the planner repairs V, the newest version a reader can get,
// which is what Get returns. A value is readable from k (its policy's
// DataShards) distinct positions on reachable nodes, a tombstone from any
// one shard (it is rebuilt from its header), so a delete on fewer than k
// nodes still wins over an older value. A version whose policy is not valid
// ends the search: nothing is known to be readable. w is the width of V's
// policy, and a node holds "V at p" only with that version at that position.
//
//   - Needs: each reachable owner of a position p < w, in View.Map or
//     View.Target, gets V at p by Copy from a reachable holder, else by
//     Rebuild. A node that owns p in the map and q in the target gets both.
//   - Shadowed: a node refuses a version older than its newest, so an owner
//     that holds a newer version, at any position, gets nothing until that
//     shard is gone.
//   - Garbage: a newer value too scarce to read (a write that failed after
//     landing on fewer than k positions) must not shadow V. Its reachable
//     shards are dropped (Stale and Restore) only when it is provably
//     garbage: every owner of the slot, in the map and the target, answers
//     (one that does not might hold the rest of an acknowledged write); it
//     has fewer than k positions among all holdings listed, reachable or
//     not, counting two more on each View.Unlisted member when it was
//     written before View.MapSince; and it is older than View.GarbageBefore
//     (a write in flight lands its shards one by one). Otherwise it stays,
//     and V is repaired everywhere else.
//   - Misplaced: a holding whose node owns its position in neither map is
//     dropped once a reachable owner of that position holds V there.
//   - Superseded: shards of older versions at positions >= w (4+2
//     overwritten by r3) are dropped once the key is not degraded.
//   - Older: a holder of V that keeps older versions of the key (it missed
//     the writer's drop) drops them once the key is not degraded: every
//     read returns V before any of them.
//   - Lost: a key with no readable version gets no action, drops included:
//     any shard left may be what an operator needs. The exception is its
//     newest version when it provably never reached its write quorum
//     (View.Quorum): it is garbage as above, no rebalance is under way, it
//     was written after View.MapSince (so the owners now are those its
//     writer wrote to), and the positions whose owner holds only older
//     versions leave fewer than the quorum. Its holders then drop it with
//     Restore: a failed overwrite leaves the older value readable only that
//     way. The MapSince test assumes writers' clocks, and the time nodes
//     take to apply a new map, stay within the garbage grace the driver
//     adds to it.
//   - Garbage and Lost drop one version per pass: the planner does not see
//     older versions, and a version below a failed one may look scarce only
//     because the failed write's holders keep its shards as older versions.
//   - Commit: a key with a readable V holds the target's commit back until
//     every target owner holds V at its target position, a shadowed owner
//     included. Lost keys do not, since nothing can fix them.
package repair
