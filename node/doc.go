// Package node is the dscluster server: a libp2p host that stores the shards
// this node owns and answers the wire protocol.
//
// A node keeps each shard as one value in a shard store (the volume store
// under DIR/volume, or go-ds-flatfs under DIR/shards), named by the SHA-256
// of its key and its version, and indexes it in a bbolt key table whose
// entry lists the versions it holds: the newest, and the older ones a
// writer's overwrite keeps until it is acknowledged (index.Entry.Older).
// Both sit behind shardStore (store.go): with the volume store the table
// lives in the store's own database and a change (the new shard, the
// shards it drops, the entries) is one group commit, one fsync of the
// volume and one bbolt commit; with flatfs the table is DIR/index.db, and
// a change stores the shard, commits the entry, then deletes. The response
// is sent only once the change is durable, so an acknowledged shard
// survives a crash. An older or equal version is acknowledged without
// being written, which makes shard writes idempotent. A tombstone (a
// delete) is stored as a shard too and drops the versions it replaces, so
// that the stored shards say everything the index holds (reindex).
//
// Files: node.go starts and stops a node; serve.go reads requests, checks
// roles and dispatches them; write.go and read.go store and serve shards;
// shards.go answers the repair and writer ops (inventory, sums, drop,
// supersede); scrub.go and forward.go are the scrubber and the rebalance
// forwards; status.go the status ops; cluster.go keeps the cluster
// description; control.go runs the leader's loops (heartbeats, repair
// passes); member.go serves membership commands; peers.go is the repair
// worker's view of the other nodes.
//
// Every shard read is verified against its checksum; a corrupt shard is
// answered with StatusCorrupt, never served.
//
// Bad input (truncated or garbage frames, unknown ops, shards that fail
// their checksum) is answered with an error status or a reset stream; the
// node keeps serving other streams.
//
// # Cluster life
//
// Every node keeps the cluster description (map, members, rebalance
// target) under raft (package node/raftmap) and saves the latest one in
// DIR/cluster.json. A node accepts a shard for a position it owns in the
// map or in the rebalance target, and copies a shard written during a
// rebalance to the position's target owner before it answers the write.
// The raft leader runs three loops: heartbeats (membership.Decide turns
// missed pings into down and out, and membership changes into
// rebalances), raft voter upkeep, and repair passes (package repair, over
// the inventory, get, put and drop ops; only members may list or drop
// shards). Every node scrubs its own
// shards and removes the bad ones, which the next pass rebuilds.
//
// Background loops stop before the stores close; Close waits for them.
package node
