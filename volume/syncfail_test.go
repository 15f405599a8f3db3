package volume

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
)

// A failed fsync stops all writes (fsync errors are not retried: the
// kernel may have dropped the dirty pages), while reads of what was
// acknowledged before go on; Err says why. Opened again, the store serves
// every acknowledged value and takes writes.
func TestFailedSyncStopsWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	eio := errors.New("input/output error (injected)")
	var failing atomic.Bool
	opts := &Options{SyncFile: func(f *os.File) error {
		if failing.Load() {
			return eio
		}
		return f.Sync()
	}}
	s := openT(t, dir, opts)
	acked := map[string][]byte{}
	for i := 0; i < 20; i++ {
		k, v := ds.NewKey("/before/"+string(rune('a'+i))), bytes.Repeat([]byte{byte(i)}, 1000+i)
		if err := s.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
		acked[k.String()] = v
	}
	if err := s.Err(); err != nil {
		t.Fatalf("healthy store: Err %v", err)
	}

	failing.Store(true)
	if err := s.Put(ctx, ds.NewKey("/during"), []byte("x")); !errors.Is(err, eio) {
		t.Fatalf("put with fsync failing: %v, want the fsync error", err)
	}
	failing.Store(false)
	if err := s.Put(ctx, ds.NewKey("/after"), []byte("y")); !errors.Is(err, eio) {
		t.Fatalf("put after a failed fsync: %v, want the sticky fsync error", err)
	}
	if err := s.Err(); !errors.Is(err, eio) {
		t.Fatalf("Err after a failed fsync: %v, want the fsync error", err)
	}
	for k, v := range acked {
		if got, err := s.Get(ctx, ds.NewKey(k)); err != nil || !bytes.Equal(got, v) {
			t.Fatalf("get %s after a failed fsync: %d bytes, %v", k, len(got), err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Err(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Err of a closed store: %v, want ErrClosed", err)
	}

	s2 := openT(t, dir, opts)
	defer s2.Close()
	for k, v := range acked {
		if got, err := s2.Get(ctx, ds.NewKey(k)); err != nil || !bytes.Equal(got, v) {
			t.Fatalf("get %s after reopening: %d bytes, %v", k, len(got), err)
		}
	}
	if err := s2.Put(ctx, ds.NewKey("/after"), []byte("y")); err != nil || s2.Err() != nil {
		t.Fatalf("put after reopening: %v (Err %v)", err, s2.Err())
	}
}

// A full disk fails the writes that meet it and nothing else: the store
// takes writes again once there is room, and what was acknowledged stays.
func TestFullDiskIsNotFatal(t *testing.T) {
	ctx := context.Background()
	var full atomic.Bool
	s := openT(t, t.TempDir(), &Options{SyncFile: func(f *os.File) error {
		if full.Load() {
			return &os.PathError{Op: "sync", Path: f.Name(), Err: syscall.ENOSPC}
		}
		return nil
	}})
	defer s.Close()
	if err := s.Put(ctx, ds.NewKey("/a"), []byte("a")); err != nil {
		t.Fatal(err)
	}
	full.Store(true)
	if err := s.Put(ctx, ds.NewKey("/b"), []byte("b")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("put on a full disk: %v, want ENOSPC", err)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("Err after a full disk: %v, want nil", err)
	}
	full.Store(false)
	if err := s.Put(ctx, ds.NewKey("/c"), []byte("c")); err != nil {
		t.Fatalf("put once there is room: %v", err)
	}
	for k, want := range map[string]string{"/a": "a", "/c": "c"} {
		if got, err := s.Get(ctx, ds.NewKey(k)); err != nil || string(got) != want {
			t.Fatalf("get %s: %q, %v; want %q", k, got, err, want)
		}
	}
	if _, err := s.Get(ctx, ds.NewKey("/b")); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("get of the write that failed: %v, want ErrNotFound", err)
	}
}

// queuedBehindFailedSync has writer A's group fail its fsync with failure
// while writer B's record is appended and queued behind it (SyncFile waits
// for B before failing, as a slow fsync would). It returns both answers.
func queuedBehindFailedSync(t *testing.T, dir string, failure error) (s *Store, errA, errB error) {
	t.Helper()
	ctx := context.Background()
	var failing atomic.Bool
	s = openT(t, dir, &Options{SyncFile: func(f *os.File) error {
		if failing.Swap(false) {
			deadline := time.Now().Add(10 * time.Second)
			for s.pendingLen() == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			return failure
		}
		return f.Sync()
	}})
	if err := s.Put(ctx, ds.NewKey("/before"), []byte("before")); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	doneA := make(chan error, 1)
	go func() { doneA <- s.Put(ctx, ds.NewKey("/a"), []byte("a")) }()
	for s.pendingLen() != 0 || failing.Load() { // A's group is in its fsync
		time.Sleep(time.Millisecond)
	}
	errB = s.Put(ctx, ds.NewKey("/b"), []byte("b"))
	return s, <-doneA, errB
}

// A write queued while another group's fsync fails is not acknowledged by
// a later fsync of the same file, which would succeed without saying that
// its pages may have been lost (the kernel reports a writeback error once
// per file): it fails with the store's sticky error.
func TestFailedSyncFailsQueuedWrites(t *testing.T) {
	eio := errors.New("input/output error (injected)")
	s, errA, errB := queuedBehindFailedSync(t, t.TempDir(), eio)
	defer s.Close()
	if !errors.Is(errA, eio) || !errors.Is(errB, eio) {
		t.Fatalf("put /a: %v; put /b, queued behind it: %v; want both to fail with the fsync error", errA, errB)
	}
	if _, err := s.Get(context.Background(), ds.NewKey("/b")); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("get /b: %v, want ErrNotFound: it was never committed", err)
	}
}

// The same with a full disk, which does not stop the store: the queued
// write fails too, and later writes go to a new volume (a fresh file whose
// fsyncs report its own writeback) and are served after reopening.
func TestFullDiskFailsQueuedWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	full := &os.PathError{Op: "sync", Path: "volume", Err: syscall.ENOSPC}
	s, errA, errB := queuedBehindFailedSync(t, dir, full)
	if !errors.Is(errA, syscall.ENOSPC) || !errors.Is(errB, syscall.ENOSPC) {
		t.Fatalf("put /a: %v; put /b, queued behind it: %v; want both to fail with ENOSPC", errA, errB)
	}
	before, _ := listVolumes(dir)
	if err := s.Put(ctx, ds.NewKey("/c"), []byte("c")); err != nil {
		t.Fatalf("put once there is room: %v", err)
	}
	after, _ := listVolumes(dir)
	if len(after) != len(before)+1 {
		t.Fatalf("volumes %v after the failed fsync, %v after the next write: want it in a new volume", before, after)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, nil)
	defer s.Close()
	for k, want := range map[string]string{"/before": "before", "/c": "c"} {
		if got, err := s.Get(ctx, ds.NewKey(k)); err != nil || string(got) != want {
			t.Fatalf("get %s after reopening: %q, %v; want %q", k, got, err, want)
		}
	}
	for _, k := range []string{"/a", "/b"} {
		if _, err := s.Get(ctx, ds.NewKey(k)); !errors.Is(err, ds.ErrNotFound) {
			t.Fatalf("get %s after reopening: %v, want ErrNotFound", k, err)
		}
	}
}

// A compaction whose directory sync fails stops the store, as a roll's
// does: the removal of the compacted volume may not be on disk, and the
// disk is not trusted. Compact used to return the error and let writes go
// on.
func TestFailedCompactionSyncStopsWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	eio := errors.New("input/output error (injected)")
	var failing atomic.Bool
	s := openT(t, dir, &Options{MaxVolumeSize: 4 << 10, SyncFile: func(f *os.File) error {
		if failing.Load() && f.Name() == dir {
			return eio
		}
		return f.Sync()
	}})
	defer s.Close()
	for i := 0; i < 10; i++ {
		if err := s.Put(ctx, ds.NewKey("/k"), make([]byte, 3000)); err != nil {
			t.Fatal(err)
		}
	}
	failing.Store(true)
	if _, err := s.Compact(ctx, 0); !errors.Is(err, eio) {
		t.Fatalf("compact with the directory sync failing: %v, want the sync error", err)
	}
	if err := s.Put(ctx, ds.NewKey("/after"), []byte("x")); !errors.Is(err, eio) || !errors.Is(s.Err(), eio) {
		t.Fatalf("put after the failed compaction: %v, Err %v; want the sticky sync error", err, s.Err())
	}
	if v, err := s.Get(ctx, ds.NewKey("/k")); err != nil || len(v) != 3000 {
		t.Fatalf("get after the failed compaction: %d bytes, %v", len(v), err)
	}
}
