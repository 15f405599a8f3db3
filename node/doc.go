// Package node is the dscluster server: a libp2p host that stores the shards
// this node owns and answers the wire protocol.
//
// # Storage
//
// Each shard is one value in a shard store (the volume store, or flatfs),
// and a bbolt index lists per key the versions the node holds: the newest,
// and the older ones a writer's overwrite keeps until it is acknowledged
// (index.Entry.Older). Shards and index change together (shardStore).
//
// A write is answered only once it is durable, so an acknowledged shard
// survives a crash. An older or equal version is acknowledged without being
// written: shard writes are idempotent. A tombstone is stored as a shard
// too, so the stored shards say everything the index holds (reindex).
// Writes of a key hold its key lock (Node.lock); reads take none.
//
// Every shard read is verified: a corrupt shard is answered with
// StatusCorrupt, never served. Bad input gets an error status or a reset
// stream; the node keeps serving other streams.
//
// # Cluster life
//
// Every node keeps the cluster description (map, members, rebalance target)
// under raft (package node/raftmap) and saves the latest in
// DIR/cluster.json. A node accepts a shard for a position it owns in the map
// or in the rebalance target, and copies a writer's shard stored during a
// rebalance to the position's target owner before it answers (sendForwards).
// The raft leader runs heartbeats (membership.Decide turns missed pings into
// down and out, and membership changes into rebalances), raft voter upkeep,
// and repair passes (package repair; only members may list or drop shards).
// Every node scrubs its own shards and removes the bad ones, which the next
// pass rebuilds.
//
// Background loops stop before the stores close; Close waits for them.
package node
