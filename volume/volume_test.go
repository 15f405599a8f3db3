package volume

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cespare/xxhash/v2"
	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	dstest "github.com/ipfs/go-datastore/test"
)

// valueFor derives a value from key and a version, so a checker can
// recompute what any acknowledged write stored.
func valueFor(key string, version, maxSize int) []byte {
	seed := xxhash.Sum64String(key)
	r := rand.New(rand.NewPCG(seed, uint64(version)))
	v := make([]byte, r.IntN(maxSize+1)+8)
	for i := 0; i+8 <= len(v); i += 8 {
		binary.LittleEndian.PutUint64(v[i:], r.Uint64())
	}
	return v[:len(v)-8]
}

func openT(t testing.TB, dir string, o *Options) *Store {
	t.Helper()
	s, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

func mustEqual(t testing.TB, s *Store, key string, want []byte) {
	t.Helper()
	got, err := s.Get(context.Background(), ds.NewKey(key))
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%s): got %d bytes, want %d bytes (or contents differ)", key, len(got), len(want))
	}
}

func mustMissing(t testing.TB, s *Store, key string) {
	t.Helper()
	if _, err := s.Get(context.Background(), ds.NewKey(key)); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("Get(%s) of a deleted key: err %v, want ds.ErrNotFound", key, err)
	}
}

func activeVolumePath(t testing.TB, dir string) string {
	t.Helper()
	ids, err := listVolumes(dir)
	if err != nil || len(ids) == 0 {
		t.Fatalf("no volumes in %s: %v", dir, err)
	}
	return filepath.Join(dir, volName(ids[len(ids)-1]))
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func TestSuite(t *testing.T) {
	s := openT(t, t.TempDir(), &Options{NoSync: true})
	defer s.Close()
	dstest.SubtestAll(t, s)
}

func TestSuiteSynced(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	s := openT(t, t.TempDir(), &Options{MaxVolumeSize: 1 << 20})
	defer s.Close()
	for _, f := range dstest.BatchSubtests {
		f(t, s)
	}
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := &Options{NoSync: true, MaxVolumeSize: 32 << 20}
	s := openT(t, dir, opts)
	const n = 1000
	key := func(i int) string { return fmt.Sprintf("/reopen/%04d", i) }
	version := make([]int, n) // 0 = deleted
	for i := 0; i < n; i++ {
		if err := s.Put(ctx, ds.NewKey(key(i)), valueFor(key(i), 1, 300<<10)); err != nil {
			t.Fatal(err)
		}
		version[i] = 1
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store) {
		t.Helper()
		for i := 0; i < n; i++ {
			if version[i] == 0 {
				mustMissing(t, s, key(i))
			} else {
				mustEqual(t, s, key(i), valueFor(key(i), version[i], 300<<10))
			}
		}
	}
	s = openT(t, dir, opts)
	check(s)
	for i := 0; i < n; i += 3 {
		if err := s.Put(ctx, ds.NewKey(key(i)), valueFor(key(i), 2, 300<<10)); err != nil {
			t.Fatal(err)
		}
		version[i] = 2
	}
	for i := 1; i < n; i += 5 {
		if err := s.Delete(ctx, ds.NewKey(key(i))); err != nil {
			t.Fatal(err)
		}
		version[i] = 0
	}
	check(s)
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	s.Close()
	s = openT(t, dir, opts)
	defer s.Close()
	check(s)
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check after reopen: %v", err)
	}
}

func TestTornTail(t *testing.T) {
	ctx := context.Background()
	good := encodeRecord(kindPut, "/never/acked", bytes.Repeat([]byte{7}, 5000))
	stampRecord(good, 1<<40)
	badSum := append([]byte(nil), good...)
	badSum[len(badSum)-1] ^= 0xff
	tails := map[string][]byte{
		"garbage":         bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 1000),
		"truncated":       good[:len(good)/2],
		"header only":     good[:headerSize-3],
		"bad checksum":    badSum,
		"complete record": good,
		"huge lengths":    {0x56, 0x4f, 0x4c, 0x31, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	}
	for name, tail := range tails {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, dir, &Options{NoSync: true})
			for i := 0; i < 50; i++ {
				k := fmt.Sprintf("/torn/%d", i)
				if err := s.Put(ctx, ds.NewKey(k), valueFor(k, 1, 20000)); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			path := activeVolumePath(t, dir)
			goodEnd := fileSize(t, path)
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tail)
			f.Close()

			s = openT(t, dir, &Options{NoSync: true})
			defer s.Close()
			if got := fileSize(t, path); got != goodEnd {
				t.Fatalf("after recovery the active volume is %d bytes, want %d (the good end)", got, goodEnd)
			}
			for i := 0; i < 50; i++ {
				k := fmt.Sprintf("/torn/%d", i)
				mustEqual(t, s, k, valueFor(k, 1, 20000))
			}
			mustMissing(t, s, "/never/acked")
			if err := s.Put(ctx, ds.NewKey("/after"), []byte("new write")); err != nil {
				t.Fatal(err)
			}
			mustEqual(t, s, "/after", []byte("new write"))
			if err := s.Check(ctx); err != nil {
				t.Fatalf("Check: %v", err)
			}
		})
	}
}

func TestCorruptValue(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir, &Options{NoSync: true})
	defer s.Close()
	val := bytes.Repeat([]byte("shard"), 1000)
	for _, k := range []string{"/a", "/victim", "/z"} {
		if err := s.Put(ctx, ds.NewKey(k), val); err != nil {
			t.Fatal(err)
		}
	}
	l, ok, err := s.lookup("/victim")
	if err != nil || !ok {
		t.Fatalf("lookup: %v %v", ok, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, volName(l.vol)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	pos := l.off + headerSize + int64(len("/victim")) + 1234
	b := make([]byte, 1)
	f.ReadAt(b, pos)
	b[0] ^= 0x01
	f.WriteAt(b, pos)
	f.Close()

	got, err := s.Get(ctx, ds.NewKey("/victim"))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get of a flipped value: err %v, want one wrapping ErrCorrupt", err)
	}
	if got != nil {
		t.Fatalf("Get of a flipped value returned %d bytes, want none", len(got))
	}
	mustEqual(t, s, "/a", val)
	mustEqual(t, s, "/z", val)

	// A query that reads values reports the error rather than the bytes.
	res, err := s.Query(ctx, dsq.Query{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = res.Rest()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Query over a corrupt record: err %v, want ErrCorrupt", err)
	}

	// Check (header only) catches a damaged header.
	f, _ = os.OpenFile(filepath.Join(dir, volName(l.vol)), os.O_RDWR, 0)
	f.WriteAt([]byte{0}, l.off)
	f.Close()
	if err := s.Check(ctx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Check with a damaged header: err %v, want ErrCorrupt", err)
	}
}

func TestCompact(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := &Options{NoSync: true, MaxVolumeSize: 1 << 20}
	s := openT(t, dir, opts)
	const n = 300
	key := func(i int) string { return fmt.Sprintf("/c/%03d", i) }
	version := make([]int, n)
	for i := 0; i < n; i++ {
		if err := s.Put(ctx, ds.NewKey(key(i)), valueFor(key(i), 1, 32<<10)); err != nil {
			t.Fatal(err)
		}
		version[i] = 1
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < n; i++ {
		switch x := r.IntN(10); {
		case x < 2:
			if err := s.Delete(ctx, ds.NewKey(key(i))); err != nil {
				t.Fatal(err)
			}
			version[i] = 0
		case x < 9:
			if err := s.Put(ctx, ds.NewKey(key(i)), valueFor(key(i), 2, 32<<10)); err != nil {
				t.Fatal(err)
			}
			version[i] = 2
		}
	}
	check := func(s *Store) {
		t.Helper()
		for i := 0; i < n; i++ {
			if version[i] == 0 {
				mustMissing(t, s, key(i))
			} else {
				mustEqual(t, s, key(i), valueFor(key(i), version[i], 32<<10))
			}
		}
	}
	before, _ := s.DiskUsage(ctx)
	reclaimed, err := s.Compact(ctx, 0.5)
	if err != nil {
		t.Fatalf("Compact: %v", err)
	}
	after, _ := s.DiskUsage(ctx)
	t.Logf("disk usage %d -> %d, reclaimed %d", before, after, reclaimed)
	if reclaimed <= 0 || after >= before {
		t.Fatalf("Compact reclaimed %d; usage %d -> %d, want a drop", reclaimed, before, after)
	}
	check(s)
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check after compact: %v", err)
	}
	// Writes keep working after compaction, and a second pass finds little.
	if err := s.Put(ctx, ds.NewKey(key(0)), valueFor(key(0), 3, 32<<10)); err != nil {
		t.Fatal(err)
	}
	version[0] = 3
	s.Close()
	s = openT(t, dir, opts)
	defer s.Close()
	check(s)
	if got, _ := s.DiskUsage(ctx); got > after+(64<<10) {
		t.Fatalf("disk usage after reopen %d, want about %d", got, after)
	}
}

func TestConcurrent(t *testing.T) {
	ctx := context.Background()
	s := openT(t, t.TempDir(), &Options{NoSync: true, MaxVolumeSize: 256 << 10})
	defer s.Close()
	const writers, keysPer, rounds = 16, 20, 30
	var wg sync.WaitGroup
	stop := make(chan struct{})
	compactErr := make(chan error, 1)
	go func() { // compaction races with the writers
		defer close(compactErr)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Compact(ctx, 0.3); err != nil {
				compactErr <- err
				return
			}
		}
	}()
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 1; r <= rounds; r++ {
				for i := 0; i < keysPer; i++ {
					k := fmt.Sprintf("/w%02d/%02d", w, i)
					if err := s.Put(ctx, ds.NewKey(k), valueFor(k, r, 4096)); err != nil {
						errs <- err
						return
					}
					got, err := s.Get(ctx, ds.NewKey(k))
					if err != nil || !bytes.Equal(got, valueFor(k, r, 4096)) {
						errs <- fmt.Errorf("Get(%s) round %d: %v (%d bytes)", k, r, err, len(got))
						return
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := <-compactErr; err != nil {
		t.Fatalf("Compact: %v", err)
	}
	for w := 0; w < writers; w++ {
		for i := 0; i < keysPer; i++ {
			k := fmt.Sprintf("/w%02d/%02d", w, i)
			mustEqual(t, s, k, valueFor(k, rounds, 4096))
		}
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestClosed(t *testing.T) {
	ctx := context.Background()
	s := openT(t, t.TempDir(), &Options{NoSync: true})
	s.Put(ctx, ds.NewKey("/a"), []byte("x"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, ds.NewKey("/b"), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Get(ctx, ds.NewKey("/a")); err == nil {
		t.Fatal("Get after Close succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	seed := encodeRecord(kindPut, "/k", []byte("value"))
	stampRecord(seed, 7)
	f.Add(seed, "/k")
	f.Add([]byte{0x56, 0x4f, 0x4c, 0x31, 0xff, 0xff, 0xff, 0xff}, "/k")
	f.Fuzz(func(t *testing.T, rec []byte, key string) {
		v, err := decodeRecord(rec, key)
		if err != nil {
			return
		}
		again := encodeRecord(kindPut, key, v)
		stampRecord(again, binary.LittleEndian.Uint64(rec[5:]))
		if !bytes.Equal(again, rec) {
			t.Fatalf("decodeRecord accepted bytes that do not re-encode")
		}
	})
}

// A Put under the zero ds.Key is refused, and the store goes on taking
// writes: bbolt used to fail the index commit for the empty key, which the
// store took for a failed disk and refused every write until reopened.
func TestEmptyKeyRefused(t *testing.T) {
	ctx := context.Background()
	s := openT(t, t.TempDir(), &Options{NoSync: true})
	defer s.Close()
	if err := s.Put(ctx, ds.Key{}, []byte("x")); err == nil {
		t.Fatal("put of the zero key: nil error")
	}
	b, err := s.Batch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, ds.Key{}, []byte("x")); err == nil {
		t.Fatal("batch put of the zero key: nil error")
	}
	if err := s.Put(ctx, ds.NewKey("/ok"), []byte("y")); err != nil {
		t.Fatalf("put after a refused zero key: %v (Err %v)", err, s.Err())
	}
	if v, err := s.Get(ctx, ds.NewKey("/ok")); err != nil || string(v) != "y" {
		t.Fatalf("get: %q, %v", v, err)
	}
}

// Query serves index keys as they are, even one that is not a clean
// datastore key (a damaged or foreign index): ds.RawKey used to panic on it.
func TestQueryTakesIndexKeysAsTheyAre(t *testing.T) {
	ctx := context.Background()
	s := openT(t, t.TempDir(), &Options{NoSync: true})
	defer s.Close()
	if err := s.apply([]op{{kind: opPut, key: "bad", rec: encodeRecord(kindPut, "bad", []byte("v"))}}, nil); err != nil {
		t.Fatal(err)
	}
	res, err := s.Query(ctx, dsq.Query{})
	if err != nil {
		t.Fatal(err)
	}
	es, err := res.Rest()
	if err != nil || len(es) != 1 || es[0].Key != "bad" || string(es[0].Value) != "v" {
		t.Fatalf("query: %+v, %v; want the one entry bad=v", es, err)
	}
}
