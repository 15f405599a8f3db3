package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	ds "github.com/ipfs/go-datastore"
)

// fillVolumes writes n 8 KiB values into 64 KiB volumes and closes the
// store: several sealed volumes and an active one.
func fillVolumes(t *testing.T, dir string, n int) *Options {
	t.Helper()
	opts := &Options{NoSync: true, MaxVolumeSize: 64 << 10}
	s := openT(t, dir, opts)
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("/k/%03d", i)
		if err := s.Put(context.Background(), ds.NewKey(k), valueFor(k, 1, 8<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return opts
}

// sizes maps each volume file of dir to its size.
func sizes(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	ids, err := listVolumes(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, id := range ids {
		st, err := os.Stat(filepath.Join(dir, volName(id)))
		if err != nil {
			t.Fatal(err)
		}
		out[volName(id)] = st.Size()
	}
	return out
}

// wantCorruptOpen checks that Open of dir fails with ErrCorrupt (what
// says how dir was damaged).
func wantCorruptOpen(t *testing.T, dir string, opts *Options, what string) {
	t.Helper()
	if s, err := Open(dir, opts); !errors.Is(err, ErrCorrupt) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("open %s: %v, want ErrCorrupt", what, err)
	}
}

// rounds is how often a race test repeats: long, or short with -short.
func rounds(long, short int) int {
	if testing.Short() {
		return short
	}
	return long
}

// A lost or emptied index.bolt is rebuilt from the volumes, which keep
// every value. Open used to take every volume for one it had never
// indexed: it deleted the sealed ones and truncated the last to nothing.
func TestLostIndexIsRebuilt(t *testing.T) {
	for _, how := range []string{"removed", "emptied"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			opts := fillVolumes(t, dir, 40)
			before := sizes(t, dir)
			idx := filepath.Join(dir, indexFile)
			var err error
			if how == "removed" {
				err = os.Remove(idx)
			} else {
				err = os.Truncate(idx, 0)
			}
			if err != nil {
				t.Fatal(err)
			}
			s := openT(t, dir, opts)
			defer s.Close()
			if !s.NeedsReindex() {
				t.Fatal("no rebuild")
			}
			if after := sizes(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("volumes changed by the rebuild: %v -> %v", before, after)
			}
			for i := 0; i < 40; i++ {
				k := fmt.Sprintf("/k/%03d", i)
				mustEqual(t, s, k, valueFor(k, 1, 8<<10))
			}
		})
	}
}

// A volume the index has committed records in, whose file is gone, makes
// Open fail. Open used to go on with the volume below it as the active one,
// and a later roll re-created the lost volume's number under the old end.
func TestOpenRefusesMissingVolume(t *testing.T) {
	dir := t.TempDir()
	opts := fillVolumes(t, dir, 40)
	ids, _ := listVolumes(dir)
	for _, id := range []uint32{ids[len(ids)-1], ids[0]} { // the active one, a sealed one
		path := filepath.Join(dir, volName(id))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		wantCorruptOpen(t, dir, opts, "without "+volName(id))
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := openT(t, dir, opts) // whole again
	defer s.Close()
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Names the store does not give its volumes are not volumes: 1.vol beside
// 00000001.vol would be the same number twice (a file opened twice, and
// the wrong one removed once compacted).
func TestOddVolumeNamesIgnored(t *testing.T) {
	dir := t.TempDir()
	opts := fillVolumes(t, dir, 10)
	want, _ := listVolumes(dir)
	for _, odd := range []string{"1.vol", "0000001.vol", "+00000001.vol"} {
		if err := os.WriteFile(filepath.Join(dir, odd), []byte("not a volume"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := listVolumes(dir); err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("volumes listed beside odd names: %v, %v; want %v", got, err, want)
	}
	s := openT(t, dir, opts)
	defer s.Close()
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A Get racing Close gets ErrClosed, never ErrCorrupt: a node takes
// ErrCorrupt for a bad shard, and its scrub would drop a good one.
func TestGetDuringCloseIsClosed(t *testing.T) {
	ctx := context.Background()
	for round := 0; round < rounds(100, 20); round++ {
		s := openT(t, t.TempDir(), &Options{NoSync: true})
		if err := s.Put(ctx, ds.NewKey("/a"), []byte("a")); err != nil {
			t.Fatal(err)
		}
		var stop atomic.Bool
		var corrupt atomic.Value
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					_, err := s.Get(ctx, ds.NewKey("/a"))
					if errors.Is(err, ErrCorrupt) {
						corrupt.Store(err)
						return
					}
					if errors.Is(err, ErrClosed) {
						return
					}
				}
			}()
		}
		s.Close()
		stop.Store(true)
		wg.Wait()
		if e := corrupt.Load(); e != nil {
			t.Fatalf("round %d: get during close: %v, want ErrClosed", round, e)
		}
	}
}

// Check running while Compact moves records and removes their volumes
// reports nothing: a record moved since Check read its index entry is
// checked where it is now.
func TestCheckDuringCompact(t *testing.T) {
	ctx := context.Background()
	for round := 0; round < rounds(10, 3); round++ {
		s := openT(t, t.TempDir(), &Options{NoSync: true, MaxVolumeSize: 256 << 10})
		for i := 0; i < 2000; i++ {
			if err := s.Put(ctx, ds.NewKey(fmt.Sprintf("/c/%05d", i)), make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 2000; i += 2 {
			if err := s.Delete(ctx, ds.NewKey(fmt.Sprintf("/c/%05d", i))); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan error, 1)
		go func() { _, err := s.Compact(ctx, 0.1); done <- err }()
		checks := 0
		for compacting := true; compacting; checks++ {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				compacting = false
			default:
			}
			if err := s.Check(ctx); err != nil {
				t.Fatalf("round %d, check %d during compaction: %.300v", round, checks, err)
			}
		}
		s.Close()
	}
}
