// Package index is a storage node's key table: for every key the node holds
// a shard of, the metadata of its shards (an Entry): those of the newest
// version the node has seen, at each position it holds, and those of the
// older versions it keeps beside them. It lives in one bbolt file.
//
// The datastore front end lists it by key prefix (Query) and the repair and
// rebalance workers list it by slot. Both listings are served from B+trees:
// the "entries" bucket maps key -> Entry, and the "byslot" bucket maps
// slot (2 bytes, big-endian) + key -> nothing.
//
// # Contracts
//
//   - A DB is safe for concurrent use by many goroutines.
//   - Put and Delete are durable when they return nil: their transaction has
//     been committed and fsynced (Options.NoSync, for tests only, skips the
//     fsync). Concurrent calls are group-committed with bbolt's DB.Batch and
//     share one fsync; a group commits when it holds Options.MaxBatchSize
//     calls or Options.MaxBatchDelay after it opened, so set MaxBatchSize
//     near the number of concurrent writers. A call with no other write in
//     flight skips the batch and commits at once.
//   - Put is last-writer-wins by Version (HLC, then Writer): an entry older
//     than or equal to the stored one is refused with stored=false and no
//     error, so replaying a Put is harmless and retrying after an error is
//     safe.
//   - Every listing is one read transaction, so it is a consistent snapshot,
//     sorted by key bytes. Pages are resumed with the last key returned
//     (after); keys are exclusive of after.
//   - The byslot bucket and the Stats counters are updated in the same
//     transaction as the entry they describe, so they never disagree with it,
//     also across a crash.
//   - Sums summarises the entries per slot, policy and shard position (a
//     count and the XOR of a hash of key, version, tombstone flag and
//     policy), for the repair worker to compare owners without listing
//     them. The sums are computed when the index opens and follow each
//     committed transaction (bbolt commit handlers), so an aborted one
//     changes nothing. While an entry does not decode, Sums fails.
//   - Returned Entries and slices are owned by the caller; nothing refers to
//     bbolt's memory after a call returns.
//   - Errors are prefixed "index:" and name the file. ErrNotFound and
//     ErrInvalidKey are sentinels; a stored value that does not decode gives
//     a *CorruptError naming the key, which matches ErrCorrupt. Delete purges
//     such an entry so it can be rebuilt. Nothing in this package panics on
//     bad bytes, on disk or in a file handed to Open.
//
// # Format
//
// Entry values are a compact binary encoding whose first byte is the format
// version (4), ending in a crc32c over the key and the value; see entry.go.
// The schema (4) is recorded in the meta bucket; an index of an older
// schema, which an older version wrote, is refused with ErrOldFormat.
package index
