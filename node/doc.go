// Package node is the dscluster server: a libp2p host that stores the shards
// this node owns and answers the wire protocol.
//
// A node keeps each shard as one value in a go-datastore shard store
// (go-ds-flatfs by default, under DIR/shards) named by the SHA-256 of its
// key, and indexes it in a bbolt key table (DIR/index.db). Put writes the
// shard with fsync first and then the index entry with fsync; the response
// is sent only after both, so an acknowledged shard survives a crash. A
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
package node
