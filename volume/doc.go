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
// Options.MaxVolumeSize. A record is, integers little endian:
//
//	magic  uint32   "VOL1"
//	keyLen uint32   at most MaxKeySize (32 KiB, bbolt's key limit)
//	valLen uint32   at most MaxValueSize (1 GiB)
//	key    keyLen bytes (the datastore key string)
//	value  valLen bytes
//	sum    uint64   xxhash64 of every byte before it
//
// The index bucket "keys" maps a key to (volume, offset, value length). The
// bucket "meta" holds, per volume, the end offset of its last committed record
// ("e"+id) and the bytes of its dead records ("d"+id), which Compact reads.
//
// # Durability
//
// Put, Delete and Batch.Commit are durable when they return nil: the records
// are fsynced, then one bbolt transaction (bbolt's own fsyncs on) makes them
// visible. Until that commit a record is invisible to Get and Query. A single
// committer goroutine takes every pending submission at once (group commit):
// one fsync per touched volume plus one index transaction serve all of them.
// When the previous group held several submissions, the committer waits up to
// Options.CommitDelay for as many to arrive; a lone writer never waits. Sync
// is a no-op. If an fsync or an index commit fails, the store refuses further
// writes (the error is sticky, see Store.Err) until it is reopened, because
// the disk is then not trusted; writes already queued behind the failed
// one fail with it, since the kernel reports a failed writeback once per
// file and a later fsync could succeed without their pages. A full disk
// (ENOSPC, EDQUOT) is the exception: the writes that meet it fail, their
// records are never indexed, and writes go on once there is room. When
// it is a volume's fsync that meets it, the writes queued with records in
// that volume fail too, and the next write starts a new volume.
//
// CommitWith lets a caller commit its own bbolt buckets with a record, and
// with deletes of other keys, as one change: its
// function runs in the index transaction of the record's group (a node's
// shard index rides along this way, for no fsync of its own).
//
// A write whose Put returned an error may or may not be stored; retrying the
// same Put is always safe. Options.NoSync drops every fsync and is for tests.
//
// # Crash recovery
//
// Open truncates every volume to the end offset of its last indexed record.
// Past that point there can only be a torn record, garbage, or complete
// records whose group never committed; none of them was acknowledged, so
// dropping them loses nothing a caller was told is stored. Sealed volumes the
// index does not know (a compaction that crashed after its index commit) are
// deleted. A volume shorter than its indexed end, or missing, makes Open
// fail with ErrCorrupt, and so do volumes holding data beside an index
// that had to be created (index.bolt lost or emptied): Open never deletes
// data it cannot account for. Only files named as the store names them
// (00000001.vol) are volumes.
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
// rewrites the live records of every sealed volume whose dead fraction is at
// least minGarbage into the active volume, through the normal group commit,
// with a compare-and-swap on the index entry so that a concurrent overwrite
// or delete wins. It then drops the volume from the index and deletes the
// file. Reads and writes continue while it runs.
//
// # Concurrency
//
// All methods are safe for concurrent use. Values passed to Put are copied
// into a record before Put returns to the caller's control; values returned
// by Get belong to the caller. Only one Compact runs at a time. ctx is checked
// before a write is queued; once queued, a write waits for its group commit.
package volume
