// Package coding turns one value into the shards that go-ds-cluster stores
// on different nodes, and turns any k valid shards back into the value.
//
// It is pure: it does no I/O, starts no goroutines of its own (Reed-Solomon
// may use a few inside a call), keeps no state beyond a cache of encoders,
// and logs nothing. It imports only the standard library,
// github.com/klauspost/reedsolomon and github.com/cespare/xxhash/v2.
//
// # Policies
//
// A Policy is either erasure coding, k data + m parity shards ("4+2"), or
// replication, r whole copies ("r3", stored as k=1, m=r-1). Either way any k
// of the Width() = k+m shards rebuild the value, so m shards may be lost.
// Width is at most 255 (MaxWidth): the shard index is one byte.
//
// # Shards
//
// A shard is a Header followed by ShardLen(policy, valueLen) data bytes:
// ceil(valueLen/k) for erasure (the last data shard is zero padded, parity
// shards have the same length), valueLen for a replica, none for an empty
// value or a tombstone. Data shards come first (index 0..k-1), so when they
// are all valid Decode concatenates them and never runs Reed-Solomon.
//
// Every header field is covered by a checksum of the header bytes, so a
// flipped bit anywhere in a shard is caught: in the header by the header
// checksum, in the data by ShardSum. Decode then checks what no single shard
// can: that the k shards it used belong to one write (same key, policy,
// version, length and value checksum, each at its own index) and that the
// rebuilt value matches ValueSum. Reed-Solomon itself verifies nothing.
//
// # Header layout (FormatVersion 1, big endian)
//
//	offset  size  field
//	0       4     magic "DSCS"
//	4       1     format (1)
//	5       1     policy kind (1 erasure, 2 replica)
//	6       1     data shards k
//	7       1     parity shards m
//	8       1     shard index
//	9       1     flags: bit 0 tombstone; other bits must be 0
//	10      2     key length L (at most MaxKeyLen = 8192)
//	12      8     value length (at most math.MaxInt)
//	20      8     value checksum (Checksum of the whole value)
//	28      8     shard checksum (Checksum of this shard's data)
//	36      8     version HLC
//	44      8     version writer
//	52      L     key
//	52+L    8     header checksum (Checksum of bytes [0, 52+L))
//
// The header is 60+L bytes (HeaderSize). The shard's data follows directly;
// its length is not stored, it follows from the policy and value length.
//
// # Versions
//
// Each write carries a Version: a hybrid logical clock value (physical
// milliseconds << 16 | a logical counter) and the writer's id as tie
// breaker. Clock issues strictly increasing versions even when the wall
// clock stalls or steps back; Observe keeps a writer ahead of versions it
// has seen. The newest version with k valid shards wins.
//
// # Ownership and concurrency
//
//   - Encode only reads value; the caller keeps it. The shards' Data alias
//     one buffer Encode allocated (replica shards share the same bytes):
//     treat them as read-only.
//   - ParseShard's Data aliases its input: do not modify that buffer while
//     the shard is in use. DecodeHeader retains nothing.
//   - Decode never modifies the shards; it returns a freshly allocated value
//     that the caller owns.
//   - All functions are safe for concurrent use. A Clock is safe for
//     concurrent use; a Shard or Header value is not synchronised.
//
// # Errors
//
// Sentinels are matched with errors.Is: ErrCorrupt (bad bytes, a shard that
// fails its checksum, a rebuilt value that fails its checksum: the repair
// worker rebuilds such a shard), ErrTooFewShards (matched by
// *TooFewShardsError, which says how many valid shards were found and how
// many are needed), ErrBadPolicy, ErrKeyTooLong, and ErrTombstone (Decode
// found k valid shards of a delete marker; not a failure). Nothing here
// panics on any input; the fuzz tests FuzzDecodeHeader and FuzzParseShard,
// whose seed corpora are in testdata/fuzz, check that.
//
// # Why xxhash64
//
// Checksum is XXH64 (github.com/cespare/xxhash/v2, seed 0). Candidates were
// xxhash64, CRC-32C (hash/crc32, Castagnoli, SSE4.2) and SHA-256 (SHA-NI);
// see BenchmarkChecksum_256K and BenchmarkChecksum_64K. On the quiet
// development machine (PERF-LIMITS.md, 256 KiB) they run at 9.1, 5.9 and
// 1.1 GB/s. Under load (2 cores, load average 6) this package's benchmarks
// put xxhash64 and CRC-32C each ahead in some runs (7 to 20 GB/s, both far
// faster than Reed-Solomon and the network), and SHA-256 at 0.6 to 1.2 GB/s,
// too slow for two passes over every block. Speed alone does not separate
// the first two; width does. The value checksum is the last check before a
// Get returns bytes (a rebuilt value that is wrong by accident passes a
// 32-bit check once in 4 billion times, a 64-bit check once in 2^64), and
// the header has 64-bit fields for it. SHA-256 would also resist deliberate
// collisions, but shards come only from authenticated cluster members, so
// that is not needed here.
package coding
