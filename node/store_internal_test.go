package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/volume"
)

// A node whose index was a file of its own (DIR/index.db, before the
// volume store carried it) finds every entry in the volume store's
// database after an upgrade, and the old file is set aside.
func TestOpenIndexMovesAnOldIndexIntoTheVolumeStore(t *testing.T) {
	dir := t.TempDir()
	old, err := index.Open(filepath.Join(dir, "index.db"), &index.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2*listLimit + 7 // more than one page of the copy
	want := make([]index.Entry, n)
	for i := range want {
		want[i] = index.Entry{
			Key: fmt.Sprintf("/k%05d", i), Slot: uint16(i), Index: uint8(i % 6), K: 4, M: 2,
			Tombstone: i%10 == 0, ValueLen: uint64(i), ShardLen: uint32(i % 977), ShardSum: uint64(i) * 31,
			Version: index.Version{HLC: uint64(1000 + i), Writer: 3},
		}
	}
	if err := old.PutMany(want); err != nil {
		t.Fatal(err)
	}
	wantStats, err := old.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	vdir := filepath.Join(dir, "volume")
	for round := 0; round < 2; round++ { // the second open finds no old file
		vol, err := volume.Open(vdir, &volume.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		idx, got, err := openIndex(dir, vol, true)
		if err != nil {
			t.Fatalf("round %d: openIndex: %v", round, err)
		}
		if got != vol {
			t.Fatalf("round %d: openIndex did not put the index in the volume store", round)
		}
		st, err := idx.Stats()
		if err != nil || st != wantStats {
			t.Fatalf("round %d: stats %+v, %v; want %+v", round, st, err, wantStats)
		}
		for _, w := range want {
			e, err := idx.Get(w.Key)
			if err != nil || e != w {
				t.Fatalf("round %d: Get(%s) = %+v, %v; want %+v", round, w.Key, e, err, w)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "index.db")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("round %d: index.db still there: %v", round, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "index.db.moved")); err != nil {
			t.Fatalf("round %d: index.db.moved: %v", round, err)
		}
		if err := idx.Close(); err != nil {
			t.Fatal(err)
		}
		if err := vol.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// A crash after the move but before the rename reached the disk brings
	// index.db back. An entry deleted since must stay deleted: the file is
	// only renamed again, not copied.
	vol, err := volume.Open(vdir, &volume.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	idx, _, err := openIndex(dir, vol, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := idx.Delete(want[5].Key); err != nil {
		t.Fatal(err)
	}
	if err := vol.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "index.db.moved"), filepath.Join(dir, "index.db")); err != nil {
		t.Fatal(err)
	}
	vol, err = volume.Open(vdir, &volume.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	if idx, _, err = openIndex(dir, vol, true); err != nil {
		t.Fatal(err)
	}
	if e, err := idx.Get(want[5].Key); !errors.Is(err, index.ErrNotFound) {
		t.Fatalf("a deleted entry came back from the old file: %+v, %v", e, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("index.db not renamed again: %v", err)
	}
}
