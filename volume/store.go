package volume

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	bolt "go.etcd.io/bbolt"
)

// ErrCorrupt marks a record or index entry that fails its checks. Get never
// returns the bytes of such a record.
var ErrCorrupt = errors.New("volume: corrupt record")

// ErrClosed is returned by operations on a closed Store.
var ErrClosed = errors.New("volume: store closed")

// ErrOldFormat is returned by Open for a store an older version wrote
// (format 1: records without sequence numbers, deletes not logged; format
// 2: locations by value length).
var ErrOldFormat = errors.New("volume: written by an older go-ds-cluster (format 1 or 2); this version logs every change in the volumes and locates records by their whole length (format 3), and does not convert: move the folder aside")

var (
	_ ds.Batching            = (*Store)(nil)
	_ ds.PersistentDatastore = (*Store)(nil)
	_ ds.CheckedDatastore    = (*Store)(nil)
)

const (
	indexFile        = "index.bolt"
	volSuffix        = ".vol"
	defaultMaxVolume = 1 << 30
	maxAutoDelay     = 10 * time.Millisecond
)

var (
	bucketKeys = []byte("keys")
	bucketMeta = []byte("meta")
)

// Options configures a Store. The zero value is the production default.
type Options struct {
	NoSync        bool          // skip fsyncs; tests only
	MaxVolumeSize int64         // roll to a new volume file past this size (default 1 GiB)
	CommitDelay   time.Duration // longest a write waits for others to share its fsync (0: twice the last fsync, at most 10ms; negative: none)
	// SyncFile makes a volume file, or the store's directory, durable
	// (default (*os.File).Sync). As
	// bbolt's OpenFile option, it is for tests that inject disk failures.
	SyncFile func(*os.File) error
	// Owner, when set, keeps the table of where records are in its own
	// buckets, and the store keeps none (see Owner).
	Owner Owner
}

// An Owner keeps the store's key table itself: CommitWith tells it where
// each record went, it reads a record with GetAt, and its CommitWith
// function returns where the records it drops are. The store's own table then stays empty
// (Get, Has, GetSize and Query find nothing; Put, Delete and batches are
// refused), save after a rebuild (NeedsReindex), when it holds every live
// key until ReindexDone.
// Compaction asks the owner which records are live, and moves them.
type Owner interface {
	// Holds reports whether the owner points at key's record at at;
	// value is the record's value.
	Holds(key string, value []byte, at Loc) (bool, error)
	// Move points the owner at to instead of from, in tx, the transaction
	// that commits the record's copy, and reports whether it did: not
	// when it no longer points at from (the record was dropped since).
	Move(tx *bolt.Tx, key string, value []byte, from, to Loc) (bool, error)
}

// Validate reports options that cannot work.
func (o *Options) Validate() error {
	if o.MaxVolumeSize < 0 {
		return fmt.Errorf("volume: MaxVolumeSize %d < 0", o.MaxVolumeSize)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.MaxVolumeSize == 0 {
		o.MaxVolumeSize = defaultMaxVolume
	}
	if o.SyncFile == nil {
		o.SyncFile = (*os.File).Sync
	}
	return o
}

// Store is an append-only datastore. See the package documentation.
type Store struct {
	dir  string
	opts Options
	db   *bolt.DB

	// filesMu guards files. Readers hold it shared from index lookup to the
	// end of the pread, so compaction cannot remove a file under them.
	filesMu     sync.RWMutex
	files       map[uint32]*os.File
	filesClosed bool // Close closed them: a read finds no file because of it

	// appendMu guards the active volume, pending and the flags below.
	appendMu  sync.Mutex
	activeVol uint32
	activeOff int64
	pending   []*submission
	closed    bool
	failed    error // sticky: set when an fsync or index commit fails
	// mustRoll: the active volume failed an fsync with a full disk; the
	// next append goes to a new volume (see fence).
	mustRoll bool

	kick      chan struct{}
	quit      chan struct{}
	committed chan struct{} // closed when the committer exits

	compactMu sync.Mutex

	seq     uint64 // the last sequence number appended; guarded by appendMu
	reindex bool   // rebuilt: the owner's own buckets must be rebuilt too
	stats   counters
}

func volName(id uint32) string { return fmt.Sprintf("%08d%s", id, volSuffix) }

func metaKey(kind byte, vol uint32) []byte {
	b := make([]byte, 5)
	b[0] = kind
	binary.BigEndian.PutUint32(b[1:], vol)
	return b
}

func getU64(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putU64(b *bolt.Bucket, k []byte, v uint64) error {
	buf := make([]byte, 8)
	binary.BigEndian.PutUint64(buf, v)
	return b.Put(k, buf)
}

// Open opens or creates the store in dir and recovers from a crash: every
// volume is truncated to the end of its last indexed record, which drops torn
// records and records that were never acknowledged.
func Open(dir string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	s := &Store{
		dir:       dir,
		opts:      o,
		files:     map[uint32]*os.File{},
		kick:      make(chan struct{}, 1),
		quit:      make(chan struct{}),
		committed: make(chan struct{}),
	}
	if err := s.open(); err != nil {
		for _, f := range s.files {
			f.Close()
		}
		if s.db != nil {
			s.db.Close()
		}
		return nil, err
	}
	go s.commitLoop()
	return s, nil
}

func listVolumes(dir string) ([]uint32, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ids []uint32
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, volSuffix) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(name, volSuffix), 10, 32)
		if err != nil || n == 0 || name != volName(uint32(n)) {
			continue // not a name this store gives (1.vol is not 00000001.vol)
		}
		ids = append(ids, uint32(n))
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}

// recover opens the volumes of an index that can be trusted (the store was
// closed, or only its process stopped since) and truncates each volume to
// the end of its last indexed record.
func (s *Store) recover(ids []uint32) error {
	ends := map[uint32]uint64{}
	err := s.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		s.seq = getU64(m, metaSeq)
		return m.ForEach(func(k, v []byte) error {
			if len(k) == 5 && k[0] == 'e' && len(v) == 8 {
				ends[binary.BigEndian.Uint32(k[1:])] = binary.BigEndian.Uint64(v)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("volume: read index meta: %w", err)
	}
	if err := s.checkVolumesKnown(ids, ends); err != nil {
		return err
	}
	dirty := false
	for i, id := range ids {
		path := filepath.Join(s.dir, volName(id))
		end, known := ends[id]
		last := i == len(ids)-1
		if !known && !last {
			// No index entry ever pointed here (or compaction finished with
			// it): an unacknowledged roll or a compacted leftover.
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("volume: %w", err)
			}
			dirty = true
			continue
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0o644)
		if err != nil {
			return fmt.Errorf("volume: %w", err)
		}
		s.files[id] = f
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("volume: %w", err)
		}
		size := st.Size()
		if size < int64(end) {
			return fmt.Errorf("%w: volume %s is %d bytes, index says %d are committed", ErrCorrupt, path, size, end)
		}
		if size > int64(end) {
			// Everything past the indexed end was never acknowledged: a torn
			// record, garbage, or complete records whose group never committed.
			if err := f.Truncate(int64(end)); err != nil {
				return fmt.Errorf("volume: truncate %s: %w", path, err)
			}
			if err := s.fsync(f); err != nil {
				return fmt.Errorf("volume: %w", err)
			}
		}
		if last {
			s.activeVol, s.activeOff = id, int64(end)
		}
	}
	if len(s.files) == 0 {
		var next uint32 = 1
		if len(ids) > 0 {
			next = ids[len(ids)-1] + 1
		}
		if err := s.createVolume(next); err != nil {
			return err
		}
		dirty = false // createVolume synced the directory
	}
	if dirty {
		return s.syncDir()
	}
	return nil
}

// checkVolumesKnown refuses to open what recover would otherwise misread:
// a volume the index has committed records in whose file is missing.
func (s *Store) checkVolumesKnown(ids []uint32, ends map[uint32]uint64) error {
	present := make(map[uint32]bool, len(ids))
	for _, id := range ids {
		present[id] = true
	}
	for id, end := range ends {
		if !present[id] && end > 0 {
			return fmt.Errorf("%w: volume %s is missing, index says %d bytes are committed in it",
				ErrCorrupt, filepath.Join(s.dir, volName(id)), end)
		}
	}
	return nil
}

func (s *Store) fsync(f *os.File) error {
	if s.opts.NoSync {
		return nil
	}
	return s.opts.SyncFile(f)
}

// Err reports why the store takes no more writes, or nil while it does. A
// failed fsync or index commit stops all writes until the store is opened
// again: after a failed fsync the kernel may have dropped the dirty pages,
// so nothing written since the last good commit is known to be on disk
// (what was acknowledged before is). A full disk does not (see isNoSpace).
// A closed store gives ErrClosed.
func (s *Store) Err() error {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.failed
}

func (s *Store) syncDir() error {
	if s.opts.NoSync {
		return nil
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("volume: %w", err)
	}
	defer d.Close()
	if err := s.opts.SyncFile(d); err != nil {
		return fmt.Errorf("volume: %w: %w", errSyncDir, err)
	}
	return nil
}

// errSyncDir marks a failed fsync of the store's directory.
var errSyncDir = errors.New("sync dir")

// createVolume creates volume id, makes it the active one and syncs the
// directory so that the file outlives a crash before any index entry points
// into it. Callers hold appendMu (or are in Open).
func (s *Store) createVolume(id uint32) error {
	f, err := os.OpenFile(filepath.Join(s.dir, volName(id)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("volume: create volume: %w", err)
	}
	if err := s.syncDir(); err != nil {
		f.Close()
		_ = os.Remove(f.Name()) // so that the next roll can create it again
		return err
	}
	s.filesMu.Lock()
	s.files[id] = f
	s.filesMu.Unlock()
	s.activeVol, s.activeOff = id, 0
	return nil
}

// lookup returns the location of key in the index.
func (s *Store) lookup(key string) (loc, bool, error) {
	var l loc
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketKeys).Get([]byte(key))
		if v == nil {
			return nil
		}
		found = true
		var err error
		l, err = decodeLoc(v)
		return err
	})
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return l, false, ErrClosed
	}
	return l, found, err
}

// fileOf returns volume vol's open file: ErrClosed once Close closed the
// files, ErrCorrupt when the index points at a volume the store lacks.
// Callers hold filesMu shared.
func (s *Store) fileOf(vol uint32) (*os.File, error) {
	if f := s.files[vol]; f != nil {
		return f, nil
	}
	if s.filesClosed {
		return nil, ErrClosed
	}
	return nil, fmt.Errorf("%w: index points to missing volume %d", ErrCorrupt, vol)
}

// readRecord reads the whole record at l. Callers hold filesMu shared.
func (s *Store) readRecord(key string, l loc, buf []byte) ([]byte, error) {
	f, err := s.fileOf(l.vol)
	if err != nil {
		return nil, err
	}
	n := int64(l.size)
	rec := buf[:0]
	if int64(cap(rec)) < n {
		rec = make([]byte, n)
	}
	rec = rec[:n]
	if _, err := f.ReadAt(rec, l.off); err != nil {
		return nil, fmt.Errorf("volume: read %s at %d: %w", volName(l.vol), l.off, err)
	}
	return rec, nil
}

// Get returns the value stored under key, or ds.ErrNotFound.
func (s *Store) Get(ctx context.Context, key ds.Key) ([]byte, error) {
	v, _, err := s.GetInto(ctx, key, nil)
	return v, err
}

// GetInto is Get with the record read into buf, grown as needed: the value
// aliases the returned buffer, which the caller may reuse once done with
// the value. It returns the buffer even on error.
func (s *Store) GetInto(ctx context.Context, key ds.Key, buf []byte) (value, grown []byte, err error) {
	return s.getInto(key.String(), buf)
}

// getInto is GetInto for the key string k, which Query takes from the
// index as it is: ds.RawKey would panic on one that was not made a key.
func (s *Store) getInto(k string, buf []byte) (value, grown []byte, err error) {
	s.filesMu.RLock()
	defer s.filesMu.RUnlock()
	l, ok, err := s.lookup(k)
	if err != nil {
		return nil, buf, err
	}
	if !ok {
		return nil, buf, ds.ErrNotFound
	}
	return s.readAt(k, l, buf)
}

// readAt reads and checks k's record at l. Callers hold filesMu shared.
func (s *Store) readAt(k string, l loc, buf []byte) (value, grown []byte, err error) {
	rec, err := s.readRecord(k, l, buf)
	if err != nil {
		return nil, buf, err
	}
	v, err := decodeRecord(rec, k)
	if err != nil {
		return nil, rec, fmt.Errorf("volume: get %s in %s at %d: %w", k, volName(l.vol), l.off, err)
	}
	return v, rec, nil
}

// GetAt is GetInto for an Owner, which knows where key's record is: at.
// A record that compaction moved, once its volume is gone, is not found:
// the owner's table points elsewhere by then.
func (s *Store) GetAt(key ds.Key, at Loc, buf []byte) (value, grown []byte, err error) {
	l, err := decodeLoc(at[:])
	if err != nil {
		return nil, buf, err
	}
	s.filesMu.RLock()
	defer s.filesMu.RUnlock()
	if s.files[l.vol] == nil && !s.filesClosed {
		return nil, buf, ds.ErrNotFound
	}
	return s.readAt(key.String(), l, buf)
}

// Locate returns where key's record is in the store's own table: for an
// Owner that builds its table again after a rebuild (NeedsReindex).
func (s *Store) Locate(key ds.Key) (Loc, bool, error) {
	l, ok, err := s.lookup(key.String())
	return l.pack(), ok, err
}

// Owner is Options.Owner.
func (s *Store) Owner() Owner { return s.opts.Owner }

// Has reports whether key is in the index. It does not read the volume.
func (s *Store) Has(ctx context.Context, key ds.Key) (bool, error) {
	_, ok, err := s.lookup(key.String())
	return ok, err
}

// GetSize returns the value size recorded in the index, or ds.ErrNotFound.
func (s *Store) GetSize(ctx context.Context, key ds.Key) (int, error) {
	l, ok, err := s.lookup(key.String())
	if err != nil {
		return -1, err
	}
	if !ok {
		return -1, ds.ErrNotFound
	}
	return l.valueLen(key.String()), nil
}

// Put stores value under key. It returns once the record is fsynced and
// its index entry committed. The store does not keep value.
func (s *Store) Put(ctx context.Context, key ds.Key, value []byte) error {
	if err := checkSizes(key.String(), len(value)); err != nil {
		return err // the zero key too, which CommitWith takes for no record
	}
	return s.CommitWith(ctx, key, value, nil, nil)
}

// CommitWith stores value under key (when key is not the empty key),
// deletes the keys in drop (missing ones are no error), and runs also,
// with where the record went (the zero Loc when there is none), in the
// write transaction of the store's database (DB) that makes it all
// visible, as one atomic change in one group commit: a caller's own index
// commits with the records and costs no fsync of its own. An Owner's also
// returns where the records it no longer points at are (those it drops):
// their bytes count dead. If also fails, nothing of the change is applied,
// CommitWith returns its error, the record is dead space, and the other
// writes of the group commit without it. also may run more than once,
// each time in a new transaction.
func (s *Store) CommitWith(ctx context.Context, key ds.Key, value []byte, drop []ds.Key, also func(*bolt.Tx, Loc) ([]Loc, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.opts.Owner != nil && also == nil {
		return errOwned
	}
	ops := make([]op, 0, 1+len(drop))
	if key != (ds.Key{}) {
		k := key.String()
		if err := checkSizes(k, len(value)); err != nil {
			return err
		}
		ops = append(ops, newOp(opPut, k, value))
	}
	for _, d := range drop {
		ops = append(ops, newOp(opDelete, d.String(), nil))
	}
	return s.apply(ops, also)
}

// errOwned refuses a write no owner's table would point at.
var errOwned = errors.New("volume: an Owner keeps this store's table: write with CommitWith and a function that records where the record goes")

// DB is the store's bbolt database, for an index that commits with the
// records (CommitWith). It keeps its own buckets; the store closes the DB.
func (s *Store) DB() *bolt.DB { return s.db }

func checkSizes(k string, n int) error {
	if k == "" {
		// The zero ds.Key: bbolt refuses an empty key, and a failed index
		// commit stops the store.
		return errors.New("volume: empty key")
	}
	if len(k) > MaxKeySize {
		return fmt.Errorf("volume: key of %d bytes exceeds %d", len(k), MaxKeySize)
	}
	if n > MaxValueSize {
		return fmt.Errorf("volume: value of %d bytes exceeds %d", n, MaxValueSize)
	}
	return nil
}

// Delete removes key. Deleting a missing key is not an error. The removal is
// durable when Delete returns.
func (s *Store) Delete(ctx context.Context, key ds.Key) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.opts.Owner != nil {
		return errOwned
	}
	k := key.String()
	if _, ok, err := s.lookup(k); err != nil || !ok {
		return err
	}
	return s.apply([]op{newOp(opDelete, k, nil)}, nil)
}

// Sync is a no-op: every write is durable when it returns.
func (s *Store) Sync(ctx context.Context, prefix ds.Key) error { return nil }

// DiskUsage returns the bytes held by volume files (not the index).
func (s *Store) DiskUsage(ctx context.Context) (uint64, error) {
	s.filesMu.RLock()
	defer s.filesMu.RUnlock()
	var n uint64
	for _, f := range s.files {
		st, err := f.Stat()
		if err != nil {
			return 0, fmt.Errorf("volume: %w", err)
		}
		n += uint64(st.Size())
	}
	return n, nil
}

// Check verifies that every index entry points at a record header with the
// right magic, lengths and key. It does not read values or checksums.
func (s *Store) Check(ctx context.Context) error {
	var bad []error
	err := s.scan(ctx, nil, func(k string, l loc) bool {
		err := s.checkHeader(k, l)
		if err != nil && !errors.Is(err, ErrClosed) {
			// Compaction may have moved the record (and removed its
			// volume) since this page of the index was read.
			if now, ok, lerr := s.lookup(k); lerr == nil && !ok {
				err = nil
			} else if lerr == nil && now != l {
				err = s.checkHeader(k, now)
			}
		}
		if err != nil {
			bad = append(bad, fmt.Errorf("key %s: %w", k, err))
		}
		return len(bad) < 100 && !errors.Is(err, ErrClosed)
	})
	if err != nil {
		return err
	}
	return errors.Join(bad...)
}

func (s *Store) checkHeader(k string, l loc) error {
	s.filesMu.RLock()
	defer s.filesMu.RUnlock()
	f, err := s.fileOf(l.vol)
	if err != nil {
		return err
	}
	h := make([]byte, headerSize+len(k))
	if _, err := f.ReadAt(h, l.off); err != nil {
		return fmt.Errorf("%w: read header: %v", ErrCorrupt, err)
	}
	hd, err := parseHeader(h)
	if err != nil {
		return err
	}
	kl, vl := hd.keyLen, hd.valLen
	if hd.kind != kindPut || kl != len(k) || recordLen(kl, vl) != int64(l.size) || string(h[headerSize:]) != k {
		return fmt.Errorf("%w: header does not match index", ErrCorrupt)
	}
	if st, err := f.Stat(); err != nil || st.Size() < l.off+recordLen(kl, vl) {
		return fmt.Errorf("%w: record runs past end of volume", ErrCorrupt)
	}
	return nil
}

// Close commits pending writes, stops the committer and closes all files.
func (s *Store) Close() error {
	s.appendMu.Lock()
	if s.closed {
		s.appendMu.Unlock()
		return nil
	}
	s.closed = true
	s.appendMu.Unlock()
	close(s.quit)
	<-s.committed
	s.compactMu.Lock() // wait for a running Compact
	defer s.compactMu.Unlock()
	var errs []error
	if err := s.setRun(false); err != nil {
		errs = append(errs, err)
	}
	s.filesMu.Lock()
	s.filesClosed = true
	for id, f := range s.files {
		if err := f.Close(); err != nil {
			errs = append(errs, err)
		}
		delete(s.files, id)
	}
	s.filesMu.Unlock()
	if err := s.db.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
