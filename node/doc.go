// Package node is the dscluster server: a libp2p host that stores the shards
// this node owns and answers the wire protocol.
//
// A node keeps each shard as one value in a go-datastore shard store (the
// volume store under DIR/volume, or go-ds-flatfs under DIR/shards) named by
// the SHA-256 of its key, and indexes it in a bbolt key table. With the
// volume store the table lives in the store's own database and a shard and
// its entry commit together, in the group commit that fsyncs the shard; with
// flatfs it is DIR/index.db, and Put writes the shard with fsync first, then
// the entry with fsync. The response is sent only after both are durable,
// so an acknowledged shard survives a crash. A
// node keeps only the newest version of a key: an older or equal version is
// acknowledged without being written, which makes shard writes idempotent.
// A tombstone (a delete) is kept in the index alone and removes the shard
// file; its shard is rebuilt from the index entry when read.
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
