package index

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket names. The on-disk layout is:
//
//	entries: key -> encoded Entry (see encodeEntry)
//	byslot:  slot (2 bytes big-endian) + key -> empty
//	meta:    "schema" -> 1 byte; "stats" -> keys, tombstones, shard bytes (3 x uint64 big-endian)
//
// In a database of its own (Open) the buckets have these names; in a
// database another component owns (OpenIn) they are prefixed "index.".
type buckets struct{ entries, bySlot, meta []byte }

var (
	ownBuckets    = buckets{[]byte("entries"), []byte("byslot"), []byte("meta")}
	sharedBuckets = buckets{[]byte("index.entries"), []byte("index.byslot"), []byte("index.meta")}

	metaSchema = []byte("schema")
	metaStats  = []byte("stats")
)

const (
	// schemaVersion 5: entries of format 5 (Entry.Also and Older, shards
	// named by version and position, and where each is: Held.Loc). An
	// index of schema 1 to 4 is refused with ErrOldFormat.
	schemaVersion = 5

	defaultMaxBatchSize  = 64
	defaultMaxBatchDelay = 2 * time.Millisecond

	// lockTimeout bounds how long Open waits for another process (or another
	// open DB in this process) to release the file lock.
	lockTimeout = 5 * time.Second
)

// Options tunes a DB. The zero value (or nil) gives the defaults.
type Options struct {
	NoSync        bool          // tests only: skip fsync, so Put is not durable
	MaxBatchSize  int           // most Puts/Deletes in one group commit; <= 0 means 64. Set it near the number of concurrent writers.
	MaxBatchDelay time.Duration // longest wait for a group to fill; <= 0 means 2ms
}

// DB is a node's shard index. It is safe for concurrent use.
type DB struct {
	bolt    *bolt.DB
	b       buckets
	path    string
	shared  bool         // bolt belongs to someone else: Close leaves it open
	writers atomic.Int32 // Put and Delete calls in flight
	sums    sums
}

// Stats are counters kept up to date by every Put and Delete.
type Stats struct {
	Keys       int    // entries that are not tombstones
	Tombstones int    // entries that are tombstones
	ShardBytes uint64 // sum of ShardLen over all entries, tombstones included
}

// Open opens the index at path, creating the file and its buckets if needed.
// Every error names the path; a file that is not a valid bbolt database (or
// holds an index of an unknown schema) is an error, never a panic.
func Open(path string, opts *Options) (db *DB, err error) {
	var o Options
	if opts != nil {
		o = *opts
	}

	var bdb *bolt.DB
	// bbolt trusts the pages it reads; a crafted file can make it panic.
	defer func() {
		if p := recover(); p != nil {
			if bdb != nil {
				_ = bdb.Close()
			}
			db, err = nil, fmt.Errorf("index: open %s: %v", path, p)
		}
	}()
	bdb, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        lockTimeout,
		NoSync:         o.NoSync,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("index: open %s: %w", path, err)
	}
	db = &DB{bolt: bdb, b: ownBuckets, path: path}
	if err := db.init(o); err != nil {
		_ = bdb.Close()
		return nil, err
	}
	return db, nil
}

// OpenIn keeps the index in bdb, a database another component owns and
// closes (the volume shard store's), under bucket names of its own. A
// shard and its entry can then commit in one transaction (PutTx), which
// saves a commit and its fsyncs on every write.
func OpenIn(bdb *bolt.DB, opts *Options) (*DB, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	db := &DB{bolt: bdb, b: sharedBuckets, path: bdb.Path(), shared: true}
	if err := db.init(o); err != nil {
		return nil, err
	}
	return db, nil
}

// init creates the buckets if needed and checks the schema.
func (db *DB) init(o Options) error {
	if o.MaxBatchSize <= 0 {
		o.MaxBatchSize = defaultMaxBatchSize
	}
	if o.MaxBatchDelay <= 0 {
		o.MaxBatchDelay = defaultMaxBatchDelay
	}
	db.bolt.MaxBatchSize = o.MaxBatchSize
	db.bolt.MaxBatchDelay = o.MaxBatchDelay
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{db.b.entries, db.b.bySlot, db.b.meta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(db.b.meta)
		switch v := meta.Get(metaSchema); {
		case v == nil:
			if err := meta.Put(metaSchema, []byte{schemaVersion}); err != nil {
				return err
			}
		case len(v) == 1 && v[0] >= 1 && v[0] < schemaVersion:
			return ErrOldFormat
		case len(v) != 1 || v[0] != schemaVersion:
			return fmt.Errorf("unknown index schema %x", v)
		}
		if v := meta.Get(metaStats); v != nil && len(v) != 24 {
			return fmt.Errorf("stats record is %d bytes, want 24: %w", len(v), ErrCorrupt)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("index: open %s: %w", db.path, err)
	}
	return db.loadSums()
}

// loadSums counts the slot sums again, holding bbolt's writer lock (a
// write transaction that is rolled back) so that no commit is lost.
func (db *DB) loadSums() error {
	tx, err := db.bolt.Begin(true)
	if err != nil {
		return fmt.Errorf("index: %s: slot sums: %w", db.path, err)
	}
	defer func() { _ = tx.Rollback() }()
	db.sums.load(tx, db.b.entries)
	return nil
}

// Close releases the file. Calls in flight finish first; later calls fail.
// An index opened with OpenIn leaves the database to its owner.
func (db *DB) Close() error {
	if db.shared {
		return nil
	}
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("index: close %s: %w", db.path, err)
	}
	return nil
}

// Put stores e unless the index already holds e.Key at a version that is
// newer than or equal to e.Version, in which case it returns stored=false
// and a nil error and changes nothing. When Put returns stored=true the
// entry is fsynced (unless Options.NoSync). Concurrent Puts share one
// commit and one fsync.
//
// Put fails with ErrInvalidKey for an empty or over-long key, and with an
// error matching ErrCorrupt if the stored entry for e.Key does not decode
// (purge it with Delete first). A failed Put wrote nothing; when the error
// comes from bbolt's commit the write may or may not be on disk, and
// retrying is safe because Put is idempotent.
func (db *DB) Put(e Entry) (stored bool, err error) {
	if err := checkKey(e.Key); err != nil {
		return false, err
	}
	err = db.update(func(tx *bolt.Tx) error {
		// Batch may run this function more than once, in a fresh
		// transaction each time, so it sets stored on every run.
		var err error
		stored, err = db.putTx(tx, e)
		return err
	})
	if err != nil {
		return false, db.wrap("put", err)
	}
	return stored, nil
}

// PutMany puts every entry of es in one durable transaction (see Put).
func (db *DB) PutMany(es []Entry) error {
	for _, e := range es {
		if err := checkKey(e.Key); err != nil {
			return err
		}
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for _, e := range es {
			if _, err := db.putTx(tx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return db.wrap("put", err)
	}
	return nil
}

// Update runs fn in a durable write transaction of the index's database,
// group-committed like Put: for a change of several entries (PutTx,
// ReplaceTx, DeleteTx) that must land together. fn may run more than once.
func (db *DB) Update(fn func(*bolt.Tx) error) error {
	if err := db.update(fn); err != nil {
		return db.wrap("update", err)
	}
	return nil
}

// PutTx is Put inside tx, a write transaction on the database the index
// was opened in with OpenIn: the entry is durable when tx commits.
func (db *DB) PutTx(tx *bolt.Tx, e Entry) (stored bool, err error) {
	if err := checkKey(e.Key); err != nil {
		return false, err
	}
	stored, err = db.putTx(tx, e)
	if err != nil {
		return false, db.wrap("put", err)
	}
	return stored, nil
}

// ReplaceTx is PutTx that stores e whatever the version of the entry it
// replaces. It returns the places (Held.Loc) of the shards that entry
// held and e does not, as they are in tx: the shard store's records no
// entry names now.
func (db *DB) ReplaceTx(tx *bolt.Tx, e Entry) (gone [][16]byte, err error) {
	if err := checkKey(e.Key); err != nil {
		return nil, err
	}
	if _, gone, err = db.storeTx(tx, e, true); err != nil {
		return nil, db.wrap("replace", err)
	}
	return gone, nil
}

// Replace is ReplaceTx in a durable transaction of its own.
func (db *DB) Replace(e Entry) error {
	if err := checkKey(e.Key); err != nil {
		return err
	}
	err := db.update(func(tx *bolt.Tx) error {
		_, _, err := db.storeTx(tx, e, true)
		return err
	})
	if err != nil {
		return db.wrap("replace", err)
	}
	return nil
}

func (db *DB) putTx(tx *bolt.Tx, e Entry) (bool, error) {
	stored, _, err := db.storeTx(tx, e, false)
	return stored, err
}

// storeTx stores e unless the entry it replaces is as new or newer and
// not force, and returns the places of the shards that entry held and e
// does not.
func (db *DB) storeTx(tx *bolt.Tx, e Entry, force bool) (stored bool, placesGone [][16]byte, err error) {
	if err := e.check(); err != nil {
		return false, nil, err
	}
	key := []byte(e.Key)
	entries, bySlot := tx.Bucket(db.b.entries), tx.Bucket(db.b.bySlot)
	st, err := db.readStats(tx)
	if err != nil {
		return false, nil, err
	}
	var gone *Entry
	if old := entries.Get(key); old != nil {
		prev, err := decodeEntry(e.Key, old)
		if err != nil {
			return false, nil, err
		}
		if !force && !prev.Version.Less(e.Version) {
			return false, nil, nil
		}
		gone = &prev
		st.remove(prev)
		e, placesGone = takePlaces(e, prev)
		if prev.Slot != e.Slot {
			if err := bySlot.Delete(bySlotKey(prev.Slot, key)); err != nil {
				return false, nil, err
			}
		}
	}
	if err := entries.Put(key, encodeEntry(e)); err != nil {
		return false, nil, err
	}
	if err := bySlot.Put(bySlotKey(e.Slot, key), nil); err != nil {
		return false, nil, err
	}
	st.add(e)
	if err := db.writeStats(tx, st); err != nil {
		return false, nil, err
	}
	db.sums.change(tx, gone, &e)
	return true, placesGone, nil
}

// takePlaces returns e with the Loc of every shard it shares with prev,
// the stored entry, taken from prev: e was read before its transaction,
// and the shard store may have moved a shard since (MoveTx). Both point
// at the same shard, so prev's is never the worse. It also returns the
// places of the shards prev holds and e does not.
func takePlaces(e, prev Entry) (Entry, [][16]byte) {
	hs := e.Shards()
	var gone [][16]byte
	for _, p := range prev.all() {
		switch i := slices.IndexFunc(hs, func(h Held) bool { return h.Version == p.Version && h.Index == p.Index }); {
		case i >= 0:
			hs[i].Loc = p.Loc
		case p.Loc != [16]byte{}:
			gone = append(gone, p.Loc)
		}
	}
	e.setShards(hs)
	return e, gone
}

// MoveTx points the shard of key's entry that is at from to to instead,
// for a shard store that moved it, and reports whether the entry held a
// shard at from. Nothing else of the entry changes.
func (db *DB) MoveTx(tx *bolt.Tx, key string, from, to [16]byte) (bool, error) {
	entries := tx.Bucket(db.b.entries)
	v := entries.Get([]byte(key))
	if v == nil {
		return false, nil
	}
	e, err := decodeEntry(key, v)
	if err != nil {
		return false, db.wrap("move", err)
	}
	hs := e.Shards()
	i := slices.IndexFunc(hs, func(h Held) bool { return h.Loc == from })
	if i < 0 {
		return false, nil
	}
	hs[i].Loc = to
	e.setShards(hs)
	if err := entries.Put([]byte(key), encodeEntry(e)); err != nil {
		return false, db.wrap("move", err)
	}
	return true, nil
}

// Get returns the entry for key, or ErrNotFound. A stored value that does
// not decode gives an error matching ErrCorrupt.
func (db *DB) Get(key string) (Entry, error) {
	var e Entry
	err := db.bolt.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(db.b.entries).Get([]byte(key))
		if v == nil {
			return ErrNotFound
		}
		var err error
		e, err = decodeEntry(key, v)
		return err
	})
	if err == ErrNotFound {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, db.wrap("get", err)
	}
	return e, nil
}

// PurgeCorrupt deletes, as Delete does, every entry that does not decode,
// and returns their keys. Listings and Sums fail while such an entry is
// there; once it is gone the key reads as not held, and repair rebuilds
// it from the other shards.
func (db *DB) PurgeCorrupt() ([]string, error) {
	var bad []string
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(db.b.entries).ForEach(func(k, v []byte) error {
			if _, err := decodeEntry(string(k), v); err != nil {
				bad = append(bad, string(k))
			}
			return nil
		})
	})
	if err != nil {
		return nil, db.wrap("purge corrupt", err)
	}
	purged := bad[:0]
	for _, k := range bad {
		// Only if it is still the entry that did not decode: a put may
		// have stored a good one since, after another purge.
		gone, err := db.delete(k, true)
		if err != nil {
			return nil, err
		}
		if gone {
			purged = append(purged, k)
		}
	}
	return purged, nil
}

// Delete purges the entry for key (this is not a tombstone: Put one for
// that). Deleting a missing key is not an error. Delete is durable and
// group-committed like Put. It also purges an entry that does not decode;
// the Stats counters then lose track of that entry's contribution, except
// that Keys is decremented.
func (db *DB) Delete(key string) error {
	_, err := db.delete(key, false)
	return err
}

// delete is Delete; with onlyCorrupt it deletes only an entry that does
// not decode. It reports whether it deleted one.
func (db *DB) delete(key string, onlyCorrupt bool) (bool, error) {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return false, nil // Put never stores such a key
	}
	deleted := false
	err := db.update(func(tx *bolt.Tx) error {
		var err error
		deleted, _, err = db.deleteTx(tx, key, onlyCorrupt) // update may run this more than once
		return err
	})
	if err != nil {
		return false, db.wrap("delete", err)
	}
	return deleted, nil
}

// DeleteTx is Delete inside tx, a write transaction on the database the
// index was opened in with OpenIn: the entry is gone when tx commits. It
// returns the places of the entry's shards (Held.Loc), as ReplaceTx does.
func (db *DB) DeleteTx(tx *bolt.Tx, key string) (gone [][16]byte, err error) {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return nil, nil // Put never stores such a key
	}
	if _, gone, err = db.deleteTx(tx, key, false); err != nil {
		return nil, db.wrap("delete", err)
	}
	return gone, nil
}

// deleteTx is delete inside tx.
func (db *DB) deleteTx(tx *bolt.Tx, key string, onlyCorrupt bool) (bool, [][16]byte, error) {
	var gone [][16]byte
	k := []byte(key)
	entries, bySlot := tx.Bucket(db.b.entries), tx.Bucket(db.b.bySlot)
	old := entries.Get(k)
	if old == nil {
		return false, nil, nil
	}
	prev, err := decodeEntry(key, old)
	if err == nil && onlyCorrupt {
		return false, nil, nil
	}
	st, serr := db.readStats(tx)
	if serr != nil {
		return false, nil, serr
	}
	if err != nil {
		// The slot is unknown: look in every slot. This is slow
		// (65536 lookups) but only happens when repairing corruption.
		for s := 0; s <= math.MaxUint16; s++ {
			sk := bySlotKey(uint16(s), k)
			if bySlot.Get(sk) != nil {
				if err := bySlot.Delete(sk); err != nil {
					return false, nil, err
				}
			}
		}
		if st.Keys > 0 {
			st.Keys--
		}
		// Its group is unknown too: count every entry again.
		tx.OnCommit(func() {
			if err := db.loadSums(); err != nil {
				db.sums.mu.Lock()
				db.sums.err = err // Sums fails until the next load
				db.sums.mu.Unlock()
			}
		})
	} else {
		if err := bySlot.Delete(bySlotKey(prev.Slot, k)); err != nil {
			return false, nil, err
		}
		st.remove(prev)
		db.sums.change(tx, &prev, nil)
		for _, p := range prev.all() {
			if p.Loc != ([16]byte{}) {
				gone = append(gone, p.Loc)
			}
		}
	}
	if err := entries.Delete(k); err != nil {
		return false, nil, err
	}
	return true, gone, db.writeStats(tx, st)
}

// ListPrefix returns up to limit entries (all if limit <= 0) whose keys
// start with prefix and sort after `after` ("" means from the start), in
// byte order of their keys. Tombstones are included. The result is a
// consistent snapshot. To page, pass the last key returned as after.
func (db *DB) ListPrefix(prefix, after string, limit int) ([]Entry, error) {
	var out []Entry
	err := db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(db.b.entries).Cursor()
		p := []byte(prefix)
		var k, v []byte
		if after >= prefix {
			a := []byte(after)
			k, v = c.Seek(a)
			if k != nil && bytes.Equal(k, a) {
				k, v = c.Next()
			}
		} else {
			k, v = c.Seek(p)
		}
		for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			e, err := decodeEntry(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, db.wrap("list prefix", err)
	}
	return out, nil
}

// ListSlot returns up to limit entries (all if limit <= 0) of slot whose
// keys sort after `after` ("" means from the start), in byte order of their
// keys. Tombstones are included. The result is a consistent snapshot.
func (db *DB) ListSlot(slot uint16, after string, limit int) ([]Entry, error) {
	var out []Entry
	err := db.bolt.View(func(tx *bolt.Tx) error {
		entries := tx.Bucket(db.b.entries)
		c := tx.Bucket(db.b.bySlot).Cursor()
		start := bySlotKey(slot, []byte(after))
		k, _ := c.Seek(start)
		if k != nil && after != "" && bytes.Equal(k, start) {
			k, _ = c.Next()
		}
		for ; k != nil && len(k) >= 2 && binary.BigEndian.Uint16(k) == slot; k, _ = c.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			key := k[2:]
			v := entries.Get(key)
			if v == nil {
				continue // cannot happen: Put and Delete keep both buckets in step
			}
			e, err := decodeEntry(string(key), v)
			if err != nil {
				return err
			}
			if e.Slot != slot {
				continue // as above
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, db.wrap("list slot", err)
	}
	return out, nil
}

// Stats returns the counters. They are kept by Put and Delete in the same
// transaction as the entries, so they are exact and survive a restart.
func (db *DB) Stats() (Stats, error) {
	var st Stats
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		st, err = db.readStats(tx)
		return err
	})
	if err != nil {
		return Stats{}, db.wrap("stats", err)
	}
	return st, nil
}

// update runs fn in a durable write transaction. Concurrent callers are
// group-committed with bbolt's Batch and share one fsync. A caller with no
// company commits at once with Update instead: Batch would make it wait
// MaxBatchDelay for callers that are not coming. fn may run more than once.
func (db *DB) update(fn func(*bolt.Tx) error) error {
	n := db.writers.Add(1)
	defer db.writers.Add(-1)
	if n == 1 {
		return db.bolt.Update(fn)
	}
	return db.bolt.Batch(fn)
}

func (db *DB) wrap(op string, err error) error {
	return fmt.Errorf("index: %s %s: %w", op, db.path, err)
}

// checkKey refuses a key Put cannot store.
func checkKey(key string) error {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: length %d", ErrInvalidKey, len(key))
	}
	return nil
}

func bySlotKey(slot uint16, key []byte) []byte {
	b := make([]byte, 2+len(key))
	binary.BigEndian.PutUint16(b, slot)
	copy(b[2:], key)
	return b
}

func (db *DB) readStats(tx *bolt.Tx) (Stats, error) {
	v := tx.Bucket(db.b.meta).Get(metaStats)
	if v == nil {
		return Stats{}, nil
	}
	if len(v) != 24 {
		return Stats{}, fmt.Errorf("stats record is %d bytes, want 24: %w", len(v), ErrCorrupt)
	}
	return Stats{
		Keys:       int(binary.BigEndian.Uint64(v[0:])),
		Tombstones: int(binary.BigEndian.Uint64(v[8:])),
		ShardBytes: binary.BigEndian.Uint64(v[16:]),
	}, nil
}

func (db *DB) writeStats(tx *bolt.Tx, st Stats) error {
	v := make([]byte, 24)
	binary.BigEndian.PutUint64(v[0:], uint64(st.Keys))
	binary.BigEndian.PutUint64(v[8:], uint64(st.Tombstones))
	binary.BigEndian.PutUint64(v[16:], st.ShardBytes)
	return tx.Bucket(db.b.meta).Put(metaStats, v)
}

func (st *Stats) add(e Entry) {
	if e.Tombstone {
		st.Tombstones++
	} else {
		st.Keys++
	}
	st.ShardBytes += e.ShardBytes()
}

// remove undoes add, clamping at zero so a damaged counter cannot wrap.
func (st *Stats) remove(e Entry) {
	if e.Tombstone {
		if st.Tombstones > 0 {
			st.Tombstones--
		}
	} else if st.Keys > 0 {
		st.Keys--
	}
	if st.ShardBytes >= e.ShardBytes() {
		st.ShardBytes -= e.ShardBytes()
	} else {
		st.ShardBytes = 0
	}
}
