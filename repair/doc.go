// Package repair keeps every key at full redundancy: it finds shards that
// are missing, misplaced or left over, and copies, rebuilds or drops them.
// It is how the cluster recovers after a node is declared out, moves data
// when a node joins or drains, and completes writes that reached only their
// quorum.
//
// The package has two halves, in the etcd raft style: a pure planner and a
// thin driver.
//
//   - Make (the planner) takes a View (the cluster map, the rebalance
//     target, which nodes answered, and every shard those nodes hold) and
//     returns a Plan: the actions to take and a few figures. It does no I/O,
//     keeps no state and reads no clock, so every rule below is tested with
//     scripted scenarios on a simulated cluster.
//   - The driver lists the nodes' inventories, calls Make, records the plan
//     so a crash resumes it, and carries out the actions at a limited rate.
//     With SlotPeers it first compares the nodes' slot sums and lists only
//     the slots whose owners disagree (SettledSlots): Make gives a settled
//     slot's keys no action, so leaving them out changes no plan. With a
//     Delegator it hands each copy and rebuild to the node that stores the
//     shard, which reads the sources itself (MakeShard): repair data goes
//     from node to node, not through the node that runs the driver.
//
// # Contracts of Make
//
//   - Pure and deterministic: Make reads the View and modifies nothing in
//     it; the same View gives the same Plan, whatever the order of
//     Holdings (a shard listed twice counts once). Safe for concurrent use
//     on Views that nobody modifies.
//   - Cost: linear in the number of holdings, plus sorting the distinct
//     keys: a quarter of a second for a million holdings on the
//     development machine (BenchmarkMake_1M).
//   - Bytes in an action is the shard length it moves (0 for drops and
//     tombstones), for rate limits and ETAs.
//   - Actions are sorted by key, position, kind (copy, rebuild, drop) and
//     destination, and the actions of one plan may run in any order, or
//     concurrently: no action's source is dropped by the same plan, no
//     drop relies on a shard that another action of the plan takes away,
//     and a node is sent at most one shard per position of a key.
//   - Actions are idempotent against the state they were planned from: a
//     node keeps the positions of its newest version of a key, adds a
//     position of that version beside them, takes a newer version in their
//     place and refuses an older one, and a Drop names the exact position
//     and version it removes. A drop is justified by the View it was
//     planned from, so a driver that replays a recorded plan after the
//     cluster changed relies on the node checking ownership; a fresh plan
//     is always safe.
//   - An unreachable node (not in View.Reachable) is never a source, never
//     a destination, never asked to drop, and its listed holdings do not
//     count as copies.
//
// # Rules
//
// For each key, V is the version repaired: the newest version a reader can
// get, which is what Get returns. A value is readable with k (DataShards of
// its policy) distinct positions held by reachable nodes, a tombstone with
// any one shard (it is rebuilt from its header), so a delete on fewer than
// k nodes still wins over an older value. A version whose policy is not
// valid, met before a readable one, ends the search: nothing is known to
// be readable. P is the policy of V, of width w.
// A node holds "V at p" only with that exact version at that exact
// position.
//
//   - Newer versions too scarce to read: a write that failed after landing
//     on fewer than k nodes must not shadow the acknowledged value below
//     it. A node refuses a version older than its newest, so an owner that
//     holds such a newer shard, at any position, cannot take V: it gets
//     nothing until the shard is gone. The shard is dropped (Stale, since
//     its holder may own the position; Restore, so that what the holder
//     keeps of the key then, an older version included, is its newest)
//     only when it is provably garbage: every owner of the key's slot, in
//     the map and the target, is reachable, the version has fewer than k
//     positions among all the holdings listed, reachable or not, and it is
//     older than View.GarbageBefore (the driver's GarbageGrace ago: a
//     write still in flight has landed only some of its shards, and may
//     yet be acknowledged). A version written before View.MapSince may
//     also sit at owners of an earlier map that a rebalance commit left (a
//     write that raced the commit, its forwards lost): it must have fewer
//     than k positions even with two more on each member that did not
//     answer or is down or out (View.Unlisted). Only the newest such
//     version goes in one pass: a version below a failed one may be scarce
//     only because the failed write's holders keep its shards as older
//     versions, which the planner does not see. Otherwise (an owner that
//     does not answer might hold more of it: an acknowledged write) it is
//     left alone, at owners and elsewhere, and V is repaired everywhere
//     else. A later plan gives V to the owner whose shard was dropped.
//   - Needs: each reachable owner, in View.Map or View.Target, of a position
//     p < w must hold V at p. A node that owns p in the map and q in the
//     target gets both in the same plan.
//   - Copy when a reachable node holds V at p (preferring a node that owns p
//     in neither map: the old owner, whose copy is about to go; then the
//     lowest node ID). Otherwise Rebuild: a tombstone needs no sources, a
//     value needs k distinct positions of V, and the sources list one node
//     per available position in position order, data shards first.
//   - Drop a holding whose node owns its position in neither map once a
//     reachable owner of that position (map or target) holds V there (an
//     owner with an older version gets V first); and drop holdings of
//     superseded versions at positions >= w (left over when a key is
//     overwritten by a narrower policy, 4+2 by r3) once the key is not
//     degraded.
//   - Drop older: a node that keeps older versions of a key beside its
//     shards of V (it missed the writer's "drop older") is told to drop
//     them (one Drop with Older) once the key is not degraded: every read
//     returns V before any of them. Slot sums count such shards, so a
//     slot with one is not settled.
//   - Lost: a key with no readable version at all gets no action at all,
//     drops included: every shard left, of any version, may be what an
//     operator still needs. The one exception is its newest version when
//     that provably never reached its write quorum (View.Quorum): every
//     owner of the slot answers, it is older than View.GarbageBefore and
//     written after View.MapSince with no rebalance under way (so the
//     owners now are those its writer wrote to), it has fewer than k
//     positions among all holdings listed, and the positions whose map
//     owner holds only older versions leave fewer than the quorum that
//     could have held it. Its holders drop it with Restore (their newest
//     older version becomes their newest: a failed overwrite leaves the
//     older value readable only that way), one version per pass.
//     The map-age test compares clocks (a version's HLC with the time the
//     raft command that set the map was proposed): it assumes writers'
//     clocks, and the time nodes take to apply a new map, stay within
//     the garbage grace the driver adds to View.MapSince.
//     Lost keys do not hold a target's commit back,
//     since nothing can fix them. A key with a readable V does hold it
//     back until every target owner holds V at its target position, an
//     owner shadowed by a newer shard included: a commit would leave V at
//     fewer owners.
//
// # Figures
//
// Plan.Degraded counts keys with fewer than w positions of V held by their
// reachable owner in View.Map, and the lost keys; Plan.Lost counts the keys
// with no readable version. TargetReady says the leader may commit the
// target. Held counts each reachable node's holdings, so a draining node is
// removed once it holds nothing.
package repair
