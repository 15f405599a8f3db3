package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	ds "github.com/ipfs/go-datastore"
	bolt "go.etcd.io/bbolt"
)

// tableOwner keeps the key table in a bucket of the store's database, as
// a node's index does.
type tableOwner struct {
	db    *bolt.DB
	moves int
}

var ownerBucket = []byte("owner.table")

func (o *tableOwner) at(key string) (Loc, bool) {
	var at Loc
	var ok bool
	_ = o.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(ownerBucket).Get([]byte(key)); v != nil {
			ok = copy(at[:], v) == len(at)
		}
		return nil
	})
	return at, ok
}

func (o *tableOwner) Holds(key string, value []byte, at Loc) (bool, error) {
	cur, ok := o.at(key)
	return ok && cur == at, nil
}

func (o *tableOwner) Move(tx *bolt.Tx, key string, value []byte, from, to Loc) (bool, error) {
	b := tx.Bucket(ownerBucket)
	if !bytes.Equal(b.Get([]byte(key)), from[:]) {
		return false, nil
	}
	o.moves++
	return true, b.Put([]byte(key), to[:])
}

// commit is the function a CommitWith of key's record runs: it records
// where the record went and drops the keys in drop, and says where their
// records were.
func (o *tableOwner) commit(key string, drop []string) func(*bolt.Tx, Loc) ([]Loc, error) {
	return func(tx *bolt.Tx, at Loc) ([]Loc, error) {
		b := tx.Bucket(ownerBucket)
		var gone []Loc
		for _, d := range drop {
			if v := b.Get([]byte(d)); v != nil {
				gone = append(gone, Loc(v))
			}
			if err := b.Delete([]byte(d)); err != nil {
				return nil, err
			}
		}
		if key == "" {
			return gone, nil
		}
		if at == (Loc{}) {
			return nil, errors.New("no location for a record")
		}
		return gone, b.Put([]byte(key), at[:])
	}
}

func keysOf(names []string) []ds.Key {
	var ks []ds.Key
	for _, n := range names {
		ks = append(ks, ds.NewKey(n))
	}
	return ks
}

// deadBytes is the store's count of dead bytes, over every volume.
func deadBytes(t *testing.T, s *Store) uint64 {
	t.Helper()
	n, err := s.Garbage()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func openOwned(t *testing.T, dir string, o *Options) (*Store, *tableOwner) {
	t.Helper()
	owner := &tableOwner{}
	opts := *o
	opts.Owner = owner
	s := openT(t, dir, &opts)
	owner.db = s.DB()
	if err := s.DB().Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(ownerBucket)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return s, owner
}

// With an Owner the store keeps no table of its own: CommitWith tells the
// owner where each record went, GetAt reads it there, a drop needs the
// record's place to count its bytes dead, and compaction moves what the
// owner still points at, and nothing else. Opened without the owner, the
// store is refused.
func TestOwnerKeepsTheTable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	o := &Options{NoSync: true, MaxVolumeSize: 64 << 10}
	s, owner := openOwned(t, dir, o)
	put := func(key string, version int, drop ...string) {
		t.Helper()
		err := s.CommitWith(ctx, ds.NewKey(key), valueFor(key, version, 2048), keysOf(drop), owner.commit(key, drop))
		if err != nil {
			t.Fatal(err)
		}
	}
	const n = 120
	name := func(i, version int) string { return fmt.Sprintf("/k/%03d/%d", i, version) }
	for i := 0; i < n; i++ {
		put(name(i, 1), 1)
	}
	// Every key but each fourth gets a second version, which drops the first.
	for i := 0; i < n; i++ {
		if i%4 == 0 {
			continue
		}
		put(name(i, 2), 2, name(i, 1))
	}
	live := map[string]int{}
	for i := 0; i < n; i++ {
		if i%4 == 0 {
			live[name(i, 1)] = 1
		} else {
			live[name(i, 2)] = 2
		}
	}
	check := func(when string) {
		t.Helper()
		for k, v := range live {
			at, ok := owner.at(k)
			if !ok {
				t.Fatalf("%s: the owner lost %s", when, k)
			}
			got, _, err := s.GetAt(ds.NewKey(k), at, nil)
			if err != nil || !bytes.Equal(got, valueFor(k, v, 2048)) {
				t.Fatalf("%s: GetAt(%s) = %d bytes, %v", when, k, len(got), err)
			}
			if _, err := s.Get(ctx, ds.NewKey(k)); !errors.Is(err, ds.ErrNotFound) {
				t.Fatalf("%s: Get(%s) = %v, want ds.ErrNotFound: the store keeps no table", when, k, err)
			}
		}
	}
	check("written")

	before, _ := owner.at(name(1, 2))
	reclaimed, err := s.Compact(ctx, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	if reclaimed == 0 || owner.moves == 0 {
		t.Fatalf("compaction reclaimed %d bytes and moved %d records: the dropped records were not counted dead", reclaimed, owner.moves)
	}
	if owner.moves > len(live) {
		t.Fatalf("compaction moved %d records, only %d are live", owner.moves, len(live))
	}
	check("compacted")
	if after, _ := owner.at(name(1, 2)); after != before {
		if _, _, err := s.GetAt(ds.NewKey(name(1, 2)), before, nil); !errors.Is(err, ds.ErrNotFound) {
			t.Fatalf("GetAt at a place compacted away: %v, want ds.ErrNotFound", err)
		}
	}

	// A record dropped after compaction moved it counts dead where it is
	// now: the owner says where, in the transaction.
	victim := name(1, 2)
	deadBefore := deadBytes(t, s)
	if err := s.CommitWith(ctx, ds.Key{}, nil, keysOf([]string{victim}), owner.commit("", []string{victim})); err != nil {
		t.Fatal(err)
	}
	delete(live, victim)
	if got, want := deadBytes(t, s)-deadBefore, uint64(recordLen(len(victim), len(valueFor(victim, 2, 2048)))+recordLen(len(victim), 0)); got != want {
		t.Fatalf("dropping a moved record added %d dead bytes, want its record and the delete record, %d", got, want)
	}
	// Writes no owner's table would point at are refused.
	if err := s.Put(ctx, ds.NewKey("/stray"), []byte("x")); err == nil {
		t.Fatal("Put on an owner's store succeeded")
	}
	if err := s.Delete(ctx, ds.NewKey(name(0, 1))); err == nil {
		t.Fatal("Delete on an owner's store succeeded")
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, o); !errors.Is(err, ErrOwner) {
		t.Fatalf("Open without the owner: %v, want ErrOwner", err)
	}
	s, owner = openOwned(t, dir, o)
	check("reopened")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// An operating system crash: the store rebuilds its table from the
	// volumes and holds it, with every live record, until the owner has
	// rebuilt its own.
	powerLoss(t, dir, sizesByPath(t, dir), "index lost")
	owned := *o
	owned.Owner = &tableOwner{}
	s = openT(t, dir, &owned)
	defer s.Close()
	if !s.NeedsReindex() {
		t.Fatal("no rebuild")
	}
	for i := 0; i < n; i++ {
		for v := 1; v <= 2; v++ {
			at, ok, err := s.Locate(ds.NewKey(name(i, v)))
			if err != nil {
				t.Fatal(err)
			}
			want, isLive := live[name(i, v)]
			if ok != isLive {
				t.Fatalf("after the rebuild, %s located %v, want %v", name(i, v), ok, isLive)
			}
			if !ok {
				continue
			}
			if got, _, err := s.GetAt(ds.NewKey(name(i, v)), at, nil); err != nil || !bytes.Equal(got, valueFor(name(i, v), want, 2048)) {
				t.Fatalf("after the rebuild, GetAt(%s) = %d bytes, %v", name(i, v), len(got), err)
			}
		}
	}
	if _, err := s.Compact(ctx, 0); err == nil {
		t.Fatal("Compact before the owner rebuilt its table succeeded")
	}
	// An owner rebuilding its table drops a record; stopped before it is
	// done, it rebuilds again from what the store lists, which no longer
	// holds the record: its bytes count dead once.
	gone := name(4, 1)
	at, _, _ := s.Locate(ds.NewKey(gone))
	deadBefore = deadBytes(t, s)
	if err := s.CommitWith(ctx, ds.Key{}, nil, keysOf([]string{gone}), func(*bolt.Tx, Loc) ([]Loc, error) { return []Loc{at}, nil }); err != nil {
		t.Fatal(err)
	}
	if got, want := deadBytes(t, s)-deadBefore, uint64(recordLen(len(gone), len(valueFor(gone, 1, 2048)))+recordLen(len(gone), 0)); got != want {
		t.Fatalf("dropping a record the rebuild listed added %d dead bytes, want %d", got, want)
	}
	if _, ok, err := s.Locate(ds.NewKey(gone)); ok || err != nil {
		t.Fatalf("a dropped record is still listed: %v, %v", ok, err)
	}
	if err := s.ReindexDone(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Locate(ds.NewKey(name(0, 1))); ok || err != nil {
		t.Fatalf("the store's table after ReindexDone: located %v, %v; want it empty", ok, err)
	}
}
