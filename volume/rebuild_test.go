package volume

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	bolt "go.etcd.io/bbolt"
)

// syncedSizes records, for each volume file, the size it had at its last
// fsync: what a power loss keeps of it.
type syncedSizes struct {
	mu    sync.Mutex
	sizes map[string]int64
	calls atomic.Int64 // fsyncs of volume files
}

func (s *syncedSizes) sync(f *os.File) error {
	if err := f.Sync(); err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return err
	}
	s.mu.Lock()
	s.sizes[f.Name()] = st.Size()
	s.mu.Unlock()
	s.calls.Add(1)
	return nil
}

func (s *syncedSizes) snapshot() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.sizes))
	for k, v := range s.sizes {
		out[k] = v
	}
	return out
}

// powerLoss does to dir what a power loss at the moment of synced would
// have done: every volume keeps what its last fsync made durable (a volume
// never synced is gone), and the store was left open by the boot before.
// The index file, written without fsyncs, is mangled as how says.
func powerLoss(t *testing.T, dir string, synced map[string]int64, how string) {
	t.Helper()
	ids, err := listVolumes(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		p := filepath.Join(dir, volName(id))
		size, ok := synced[p]
		if !ok {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.Truncate(p, size); err != nil {
			t.Fatal(err)
		}
	}
	idx := filepath.Join(dir, indexFile)
	if err := os.WriteFile(filepath.Join(dir, RunFile), []byte("an earlier boot"), 0o644); err != nil {
		t.Fatal(err)
	}
	switch how {
	case "index torn":
		b, err := os.ReadFile(idx)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(uint64(len(b)), 9))
		for i := 0; i < len(b); i += 4096 {
			if r.IntN(2) == 0 {
				for j := i; j < min(i+4096, len(b)); j++ {
					b[j] = byte(r.Uint32())
				}
			}
		}
		if err := os.WriteFile(idx, b, 0o600); err != nil {
			t.Fatal(err)
		}
	case "index lost":
		if err := os.Remove(idx); err != nil {
			t.Fatal(err)
		}
	case "index whole":
		// As it was at Close, but left open by an earlier boot: it may miss
		// writes, and Open cannot tell which.
	default:
		t.Fatalf("unknown damage %q", how)
	}
}

// outcome is what a key may read as after a crash: its last acknowledged
// state, or the state of the write in flight when the power went.
type outcome struct {
	acked    int // version of the last acknowledged write; 0: deleted or never written
	inflight int // version of a write not acknowledged at the crash; -1: none, 0: a delete
}

// Writers put, overwrite and delete their own keys (through Put, Delete,
// batches and CommitWith with drops), a compaction runs, and the power
// fails while they write. Open then rebuilds the index from the volumes:
// every write acknowledged before the power loss reads back as it was
// acknowledged, a key whose last acknowledged write was a delete stays
// deleted (the delete records of compacted volumes too), and a write in
// flight may or may not be there. The rebuilt store then takes writes,
// closes and reopens without another rebuild.
func TestPowerLossLosesNothingAcknowledged(t *testing.T) {
	for _, how := range []string{"index torn", "index lost", "index whole"} {
		t.Run(how, func(t *testing.T) { powerLossRun(t, how) })
	}
}

func powerLossRun(t *testing.T, how string) {
	ctx := context.Background()
	dir := t.TempDir()
	sz := &syncedSizes{sizes: map[string]int64{}}
	opts := &Options{MaxVolumeSize: 256 << 10, SyncFile: sz.sync}
	s := openT(t, dir, opts)
	const writers, keysPer, maxSize = 4, 12, 24 << 10
	key := func(w, i int) string { return fmt.Sprintf("/w%d/%02d", w, i) }

	var mu sync.Mutex
	state := map[string]*outcome{}
	var crashed atomic.Bool
	// write runs one write of version v (0: delete) of k and records it.
	write := func(r *rand.Rand, w, i, v int) error {
		k := key(w, i)
		mu.Lock()
		o := state[k]
		if o == nil {
			o = &outcome{inflight: -1}
			state[k] = o
		}
		if !crashed.Load() {
			o.inflight = v
		}
		mu.Unlock()
		var err error
		dk := ds.NewKey(k)
		switch {
		case v == 0 && r.IntN(2) == 0:
			err = s.Delete(ctx, dk)
		case v == 0:
			err = s.CommitWith(ctx, ds.Key{}, nil, []ds.Key{dk}, nil)
		case r.IntN(3) == 0:
			b, _ := s.Batch(ctx)
			if err = b.Put(ctx, dk, valueFor(k, v, maxSize)); err == nil {
				err = b.Commit(ctx)
			}
		default:
			err = s.Put(ctx, dk, valueFor(k, v, maxSize))
		}
		mu.Lock()
		if err == nil && !crashed.Load() {
			o.acked, o.inflight = v, -1
		}
		mu.Unlock()
		return err
	}

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			versions := make([]int, keysPer)
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				i := r.IntN(keysPer)
				v := 0
				if r.IntN(4) != 0 {
					versions[i]++
					v = versions[i] + 1
				}
				if err := write(r, w, i, v); err != nil && !errors.Is(err, ErrClosed) {
					t.Errorf("write %s: %v", key(w, i), err)
					return
				}
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := s.Compact(ctx, 0.3); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	// The power goes: what was fsynced now is what the disk keeps.
	mu.Lock()
	synced := sz.snapshot()
	crashed.Store(true)
	mu.Unlock()
	close(stop)
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	powerLoss(t, dir, synced, how)

	sz = &syncedSizes{sizes: map[string]int64{}}
	opts.SyncFile = sz.sync
	s = openT(t, dir, opts)
	if !s.NeedsReindex() {
		t.Fatalf("Open after a power loss did not rebuild the index")
	}
	check := func(s *Store) {
		t.Helper()
		acked, deleted := 0, 0
		for k, o := range state {
			got, err := s.Get(ctx, ds.NewKey(k))
			ok := func(v int) bool {
				if v == 0 {
					return errors.Is(err, ds.ErrNotFound)
				}
				return err == nil && string(got) == string(valueFor(k, v, maxSize))
			}
			if !ok(o.acked) && (o.inflight < 0 || !ok(o.inflight)) {
				t.Fatalf("%s: read %d bytes, err %v; last acknowledged version %d, in flight %d", k, len(got), err, o.acked, o.inflight)
			}
			if o.acked == 0 {
				deleted++
			} else {
				acked++
			}
		}
		if acked == 0 || deleted == 0 {
			t.Fatalf("the run acknowledged %d values and %d deletes, want some of each", acked, deleted)
		}
		if err := s.Check(ctx); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
	check(s)
	if err := s.ReindexDone(); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, ds.NewKey("/after"), []byte("rebuilt")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, opts)
	defer s.Close()
	if s.NeedsReindex() {
		t.Fatalf("a clean reopen rebuilt the index")
	}
	check(s)
	mustEqual(t, s, "/after", []byte("rebuilt"))
}

// A delete whose record sits in a compacted volume still hides the value an
// older volume holds, when the index is rebuilt; and a value written after
// the delete is not hidden by the delete record compaction copied forward.
func TestCompactedDeletesSurviveRebuild(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := &Options{NoSync: true, MaxVolumeSize: 64 << 10}
	s := openT(t, dir, opts)
	put := func(k string, v int) {
		t.Helper()
		if err := s.Put(ctx, ds.NewKey(k), valueFor(k, v, 1024)); err != nil {
			t.Fatal(err)
		}
	}
	filler := 0
	fill := func() { // enough to seal the active volume
		t.Helper()
		for i := 0; i < 9; i++ {
			filler++
			k := fmt.Sprintf("/fill/%04d", filler)
			if err := s.Put(ctx, ds.NewKey(k), make([]byte, 8<<10)); err != nil {
				t.Fatal(err)
			}
			if filler%3 != 0 {
				if err := s.Delete(ctx, ds.NewKey(k)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	put("/gone", 1)
	put("/back", 1)
	fill()
	for _, k := range []string{"/gone", "/back"} {
		if err := s.Delete(ctx, ds.NewKey(k)); err != nil {
			t.Fatal(err)
		}
	}
	fill()
	put("/back", 2)
	fill()
	// Compact every volume but the first, which holds the old values.
	ids, _ := listVolumes(dir)
	if len(ids) < 3 {
		t.Fatalf("%d volumes, want at least 3", len(ids))
	}
	if err := s.apply(nil, nil); err != nil {
		t.Fatal(err)
	}
	var stats []volStat
	if err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		for _, id := range ids {
			stats = append(stats, volStat{id: id, end: getU64(meta, metaKey('e', id)), low: getU64(meta, metaKey('m', id))})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, st := range stats[1 : len(stats)-1] {
		if _, err := s.compactVolume(ctx, st, stats[0].low); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	powerLoss(t, dir, sizesByPath(t, dir), "index lost")
	s = openT(t, dir, opts)
	defer s.Close()
	if !s.NeedsReindex() {
		t.Fatal("no rebuild")
	}
	mustMissing(t, s, "/gone")
	mustEqual(t, s, "/back", valueFor("/back", 2, 1024))
}

// sizesByPath is every volume's size now, by path.
func sizesByPath(t *testing.T, dir string) map[string]int64 {
	out := map[string]int64{}
	for name, size := range sizes(t, dir) {
		out[filepath.Join(dir, name)] = size
	}
	return out
}

// Writers that share commit groups cost one fsync (of the one volume
// written) and one index commit per group, and no fsync of the index.
func TestOneFsyncPerCommitGroup(t *testing.T) {
	ctx := context.Background()
	sz := &syncedSizes{sizes: map[string]int64{}}
	s := openT(t, t.TempDir(), &Options{SyncFile: sz.sync})
	defer s.Close()
	before, calls := s.Stats(), sz.calls.Load()
	const writers, each = 16, 20
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				k := fmt.Sprintf("/f/%d/%d", w, i)
				var err error
				if i%2 == 0 {
					err = s.Put(ctx, ds.NewKey(k), valueFor(k, 1, 16<<10))
				} else {
					err = s.CommitWith(ctx, ds.NewKey(k), []byte("v"), []ds.Key{ds.NewKey(fmt.Sprintf("/f/%d/%d", w, i-1))}, nil)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	st := s.Stats()
	groups := st.Groups - before.Groups
	t.Logf("%d writes in %d groups: %d volume fsyncs, %d index commits, %d index fsyncs",
		st.Writes-before.Writes, groups, st.Syncs-before.Syncs, st.IndexCommits-before.IndexCommits, st.IndexSyncs-before.IndexSyncs)
	if st.Writes-before.Writes != writers*each {
		t.Fatalf("%d writes counted, want %d", st.Writes-before.Writes, writers*each)
	}
	if groups == 0 || groups >= writers*each {
		t.Fatalf("%d groups for %d writes: none shared a commit", groups, writers*each)
	}
	if got := uint64(sz.calls.Load() - calls); got != groups || st.Syncs-before.Syncs != groups {
		t.Fatalf("%d fsyncs of volume files (%d counted) for %d groups, want one each", got, st.Syncs-before.Syncs, groups)
	}
	if got := st.IndexCommits - before.IndexCommits; got != groups {
		t.Fatalf("%d index commits for %d groups, want one each", got, groups)
	}
	if st.IndexSyncs != before.IndexSyncs || !s.DB().NoSync {
		t.Fatalf("the index was fsynced %d times by the writes (NoSync %v), want never", st.IndexSyncs-before.IndexSyncs, s.DB().NoSync)
	}
}

// A store of format 1 is refused with ErrOldFormat, and left as it was.
func TestOldFormatRefused(t *testing.T) {
	dir := t.TempDir()
	fillVolumes(t, dir, 3)
	idx := filepath.Join(dir, indexFile)
	db, err := bolt.Open(idx, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(metaFormat) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(dir, nil); !errors.Is(err, ErrOldFormat) || !strings.Contains(err.Error(), "format 1") {
		t.Fatalf("Open of a format 1 index: %v, want ErrOldFormat", err)
	}
	// Its volumes, with the index gone: the records say so too.
	ids, _ := listVolumes(dir)
	p := filepath.Join(dir, volName(ids[0]))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	copy(b, []byte("VOL1"))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(idx); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrOldFormat) {
		t.Fatalf("Open of format 1 volumes: %v, want ErrOldFormat", err)
	}
	if got := fileSize(t, p); got != int64(len(b)) {
		t.Fatalf("the refused Open changed %s: %d bytes, was %d", p, got, len(b))
	}
}

// A rebuild goes on past bytes that do not check out in a sealed volume
// (bit rot): only the record they hit is lost, not the records after it.
func TestRebuildSkipsRotInASealedVolume(t *testing.T) {
	dir := t.TempDir()
	opts := fillVolumes(t, dir, 40)
	ids, _ := listVolumes(dir)
	first := filepath.Join(dir, volName(ids[0]))
	b, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	// The second record's value: past the first record (its key is /k/000).
	hit := recordLen(len("/k/000"), len(valueFor("/k/000", 1, 8<<10))) + headerSize + 20
	b[hit] ^= 0xff
	if err := os.WriteFile(first, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, indexFile)); err != nil {
		t.Fatal(err)
	}
	s := openT(t, dir, opts)
	defer s.Close()
	lost := 0
	for i := 0; i < 40; i++ {
		k := fmt.Sprintf("/k/%03d", i)
		got, err := s.Get(context.Background(), ds.NewKey(k))
		switch {
		case errors.Is(err, ds.ErrNotFound):
			lost++
			if k != "/k/001" {
				t.Fatalf("%s lost; only /k/001, whose record the rot hit, should be", k)
			}
		case err != nil || string(got) != string(valueFor(k, 1, 8<<10)):
			t.Fatalf("%s: %d bytes, %v", k, len(got), err)
		}
	}
	if lost != 1 {
		t.Fatalf("%d keys lost, want the one the rot hit", lost)
	}
	if got := fileSize(t, first); got != int64(len(b)) {
		t.Fatalf("the sealed volume was cut from %d to %d bytes", len(b), got)
	}
}

// A batch's delete of a key no Put could store writes no record: its
// record would not check out, and a rebuild would cut the volume there.
func TestBatchDeleteOfAnImpossibleKeyWritesNoRecord(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir, &Options{NoSync: true})
	b, _ := s.Batch(ctx)
	if err := b.Delete(ctx, ds.RawKey("/"+strings.Repeat("k", MaxKeySize))); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, ds.NewKey("/after"), []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, indexFile)); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, &Options{NoSync: true})
	defer s.Close()
	mustEqual(t, s, "/after", []byte("kept"))
}
