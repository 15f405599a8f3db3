package index

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// An index kept in another component's database (OpenIn) uses its own
// bucket names, so it cannot collide with the owner's "meta" bucket; its
// entries commit with the owner's transaction and roll back with it; and
// its Close leaves the database to the owner.
func TestOpenInSharesTheOwnersTransactions(t *testing.T) {
	bdb, err := bolt.Open(filepath.Join(t.TempDir(), "owner.bolt"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	// The owner's bucket "meta" holds a "stats" record the index could not
	// read: were the names shared, OpenIn would fail with ErrCorrupt.
	err = bdb.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		return b.Put(metaStats, []byte("owner's"))
	})
	if err != nil {
		t.Fatal(err)
	}
	db, err := OpenIn(bdb, nil)
	if err != nil {
		t.Fatalf("OpenIn: %v", err)
	}

	e := Entry{Key: "/a", Slot: 7, Held: Held{Index: 2, ShardLen: 100, Version: Version{HLC: 5, Writer: 1}}}
	err = bdb.Update(func(tx *bolt.Tx) error {
		if _, err := tx.Bucket([]byte("meta")).CreateBucketIfNotExists([]byte("owner-sub")); err != nil {
			return err
		}
		stored, err := db.PutTx(tx, e)
		if err != nil || !stored {
			return fmt.Errorf("PutTx: stored=%v err=%v", stored, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, db, "/a"); !reflect.DeepEqual(got, e) {
		t.Fatalf("Get after PutTx: %+v, want %+v", got, e)
	}

	// A transaction that fails takes the entry with it.
	boom := errors.New("owner failed")
	err = bdb.Update(func(tx *bolt.Tx) error {
		if _, err := db.PutTx(tx, Entry{Key: "/b", Slot: 7, Held: Held{ShardLen: 50, Version: Version{HLC: 6}}}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update: %v, want %v", err, boom)
	}
	if _, err := db.Get("/b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a rolled-back entry: %v, want ErrNotFound", err)
	}
	st, err := db.Stats()
	if err != nil || st != (Stats{Keys: 1, ShardBytes: 100}) {
		t.Fatalf("Stats: %+v, %v; want 1 key of 100 bytes", st, err)
	}
	es, err := db.ListSlot(7, "", 0)
	if err != nil || len(es) != 1 || es[0].Key != "/a" {
		t.Fatalf("ListSlot(7): %v, %v; want /a alone", es, err)
	}
	sums, err := db.Sums()
	if want := (map[SumKey]Sum{sumKey(e, e.Held): {Count: 1, XOR: entryHash(e)}}); err != nil || !maps.Equal(sums, want) {
		t.Fatalf("Sums: %v, %v; want /a's alone %v", sums, err, want)
	}
	// PutTx checks keys as Put does.
	err = bdb.Update(func(tx *bolt.Tx) error {
		_, err := db.PutTx(tx, Entry{Held: Held{Version: Version{HLC: 1}}})
		return err
	})
	if !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("PutTx of an empty key: %v, want ErrInvalidKey", err)
	}

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bdb.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte("meta")).Get(metaStats); string(v) != "owner's" {
			return fmt.Errorf("owner's record is %q", v)
		}
		return nil
	}); err != nil {
		t.Fatalf("the owner's database after the index closed: %v", err)
	}
	// Reopened in the same database, the index finds its entry.
	db, err = OpenIn(bdb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, db, "/a"); !reflect.DeepEqual(got, e) {
		t.Fatalf("Get after reopen: %+v, want %+v", got, e)
	}
}

// PutMany stores a batch in one transaction, keeps the newest version of
// each key like Put, and is idempotent.
func TestPutMany(t *testing.T) {
	db := openTest(t, "", noSync)
	mustPut(t, db, Entry{Key: "/k001", Slot: 1, Held: Held{ShardLen: 10, Version: Version{HLC: 100}}})
	var es []Entry
	for i := 0; i < 50; i++ {
		es = append(es, Entry{Key: fmt.Sprintf("/k%03d", i), Slot: uint16(i), Held: Held{ShardLen: 10, Version: Version{HLC: 5}}})
	}
	for round := 0; round < 2; round++ {
		if err := db.PutMany(es); err != nil {
			t.Fatalf("PutMany, round %d: %v", round, err)
		}
		st, err := db.Stats()
		if err != nil || st != (Stats{Keys: 50, ShardBytes: 500}) {
			t.Fatalf("Stats after round %d: %+v, %v; want 50 keys, 500 bytes", round, st, err)
		}
	}
	if got := mustGet(t, db, "/k001"); got.Version.HLC != 100 {
		t.Fatalf("/k001 at HLC %d, want the newer 100 kept", got.Version.HLC)
	}
	if err := db.PutMany([]Entry{{Key: "/ok", Held: Held{Version: Version{HLC: 1}}}, {Key: ""}}); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("PutMany with an empty key: %v, want ErrInvalidKey", err)
	}
	if _, err := db.Get("/ok"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused batch stored /ok: %v", err)
	}
}
