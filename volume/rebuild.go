package volume

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	logging "github.com/ipfs/go-log/v2"
	bolt "go.etcd.io/bbolt"
)

var log = logging.Logger("volume")

// The store's own keys in the meta bucket, beside each volume's "e", "d"
// and "m" keys (end, dead bytes, lowest sequence number).
var (
	metaFormat  = []byte("format")  // formatVersion
	metaSeq     = []byte("seq")     // the highest sequence number appended
	metaReindex = []byte("reindex") // rebuilt: the owner's buckets are not yet
	metaOwner   = []byte("owner")   // an Owner keeps the key table
)

// ErrOwner is returned by Open for a store made with an Owner and opened
// without one, or the other way round.
var ErrOwner = errors.New("volume: the store keeps its key table elsewhere than this opening says (Options.Owner); a node's store made by an older go-ds-cluster keeps its own, and this version does not convert it: move the folder aside")

// RunFile, in a store's directory, holds the boot ID of the process that
// has the store open; Close removes it once the index is fsynced. A store
// whose RunFile names another boot is rebuilt at Open: a fault injector
// may write one to stage an operating system crash. It lives outside the index, which
// must not even be opened when it may be torn: bbolt can panic on a torn
// file in a goroutine of its own.
const RunFile = "running"

// formatVersion 3: records carry a kind and a sequence number, and deletes
// are logged, so that the volumes alone rebuild the index; a location
// holds its record's whole length (format 2: its value's).
const formatVersion = 3

// bootID names the running boot of the operating system. An index that a
// process of another boot left open may have lost writes that bbolt never
// fsynced. Without a boot ID, every store not closed is rebuilt.
var bootID = func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// open opens the index, and the volumes through recover when the index can
// be trusted, or rebuilds the index from them when it cannot: it does not
// open, it is new beside volumes that hold data, or the store was left open
// by a process of an earlier boot (an operating system crash or power loss
// may have torn the index file, which bbolt writes without fsyncs).
func (s *Store) open() error {
	ids, err := listVolumes(s.dir)
	if err != nil {
		return fmt.Errorf("volume: %w", err)
	}
	var why string
	if run, err := os.ReadFile(filepath.Join(s.dir, RunFile)); err == nil && (len(run) == 0 || string(run) != bootID()) {
		why = "the store was not closed and the machine restarted since, so index writes may be lost"
	} else if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("volume: %w", err)
	}
	if why == "" {
		path := filepath.Join(s.dir, indexFile)
		db, err := openDB(path)
		switch {
		case errors.Is(err, bolt.ErrTimeout):
			return fmt.Errorf("volume: open index %s: %w", path, err)
		case err != nil:
			why = fmt.Sprintf("the index does not open (%v)", err)
		default:
			s.db = db
			if why, err = s.distrust(ids); err != nil {
				return err
			}
		}
	}
	if why != "" {
		err = s.rebuild(ids, why)
	} else {
		err = s.recover(ids)
	}
	if err != nil {
		return err
	}
	return s.setRun(true)
}

// openDB opens the index file. bbolt never fsyncs it on its own: the
// volumes are the write-ahead log (see commitGroup). bbolt trusts the pages
// it reads, and a torn file can make it panic: that is an error here.
func openDB(path string) (db *bolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("bbolt: %v", p)
		}
	}()
	return bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        10 * time.Second,
		NoSync:         true,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
}

// distrust says why the open index must be rebuilt, or "" when it can be
// trusted. A new index beside no data is made a store's.
func (s *Store) distrust(ids []uint32) (why string, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			if hasData(s.dir, ids) {
				why = "the index is new or emptied, beside volumes that hold data"
				return nil
			}
			if err := createBuckets(tx); err != nil {
				return err
			}
			return s.markOwner(tx.Bucket(bucketMeta))
		}
		if v := meta.Get(metaFormat); len(v) != 1 || v[0] != formatVersion {
			return ErrOldFormat
		}
		if (meta.Get(metaOwner) != nil) != (s.opts.Owner != nil) {
			return ErrOwner
		}
		s.reindex = meta.Get(metaReindex) != nil
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("volume: %s: %w", filepath.Join(s.dir, indexFile), err)
	}
	return why, nil
}

func hasData(dir string, ids []uint32) bool {
	for _, id := range ids {
		if st, err := os.Stat(filepath.Join(dir, volName(id))); err == nil && st.Size() > 0 {
			return true
		}
	}
	return false
}

// markOwner records in meta that an Owner keeps the key table, if one does.
func (s *Store) markOwner(meta *bolt.Bucket) error {
	if s.opts.Owner == nil {
		return nil
	}
	return meta.Put(metaOwner, []byte{1})
}

func createBuckets(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(bucketKeys); err != nil {
		return err
	}
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	return meta.Put(metaFormat, []byte{formatVersion})
}

// setRun records that this boot has the store open (RunFile), or (open
// false) fsyncs the index and removes the record: after a clean close
// nothing is rebuilt.
func (s *Store) setRun(open bool) error {
	path := filepath.Join(s.dir, RunFile)
	var err error
	if open {
		err = writeSynced(path, []byte(bootID()), !s.opts.NoSync)
	} else if err = s.syncIndex(); err == nil {
		err = os.Remove(path)
	}
	if err == nil {
		err = s.syncDir()
	}
	if err != nil {
		return fmt.Errorf("volume: mark the store open or closed: %w", err)
	}
	return nil
}

// writeSynced writes b to a new file at path, fsynced when sync.
func writeSynced(path string, b []byte, sync bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncIndex fsyncs the index file.
func (s *Store) syncIndex() error {
	if s.opts.NoSync {
		return nil
	}
	s.stats.indexSyncs.Add(1)
	return s.db.Sync()
}

// NeedsReindex reports that Open rebuilt the index from the volumes, and
// that buckets an owner keeps in DB beside the store's (CommitWith) may
// have lost changes: the owner rebuilds them from the values, then calls
// ReindexDone. It stays true across reopens until then.
func (s *Store) NeedsReindex() bool { return s.reindex }

// ReindexDone records that the owner's buckets are whole again. An Owner's
// store then empties its own key table.
func (s *Store) ReindexDone() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if s.opts.Owner != nil {
			if err := tx.DeleteBucket(bucketKeys); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(bucketKeys); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Delete(metaReindex)
	})
	if err == nil {
		err = s.syncIndex()
	}
	if err != nil {
		return fmt.Errorf("volume: %w", err)
	}
	s.reindex = false
	return nil
}

// rebuilt is what a rebuild learns of one key: its newest record.
type rebuilt struct {
	seq  uint64
	at   loc
	kind uint8
}

// rebuild makes a new index from the volumes, in a file of its own that
// then replaces index.bolt (kept as index.bolt.bad): of each key's records,
// the one with the highest sequence number holds its state (a delete
// record: none). The active volume is read up to its first record that
// does not check out and cut there (a torn tail); a sealed volume is read
// past such bytes, from the next record that checks out (nextRecord).
func (s *Store) rebuild(ids []uint32, why string) error {
	log.Warnw("rebuilding the index from the volumes", "dir", s.dir, "why", why, "volumes", len(ids))
	start := time.Now()
	if s.db != nil {
		s.db.Close()
		s.db = nil
	}
	path := filepath.Join(s.dir, indexFile)
	if err := os.Rename(path, path+".bad"); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("volume: %w", err)
	}
	best := map[string]rebuilt{}
	ends, dead, low := map[uint32]int64{}, map[uint32]uint64{}, map[uint32]uint64{}
	var high uint64
	for _, id := range ids {
		p := filepath.Join(s.dir, volName(id))
		f, err := os.OpenFile(p, os.O_RDWR, 0o644)
		if err != nil {
			return fmt.Errorf("volume: %w", err)
		}
		s.files[id] = f
		sealed := id != ids[len(ids)-1]
		scan := func(off int64, rec []byte, h header) error {
			size := uint64(len(rec))
			if l, ok := low[id]; !ok || h.seq < l {
				low[id] = h.seq
			}
			high = max(high, h.seq)
			at := loc{vol: id, off: off, size: uint32(recordLen(h.keyLen, h.valLen))}
			key := string(recordKey(rec, h))
			old, seen := best[key]
			switch {
			case seen && old.seq > h.seq:
				dead[id] += size // an older record, met after a newer one (a compaction's copy)
				return nil
			case seen:
				dead[old.at.vol] += uint64(old.at.size)
			}
			best[key] = rebuilt{seq: h.seq, at: at, kind: h.kind}
			return nil
		}
		end, err := scanVolume(f, 0, scan)
		// In a sealed volume, records may follow bytes that do not check
		// out (bit rot): go on from the next one. The active volume's
		// first bad record is its torn tail.
		for err == nil && sealed {
			next, ok := nextRecord(f, end+1)
			if !ok {
				break
			}
			log.Warnw("rebuild: skipped bytes that do not check out in a sealed volume", "file", p, "at", end, "bytes", next-end)
			dead[id] += uint64(next - end)
			end, err = scanVolume(f, next, scan)
		}
		if err != nil {
			return fmt.Errorf("volume: rebuild from %s: %w", p, err)
		}
		if err := cutAt(f, end); err != nil {
			return err
		}
		ends[id] = end
	}
	keys := make([]string, 0, len(best))
	for k, r := range best {
		if r.kind == kindPut {
			keys = append(keys, k)
		} else {
			dead[r.at.vol] += uint64(recordLen(len(k), 0))
		}
	}
	slices.Sort(keys)
	tmp := path + ".rebuild"
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("volume: %w", err)
	}
	db, err := openDB(tmp)
	if err != nil {
		return fmt.Errorf("volume: rebuild: %w", err)
	}
	err = writeRebuilt(db, keys, best, func(meta *bolt.Bucket) error {
		if err := meta.Put(metaReindex, []byte{1}); err != nil {
			return err
		}
		if err := s.markOwner(meta); err != nil {
			return err
		}
		return writeVolumeMeta(meta, ends, dead, low, high)
	})
	if err == nil && !s.opts.NoSync {
		err = db.Sync()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = s.syncDir()
	}
	if err != nil {
		return fmt.Errorf("volume: rebuild: %w", err)
	}
	if s.db, err = openDB(path); err != nil {
		return fmt.Errorf("volume: open rebuilt index: %w", err)
	}
	s.seq, s.reindex = high, true
	if len(ids) == 0 {
		return s.createVolume(1)
	}
	s.activeVol, s.activeOff = ids[len(ids)-1], ends[ids[len(ids)-1]]
	log.Warnw("index rebuilt", "dir", s.dir, "keys", len(keys), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// writeRebuilt writes keys' locations in transactions of bounded size, and
// then meta's last, with the format: a rebuild stopped before has no format
// and is never taken for a whole index.
func writeRebuilt(db *bolt.DB, keys []string, best map[string]rebuilt, meta func(*bolt.Bucket) error) error {
	const perTx = 10000
	for i := 0; i < len(keys) || i == 0; i += perTx {
		chunk := keys[i:min(i+perTx, len(keys))]
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketKeys)
			if err != nil {
				return err
			}
			for _, k := range chunk {
				if err := b.Put([]byte(k), best[k].at.encode()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return db.Update(func(tx *bolt.Tx) error {
		if err := createBuckets(tx); err != nil {
			return err
		}
		return meta(tx.Bucket(bucketMeta))
	})
}

// cutAt truncates f to end when it holds more: what lies past the last
// record that checks out.
func cutAt(f *os.File, end int64) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("volume: %w", err)
	}
	if st.Size() <= end {
		return nil
	}
	log.Warnw("cutting a volume after its last whole record", "file", f.Name(), "size", st.Size(), "end", end)
	if err := f.Truncate(end); err != nil {
		return fmt.Errorf("volume: truncate %s: %w", f.Name(), err)
	}
	return f.Sync()
}

// scanVolume reads f's records in order from offset from and calls fn with
// each whole one (rec is reused after fn returns). It returns the end of
// the last: the scan stops at the first record that is short or does not
// check out. A record of format 1 is ErrOldFormat.
func scanVolume(f *os.File, from int64, fn func(off int64, rec []byte, h header) error) (int64, error) {
	r := bufio.NewReaderSize(io.NewSectionReader(f, from, math.MaxInt64-from), 1<<20)
	off := from
	buf := make([]byte, 64<<10)
	for {
		if _, err := io.ReadFull(r, buf[:headerSize]); err != nil {
			return off, nil
		}
		h, err := parseHeader(buf[:headerSize])
		if errors.Is(err, ErrOldFormat) {
			return off, err
		}
		if err != nil {
			return off, nil
		}
		n := recordLen(h.keyLen, h.valLen)
		if int64(len(buf)) < n {
			buf = append(buf[:headerSize], make([]byte, n-headerSize)...)
		}
		rec := buf[:n]
		if _, err := io.ReadFull(r, rec[headerSize:]); err != nil {
			return off, nil
		}
		if _, err := checkRecord(rec); err != nil {
			return off, nil
		}
		if err := fn(off, rec, h); err != nil {
			return off, err
		}
		off += n
	}
}

// nextRecord finds the first offset at or after from where a whole record
// checks out, past bytes that do not (bit rot in a sealed volume): records
// begin with a magic and a header checksum, then end with a checksum of
// their key and value, so a false start is not taken for one.
func nextRecord(f *os.File, from int64) (int64, bool) {
	magic := binary.LittleEndian.AppendUint32(nil, recordMagic)
	chunk := make([]byte, 1<<20)
	for {
		n, err := f.ReadAt(chunk, from)
		if n < headerSize {
			return 0, false
		}
		for i := 0; ; {
			j := bytes.Index(chunk[i:n], magic)
			if j < 0 {
				break
			}
			off := from + int64(i+j)
			if recordAt(f, off) {
				return off, true
			}
			i += j + 1
		}
		if err != nil {
			return 0, false
		}
		from += int64(n - len(magic) + 1)
	}
}

// recordAt reports whether a whole record that checks out starts at off.
func recordAt(f *os.File, off int64) bool {
	hb := make([]byte, headerSize)
	if _, err := f.ReadAt(hb, off); err != nil {
		return false
	}
	h, err := parseHeader(hb)
	if err != nil {
		return false
	}
	rec := make([]byte, recordLen(h.keyLen, h.valLen))
	if _, err := f.ReadAt(rec, off); err != nil {
		return false
	}
	_, err = checkRecord(rec)
	return err == nil
}

// counters are the store's Stats, counted as it goes.
type counters struct {
	groups, writes, syncs, syncNanos, indexCommits, indexSyncs atomic.Uint64
}

// Stats count the store's commits since it opened: how many writes shared
// each fsync.
type Stats struct {
	Groups       uint64        // commit groups committed
	Writes       uint64        // writes in them (Put, Delete, CommitWith, a batch's Commit)
	Syncs        uint64        // fsyncs of volume files for them
	SyncTime     time.Duration // time spent in those fsyncs
	IndexCommits uint64        // index transactions that made them visible
	IndexSyncs   uint64        // fsyncs of the index file (open, close, ReindexDone)
}

// Garbage is the bytes of dead records in the volumes (overwritten or
// deleted values, delete records, failed writes): what compaction can give
// back.
func (s *Store) Garbage() (uint64, error) {
	var dead uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).ForEach(func(k, v []byte) error {
			if len(k) == 5 && k[0] == 'd' && len(v) == 8 {
				dead += binary.BigEndian.Uint64(v)
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("volume: %w", err)
	}
	return dead, nil
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	c := &s.stats
	return Stats{
		Groups: c.groups.Load(), Writes: c.writes.Load(), Syncs: c.syncs.Load(),
		SyncTime: time.Duration(c.syncNanos.Load()), IndexCommits: c.indexCommits.Load(), IndexSyncs: c.indexSyncs.Load(),
	}
}
