package volume

import (
	"context"
	"errors"
	"fmt"
	"testing"

	ds "github.com/ipfs/go-datastore"
	bolt "go.etcd.io/bbolt"
)

var sideBucket = []byte("side")

// CommitWith's also runs in the transaction that makes the record visible,
// so the caller's own bucket and the record commit together. When one also
// of a group fails, that write alone fails: its record is dead space, the
// keys it drops stay, and the rest of the group commits.
func TestCommitWithCommitsWithTheGroup(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir, &Options{NoSync: true})
	if err := s.DB().Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket(sideBucket)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	side := func(key string) func(*bolt.Tx, Loc) ([]Loc, error) {
		return func(tx *bolt.Tx, _ Loc) ([]Loc, error) {
			return nil, tx.Bucket(sideBucket).Put([]byte(key), []byte("with "+key))
		}
	}
	boom := errors.New("caller's index refused")

	// One group of four, queued by hand so that they commit together; the
	// third's also fails.
	keys := []string{"/a", "/b", "/c", "/d"}
	subs := make([]*submission, len(keys))
	for i, k := range keys {
		also := side(k)
		if k == "/c" {
			also = func(*bolt.Tx, Loc) ([]Loc, error) { return nil, boom }
		}
		subs[i] = &submission{ops: []op{{kind: opPut, key: k, rec: encodeRecord(kindPut, k, valueFor(k, 1, 4096))}}, also: also, done: make(chan error, 1)}
		if err := s.appendAll(subs[i]); err != nil {
			t.Fatal(err)
		}
	}
	deadC := uint64(recordLen(len("/c"), len(valueFor("/c", 1, 4096))))
	if n := s.commitRound(); n != len(keys) {
		t.Fatalf("commitRound committed %d submissions, want %d in one group", n, len(keys))
	}
	for i, k := range keys {
		err := <-subs[i].done
		if k == "/c" {
			if !errors.Is(err, boom) {
				t.Fatalf("write of %s: %v, want its also's error", k, err)
			}
		} else if err != nil {
			t.Fatalf("write of %s: %v", k, err)
		}
	}

	check := func(s *Store) {
		t.Helper()
		for _, k := range keys {
			var sv []byte
			if err := s.DB().View(func(tx *bolt.Tx) error {
				sv = append(sv, tx.Bucket(sideBucket).Get([]byte(k))...)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if k == "/c" {
				mustMissing(t, s, k)
				if sv != nil {
					t.Fatalf("side bucket holds %s of a failed write", k)
				}
				continue
			}
			mustEqual(t, s, k, valueFor(k, 1, 4096))
			if string(sv) != "with "+k {
				t.Fatalf("side bucket for %s: %q", k, sv)
			}
		}
		var dead uint64
		if err := s.DB().View(func(tx *bolt.Tx) error {
			dead = getU64(tx.Bucket(bucketMeta), metaKey('d', s.activeVol))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if dead != deadC {
			t.Fatalf("dead bytes %d, want the failed records %d", dead, deadC)
		}
		if err := s.Check(ctx); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
	check(s)
	// Through the public call too, and after a restart.
	if err := s.CommitWith(ctx, ds.NewKey("/e"), []byte("e"), []ds.Key{ds.NewKey("/a")}, func(*bolt.Tx, Loc) ([]Loc, error) { return nil, fmt.Errorf("no: %w", boom) }); !errors.Is(err, boom) {
		t.Fatalf("CommitWith with a failing also: %v", err)
	}
	deadC += uint64(recordLen(len("/e"), 1) + recordLen(len("/a"), 0)) // its record and its delete record
	mustMissing(t, s, "/e")
	mustEqual(t, s, "/a", valueFor("/a", 1, 4096)) // the failed commit dropped nothing
	// A change with no record: a drop and the caller's bucket, together.
	if err := s.Put(ctx, ds.NewKey("/g"), []byte("g")); err != nil {
		t.Fatal(err)
	}
	deadC += uint64(recordLen(len("/g"), 1) + recordLen(len("/g"), 0)) // the value and the delete record
	if err := s.CommitWith(ctx, ds.Key{}, nil, []ds.Key{ds.NewKey("/g")}, side("/g")); err != nil {
		t.Fatalf("CommitWith of a drop alone: %v", err)
	}
	mustMissing(t, s, "/g")
	if err := s.DB().View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(sideBucket).Get([]byte("/g")); string(v) != "with /g" {
			return fmt.Errorf("side bucket for /g: %q", v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, &Options{NoSync: true})
	defer s.Close()
	check(s)
}
