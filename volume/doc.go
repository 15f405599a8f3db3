// Package volume is an append-only shard store: a go-datastore whose values
// are appended as records to large volume files, with a bbolt index that maps
// each key to its record. It replaces one file per shard (go-ds-flatfs: a
// create and two fsyncs per Put) with appends whose fsyncs concurrent writers
// share.
//
// # Layout
//
// A store directory holds index.bolt and volume files named 00000001.vol,
// 00000002.vol, and so on. The highest-numbered volume is the active one; all
// appends go there, and it is sealed once it would grow past
// Options.MaxVolumeSize. Each Put and each Delete appends a record (layout in
// record.go): its kind (put or delete), a sequence number the store assigns
// in append order, the key and the value, with checksums. The volumes are
// thus a log of every change, and the index can always be rebuilt from them.
//
// The index bucket "keys" maps a key to (volume, offset, record length). The
// bucket "meta" holds the format (3), the highest sequence number, and per
// volume the end offset of its last committed record ("e"+id), the bytes of
// its dead records ("d"+id), which Compact reads, and its lowest sequence
// number ("m"+id).
//
// # Durability
//
// Put, Delete and Batch.Commit are durable when they return nil. A single
// committer goroutine takes every pending submission at once (group commit)
// and pays one fsync per volume they appended to (one, unless the group
// crossed into a new volume), then one bbolt transaction that makes them
// visible. bbolt does not fsync that transaction: the volumes are the
// write-ahead log. Until the commit a record is invisible to Get and Query.
// When the previous group held several submissions, the committer waits for
// more to arrive, up to Options.CommitDelay (by default twice the previous
// group's fsync time, at most 10ms): twice as many, so that a group grows
// under load, or as many when asking for more kept running out of time (a
// fixed number of writers, each waiting on its own commit). A lone writer
// never waits.
// Stats counts groups, writes, fsyncs and index commits. Sync is a no-op.
//
// If an fsync or an index commit fails, the store refuses further writes
// (the error is sticky, see Store.Err) until it is reopened, because the
// disk is then not trusted; writes already queued behind the failed one
// fail with it, since the kernel reports a failed writeback once per file
// and a later fsync could succeed without their pages. A full disk (ENOSPC,
// EDQUOT) is the exception: the writes that meet it fail, their records are
// never indexed, and writes go on once there is room. When it is a volume's
// fsync that meets it, the writes queued with records in that volume fail
// too, and the next write starts a new volume.
//
// CommitWith lets a caller commit its own bbolt buckets with a record, and
// with deletes of other keys, as one change: its function runs in the index
// transaction of the record's group, and learns where the record went.
// Those buckets are not in the log: after a rebuild NeedsReindex
// reports that the caller must rebuild them from the values (a node does so
// from its shards' headers), and ReindexDone that it has.
//
// # Owners
//
// A store opened with Options.Owner keeps no key table: the owner's own
// buckets say where each record is (a node's index: each shard's entry
// holds its place), so a write changes one table, not two. The owner reads
// with GetAt; its CommitWith function returns where the records it drops
// are, as its own table has them in that transaction (their bytes count
// dead); and it answers compaction, which asks it whether a record is live
// (Owner.Holds) and moves it in the transaction that commits the copy
// (Owner.Move). Put, Delete and batches, which no owner's table would
// follow, are refused. After a rebuild the store's own table holds every
// live key (Locate) until ReindexDone empties it; a drop takes its key out
// of it, and Compact is refused until ReindexDone. The meta bucket records that an
// owner keeps the table, and Open refuses the store without one (ErrOwner),
// and a store that keeps its own table with one.
//
// A write whose Put returned an error may or may not be stored; retrying the
// same Put is always safe. That includes a CommitWith whose function failed:
// after an operating system crash its records may be replayed.
// Options.NoSync drops every fsync and is for tests.
//
// # Crash recovery
//
// The file "running" holds the boot ID of the process that has the store
// open; Close fsyncs the index and removes it. At Open:
//
//   - after a clean Close, or when only the process stopped (the same boot:
//     the index's unsynced writes are in the page cache), the index is
//     trusted, and every volume is truncated to the end offset of its last
//     indexed record. Past that point there can only be a torn record,
//     garbage, or records whose group never committed; none of them was
//     acknowledged. Sealed volumes the index does not know (a compaction
//     that crashed after its index commit) are deleted. A volume shorter
//     than its indexed end, or missing, makes Open fail with ErrCorrupt;
//   - after an operating system crash or a power loss (another boot), or
//     when index.bolt does not open or is new beside volumes that hold data,
//     the index is rebuilt from the volumes: of each key's records, the one
//     with the highest sequence number is its state. The active volume is
//     read up to its first record that does not check out (a torn tail) and
//     cut there; in a sealed volume the rebuild goes on from the next record
//     that checks out (bit rot loses the record it hits, not those after
//     it), and the bytes between are dead. The old
//     index is kept as index.bolt.bad. The distrusted index is never opened:
//     bbolt may panic on a torn file.
//
// Why not checkpoints: an index fsynced now and then does not survive the
// unsynced commits after it. bbolt reuses the pages those commits free and
// alternates its two meta pages, so a power loss can leave the checkpoint's
// pages overwritten and a newer meta page that points at pages never
// written. A rebuild reads every volume once, sequentially.
//
// Only files named as the store names them (00000001.vol) are volumes. A
// store of format 1 (no kinds, no sequence numbers) or 2 (locations by
// value length) is refused with ErrOldFormat; one of format 2 whose index
// is rebuilt (another boot, a lost index.bolt) comes back in format 3, as
// its records are those of format 3.
//
// # Reads and corruption
//
// Get reads the whole record with one pread and verifies the checksum and the
// key; a mismatch returns an error wrapping ErrCorrupt and never the bytes.
// Has and GetSize read only the index. Check verifies every index entry
// against its record header (magic, lengths, key) without reading values.
// Query walks the index in key order in pages of short read transactions, so
// it is not a snapshot; values are read lazily, and a key deleted after its
// page was read is skipped.
//
// # Compaction
//
// Overwrites and deletes leave dead records behind. Compact(ctx, minGarbage)
// reads every sealed volume whose dead fraction is at least minGarbage and
// rewrites its live records into the active volume, verbatim (sequence
// numbers included), through the normal group commit, with a
// compare-and-swap on the index entry so that a concurrent overwrite or
// delete wins. A delete record is copied too while it may still hide an
// older record from a rebuild (its key has no value, and another volume
// holds older records). The volume is then dropped from the index and its
// file deleted. Reads and writes continue while it runs.
//
// # Concurrency
//
// All methods are safe for concurrent use. Values passed to Put are copied
// into a record before Put returns to the caller's control; values returned
// by Get belong to the caller. Only one Compact runs at a time. ctx is checked
// before a write is queued; once queued, a write waits for its group commit.
package volume
