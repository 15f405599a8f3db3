package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func openTest(t testing.TB, path string, opts *Options) *DB {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "index.db")
	}
	db, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

var noSync = &Options{NoSync: true}

func mustPut(t testing.TB, db *DB, e Entry) {
	t.Helper()
	stored, err := db.Put(e)
	if err != nil {
		t.Fatalf("Put(%q): %v", e.Key, err)
	}
	if !stored {
		t.Fatalf("Put(%q) at %v: stored=false, want true", e.Key, e.Version)
	}
}

func mustGet(t testing.TB, db *DB, key string) Entry {
	t.Helper()
	e, err := db.Get(key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return e
}

func TestPutGetRoundTripsEveryField(t *testing.T) {
	db := openTest(t, "", noSync)
	entries := []Entry{
		{Key: "/blocks/CIQA", Slot: 0xbeef, Held: Held{Index: 5, Kind: 1, K: 4, M: 2, ValueLen: 262144, ShardLen: 65536, ShardSum: 0x0123456789abcdef, Version: Version{HLC: 0xfedcba9876543210, Writer: 0x1122334455667788}}},
		{Key: "t", Slot: 1, Held: Held{Tombstone: true, Version: Version{HLC: 1}}},
		{Key: strings.Repeat("\xff", MaxKeyLen), Slot: math.MaxUint16, Held: Held{Index: math.MaxUint8, Kind: math.MaxUint8, K: math.MaxUint8, M: math.MaxUint8, Tombstone: true, ValueLen: math.MaxUint64, ShardLen: math.MaxUint32, ShardSum: math.MaxUint64, Version: Version{HLC: math.MaxUint64, Writer: math.MaxUint64}}},
		{Key: "\x00", Held: Held{Version: Version{Writer: 1}}}, // zero everything else
	}
	for _, e := range entries {
		mustPut(t, db, e)
	}
	for _, want := range entries {
		if got := mustGet(t, db, want.Key); !reflect.DeepEqual(got, want) {
			t.Errorf("Get(%.20q) =\n %+v\nwant\n %+v", want.Key, got, want)
		}
	}
	if _, err := db.Get("missing"); err != ErrNotFound {
		t.Errorf("Get(missing) error = %v, want ErrNotFound", err)
	}
}

func TestPutKeepsNewestVersion(t *testing.T) {
	db := openTest(t, "", noSync)
	cur := Entry{Key: "k", Slot: 3, Held: Held{Index: 1, ShardLen: 10, Version: Version{HLC: 10, Writer: 5}}}
	mustPut(t, db, cur)
	steps := []struct {
		v      Version
		stored bool
	}{
		{Version{10, 5}, false}, // equal
		{Version{10, 4}, false}, // same HLC, lower writer
		{Version{9, 99}, false}, // lower HLC, higher writer
		{Version{0, 0}, false},
		{Version{10, 6}, true}, // same HLC, higher writer
		{Version{11, 0}, true},
		{Version{10, 99}, false},
	}
	for i, s := range steps {
		e := Entry{Key: "k", Slot: uint16(100 + i), Held: Held{Index: uint8(i), ShardLen: uint32(1000 + i), Version: s.v}}
		stored, err := db.Put(e)
		if err != nil {
			t.Fatalf("step %d: Put: %v", i, err)
		}
		if stored != s.stored {
			t.Fatalf("step %d: Put at %v over %v: stored=%v, want %v", i, s.v, cur.Version, stored, s.stored)
		}
		if stored {
			cur = e
		}
		if got := mustGet(t, db, "k"); !reflect.DeepEqual(got, cur) {
			t.Fatalf("step %d: stored entry = %+v, want %+v", i, got, cur)
		}
		checkConsistent(t, db)
	}
}

// TestReplacePutsBackAnOlderVersion: Replace (a repair roll-back) stores
// an entry older than the one it replaces, which Put refuses, and keeps
// the slot rows, stats and sums consistent.
func TestReplacePutsBackAnOlderVersion(t *testing.T) {
	db := openTest(t, "", noSync)
	older := Entry{Key: "k", Slot: 3, Held: Held{Index: 1, ShardLen: 10, ValueLen: 40, Version: Version{HLC: 10, Writer: 5}}}
	newer := Entry{Key: "k", Slot: 3, Held: Held{Index: 1, ShardLen: 20, ValueLen: 80, Version: Version{HLC: 11, Writer: 5}}}
	mustPut(t, db, newer)
	if stored, err := db.Put(older); err != nil || stored {
		t.Fatalf("Put of an older version: stored %v, %v; want refused", stored, err)
	}
	if err := db.Replace(older); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, db, "k"); !reflect.DeepEqual(got, older) {
		t.Fatalf("after Replace: %+v, want %+v", got, older)
	}
	checkConsistent(t, db)
}

func TestVersionLess(t *testing.T) {
	cases := []struct {
		a, b Version
		want bool
	}{
		{Version{1, 0}, Version{2, 0}, true},
		{Version{2, 0}, Version{1, 9}, false},
		{Version{1, 1}, Version{1, 2}, true},
		{Version{1, 2}, Version{1, 2}, false},
		{Version{1, 3}, Version{1, 2}, false},
		{Version{0, math.MaxUint64}, Version{1, 0}, true},
	}
	for _, c := range cases {
		if got := c.a.Less(c.b); got != c.want {
			t.Errorf("%v.Less(%v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestInvalidKeys(t *testing.T) {
	db := openTest(t, "", noSync)
	for _, k := range []string{"", strings.Repeat("a", MaxKeyLen+1)} {
		stored, err := db.Put(Entry{Key: k, Held: Held{Version: Version{HLC: 1}}})
		if !errors.Is(err, ErrInvalidKey) || stored {
			t.Errorf("Put(key of %d bytes) = %v, %v; want false, ErrInvalidKey", len(k), stored, err)
		}
		if err := db.Delete(k); err != nil {
			t.Errorf("Delete(key of %d bytes) = %v, want nil", len(k), err)
		}
	}
}

// keysOf returns the keys of es, in order.
func keysOf(es []Entry) []string {
	ks := make([]string, len(es))
	for i, e := range es {
		ks[i] = e.Key
	}
	return ks
}

func TestListPrefix(t *testing.T) {
	db := openTest(t, "", noSync)
	keys := []string{
		"/a", "/a/", "/a/1", "/a/10", "/a/2", "/a/2/x", "/a\x00", "/a\xff", "/a0", "/ab",
		"/b", "/b/1", "\x00", "\xff\xff", "a", "z",
	}
	for i, k := range rand.New(rand.NewPCG(1, 2)).Perm(len(keys)) {
		mustPut(t, db, Entry{Key: keys[k], Slot: uint16(i % 3), Held: Held{Tombstone: i%4 == 0, Version: Version{HLC: 1}}})
	}
	sorted := slices.Clone(keys)
	sort.Strings(sorted)
	want := func(prefix, after string, limit int) []string {
		var out []string
		for _, k := range sorted {
			if strings.HasPrefix(k, prefix) && k > after && (limit <= 0 || len(out) < limit) {
				out = append(out, k)
			}
		}
		return out
	}
	cases := []struct {
		prefix, after string
		limit         int
	}{
		{"", "", 0}, {"", "", 3}, {"/a", "", 0}, {"/a/", "", 0}, {"/a/", "/a/10", 0},
		{"/a/", "/a/10", 2}, {"/a/", "/a/1", 1}, {"/a/", "/", 0}, {"/a/", "/b", 0},
		{"/a/", "/a/0", 0}, {"/a/2", "/a/2", 0}, {"/c", "", 0}, {"", "/b/1", 0},
		{"/a", "/a\xff", 0}, {"\xff", "", 0}, {"/a/", "", -1},
	}
	for _, c := range cases {
		got, err := db.ListPrefix(c.prefix, c.after, c.limit)
		if err != nil {
			t.Fatalf("ListPrefix(%q, %q, %d): %v", c.prefix, c.after, c.limit, err)
		}
		if w := want(c.prefix, c.after, c.limit); !slices.Equal(keysOf(got), w) {
			t.Errorf("ListPrefix(%q, %q, %d) = %q, want %q", c.prefix, c.after, c.limit, keysOf(got), w)
		}
	}
	for _, prefix := range []string{"", "/a", "/a/", "/b"} {
		for limit := 1; limit <= 4; limit++ {
			var walked []string
			after := ""
			for pages := 0; ; pages++ {
				if pages > len(keys) {
					t.Fatalf("prefix %q limit %d: pagination does not end", prefix, limit)
				}
				page, err := db.ListPrefix(prefix, after, limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > limit {
					t.Fatalf("prefix %q limit %d: page of %d", prefix, limit, len(page))
				}
				if len(page) == 0 {
					break
				}
				walked = append(walked, keysOf(page)...)
				after = page[len(page)-1].Key
			}
			if w := want(prefix, "", 0); !slices.Equal(walked, w) {
				t.Errorf("prefix %q limit %d: pages walked %q, want %q", prefix, limit, walked, w)
			}
		}
	}
}

// checkConsistent compares the byslot bucket with the entries bucket: each
// entry must have exactly one byslot record, under its own slot.
func checkConsistent(t testing.TB, db *DB) {
	t.Helper()
	err := db.bolt.View(func(tx *bolt.Tx) error {
		want := map[string]bool{}
		sums := map[SumKey]Sum{}
		err := tx.Bucket(ownBuckets.entries).ForEach(func(k, v []byte) error {
			e, err := decodeEntry(string(k), v)
			if err != nil {
				return err
			}
			want[string(bySlotKey(e.Slot, k))] = true
			for _, h := range e.Newest() {
				g := sums[sumKey(e, h)]
				g.Count++
				g.XOR ^= entryHash(e)
				if len(e.Older) > 0 {
					g.Older++
				}
				sums[sumKey(e, h)] = g
			}
			return nil
		})
		if err != nil {
			return err
		}
		held, err := db.Sums()
		if err != nil {
			return err
		}
		if !maps.Equal(held, sums) {
			return fmt.Errorf("slot sums %v, counted from the entries %v", held, sums)
		}
		got := map[string]bool{}
		err = tx.Bucket(ownBuckets.bySlot).ForEach(func(k, v []byte) error {
			if len(v) != 0 {
				return fmt.Errorf("byslot record %q has value %q", k, v)
			}
			got[string(k)] = true
			return nil
		})
		if err != nil {
			return err
		}
		for k := range want {
			if !got[k] {
				return fmt.Errorf("byslot record missing for slot %d key %q", binary.BigEndian.Uint16([]byte(k)), k[2:])
			}
		}
		for k := range got {
			if !want[k] {
				return fmt.Errorf("stale byslot record: slot %d key %q", binary.BigEndian.Uint16([]byte(k)), k[2:])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("index inconsistent: %v", err)
	}
}

// walkSlot pages through one slot with the given page size.
func walkSlot(t testing.TB, db *DB, slot uint16, limit int) []string {
	t.Helper()
	var walked []string
	after := ""
	for {
		page, err := db.ListSlot(slot, after, limit)
		if err != nil {
			t.Fatalf("ListSlot(%d, %q, %d): %v", slot, after, limit, err)
		}
		if limit > 0 && len(page) > limit {
			t.Fatalf("ListSlot(%d, %q, %d) returned %d entries", slot, after, limit, len(page))
		}
		for _, e := range page {
			if e.Slot != slot {
				t.Fatalf("ListSlot(%d) returned %q of slot %d", slot, e.Key, e.Slot)
			}
		}
		walked = append(walked, keysOf(page)...)
		if len(page) == 0 || limit <= 0 {
			return walked
		}
		after = page[len(page)-1].Key
	}
}

func TestListSlot(t *testing.T) {
	db := openTest(t, "", noSync)
	slots := []uint16{0, 1, 255, 256, 0xfffe, 0xffff}
	model := map[string]uint16{} // key -> slot
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 300; i++ {
		k := fmt.Sprintf("/k/%x", rng.Uint32())
		s := slots[rng.IntN(len(slots))]
		model[k] = s
		mustPut(t, db, Entry{Key: k, Slot: s, Held: Held{Version: Version{HLC: 1}}})
	}
	check := func(stage string) {
		t.Helper()
		checkConsistent(t, db)
		for _, s := range append(slots, 2, 0x100+1) {
			var want []string
			for k, ks := range model {
				if ks == s {
					want = append(want, k)
				}
			}
			sort.Strings(want)
			for _, limit := range []int{0, 1, 7, 1000} {
				if got := walkSlot(t, db, s, limit); !slices.Equal(got, want) {
					t.Fatalf("%s: slot %d limit %d: walked %d keys %q, want %d keys %q", stage, s, limit, len(got), got, len(want), want)
				}
			}
		}
	}
	check("after puts")

	// Move a third of the keys to another slot by newer versions, and refuse
	// a stale move of others.
	i := 0
	for k := range model {
		switch i % 3 {
		case 0:
			s := slots[(int(model[k])+1)%len(slots)]
			if s == model[k] {
				s = 2
			}
			mustPut(t, db, Entry{Key: k, Slot: s, Held: Held{Version: Version{HLC: 2}}})
			model[k] = s
		case 1:
			if stored, err := db.Put(Entry{Key: k, Slot: 2, Held: Held{Version: Version{HLC: 0}}}); err != nil || stored {
				t.Fatalf("stale Put(%q) = %v, %v; want false, nil", k, stored, err)
			}
		}
		i++
	}
	check("after slot changes")

	i = 0
	for k := range model {
		if i%2 == 0 {
			if err := db.Delete(k); err != nil {
				t.Fatalf("Delete(%q): %v", k, err)
			}
			delete(model, k)
		}
		i++
	}
	if err := db.Delete("/never-stored"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	check("after deletes")
	for k := range model {
		if _, err := db.Get(k); err != nil {
			t.Fatalf("Get(%q) after deletes: %v", k, err)
		}
	}
}

// statsModel computes Stats from a model of the stored entries.
func statsModel(m map[string]Entry) Stats {
	var st Stats
	for _, e := range m {
		st.add(e)
	}
	return st
}

func TestStats(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	db, err := Open(path, noSync)
	if err != nil {
		t.Fatal(err)
	}
	model := map[string]Entry{}
	put := func(e Entry) {
		t.Helper()
		mustPut(t, db, e)
		model[e.Key] = e
	}
	check := func(stage string) {
		t.Helper()
		got, err := db.Stats()
		if err != nil {
			t.Fatalf("%s: Stats: %v", stage, err)
		}
		if want := statsModel(model); got != want {
			t.Fatalf("%s: Stats = %+v, want %+v", stage, got, want)
		}
	}
	check("empty")
	put(Entry{Key: "a", Held: Held{ShardLen: 100, Version: Version{HLC: 1}}})
	put(Entry{Key: "b", Held: Held{ShardLen: 200, Version: Version{HLC: 1}}})
	put(Entry{Key: "c", Held: Held{ShardLen: 300, Version: Version{HLC: 1}}})
	check("three puts")
	put(Entry{Key: "a", Held: Held{ShardLen: 150, Version: Version{HLC: 2}}})
	check("overwrite")
	if stored, _ := db.Put(Entry{Key: "a", Held: Held{ShardLen: 9999, Version: Version{HLC: 1}}}); stored {
		t.Fatal("stale Put stored")
	}
	check("refused put")
	put(Entry{Key: "b", Held: Held{Tombstone: true, Version: Version{HLC: 2}}})
	put(Entry{Key: "d", Held: Held{Tombstone: true, ShardLen: 7, Version: Version{HLC: 2}}})
	check("tombstones")
	put(Entry{Key: "b", Held: Held{ShardLen: 40, Version: Version{HLC: 3}}})
	check("tombstone overwritten by a value")
	if err := db.Delete("c"); err != nil {
		t.Fatal(err)
	}
	delete(model, "c")
	if err := db.Delete("d"); err != nil {
		t.Fatal(err)
	}
	delete(model, "d")
	if err := db.Delete("zz"); err != nil {
		t.Fatal(err)
	}
	check("deletes")
	put(Entry{Key: "e", Held: Held{Tombstone: true, Version: Version{HLC: 5}}})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, path, noSync)
	check("reopen")
	if st, _ := db.Stats(); st != (Stats{Keys: 2, Tombstones: 1, ShardBytes: 190}) {
		t.Fatalf("Stats after reopen = %+v, want {Keys:2 Tombstones:1 ShardBytes:190}", st)
	}
}

func TestDurableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	db, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []Entry
	for i := 0; i < 50; i++ {
		e := Entry{Key: fmt.Sprintf("key-%03d", i), Slot: uint16(i), Held: Held{Index: uint8(i % 6), Kind: 1, K: 4, M: 2, Tombstone: i%10 == 0, ValueLen: uint64(i) << 20, ShardLen: uint32(i) << 18, ShardSum: uint64(i) * 0x9e3779b97f4a7c15, Version: Version{HLC: uint64(i) + 1000, Writer: 7}}}
		mustPut(t, db, e)
		want = append(want, e)
	}
	if err := db.Delete("key-049"); err != nil {
		t.Fatal(err)
	}
	want = want[:49]
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, path, nil)
	got, err := db.ListPrefix("", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen: %d entries\n%+v\nwant %d\n%+v", len(got), got, len(want), want)
	}
	checkConsistent(t, db)
}

func TestConcurrentPuts(t *testing.T) {
	db := openTest(t, "", nil) // with fsync: this is the group-commit path
	const writers, perWriter = 16, 200
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				e := Entry{Key: fmt.Sprintf("w%02d/%04d", w, i), Slot: uint16(i % 16), Held: Held{ShardLen: 1, Version: Version{HLC: uint64(i), Writer: uint64(w)}}}
				if stored, err := db.Put(e); err != nil || !stored {
					errs <- fmt.Errorf("Put(%q) = %v, %v", e.Key, stored, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all, err := db.ListPrefix("", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != writers*perWriter {
		t.Fatalf("listed %d entries, want %d", len(all), writers*perWriter)
	}
	for w := 0; w < writers; w++ {
		for i := 0; i < perWriter; i++ {
			k := fmt.Sprintf("w%02d/%04d", w, i)
			if e := mustGet(t, db, k); e.Version.Writer != uint64(w) || e.Version.HLC != uint64(i) {
				t.Fatalf("Get(%q) = %+v", k, e)
			}
		}
	}
	if st, _ := db.Stats(); st != (Stats{Keys: writers * perWriter, ShardBytes: writers * perWriter}) {
		t.Fatalf("Stats = %+v, want %d keys and shard bytes", st, writers*perWriter)
	}
	checkConsistent(t, db)
}

// TestRandomOpsMatchModel runs a seeded random mix of Put and Delete over a
// small key space and checks every listing and the counters against a map.
func TestRandomOpsMatchModel(t *testing.T) {
	db := openTest(t, "", &Options{NoSync: true, MaxBatchDelay: 1})
	rng := rand.New(rand.NewPCG(5, 6))
	model := map[string]Entry{}
	for op := 0; op < 2000; op++ {
		k := fmt.Sprintf("/%c/%d", 'a'+rng.IntN(3), rng.IntN(40))
		if rng.IntN(5) == 0 {
			if err := db.Delete(k); err != nil {
				t.Fatal(err)
			}
			delete(model, k)
			continue
		}
		e := Entry{Key: k, Slot: uint16(rng.IntN(4)), Held: Held{Index: uint8(rng.IntN(3)), K: uint8(1 + rng.IntN(2)), M: 2, Tombstone: rng.IntN(4) == 0, ShardLen: rng.Uint32N(1000), Version: Version{HLC: uint64(rng.IntN(50)), Writer: uint64(rng.IntN(3))}}}
		old, had := model[k]
		stored, err := db.Put(e)
		if err != nil {
			t.Fatal(err)
		}
		if want := !had || old.Version.Less(e.Version); stored != want {
			t.Fatalf("op %d: Put(%q at %v) over %v (present %v): stored=%v want %v", op, k, e.Version, old.Version, had, stored, want)
		}
		if stored {
			model[k] = e
		}
	}
	var want []Entry
	for _, e := range model {
		want = append(want, e)
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Key < want[j].Key })
	got, err := db.ListPrefix("", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ListPrefix all = %v\nwant %v", got, want)
	}
	for s := uint16(0); s < 5; s++ {
		var ws []string
		for _, e := range want {
			if e.Slot == s {
				ws = append(ws, e.Key)
			}
		}
		if gs := walkSlot(t, db, s, 3); !slices.Equal(gs, ws) {
			t.Fatalf("slot %d: %q, want %q", s, gs, ws)
		}
	}
	if st, _ := db.Stats(); st != statsModel(model) {
		t.Fatalf("Stats = %+v, want %+v", st, statsModel(model))
	}
	checkConsistent(t, db)
}

func TestOpenGarbageFile(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	cases := map[string][]byte{
		"one-byte":     {0x42},
		"text":         []byte("this is not a bbolt database\n"),
		"random-100":   random(100),
		"random-4k":    random(4096),
		"random-64k":   random(65536),
		"zeros-16k":    make([]byte, 16384),
		"ones-8k":      bytes.Repeat([]byte{0xff}, 8192),
		"bolt-magic-4": append(random(16), 0xED, 0x0C, 0xDD, 0xED),
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), name+".db")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := Open(path, noSync)
			if err == nil {
				db.Close()
				t.Fatalf("Open(%s) of garbage succeeded", name)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("Open error %q does not name the path %s", err, path)
			}
		})
	}
	t.Run("missing-dir", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "no", "such", "dir", "index.db")
		_, err := Open(path, nil)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("Open(%s) = %v, want an error naming the path", path, err)
		}
	})
}

func TestOpenOtherBoltDB(t *testing.T) {
	// A valid bbolt file that is an index of an unknown schema is refused.
	path := filepath.Join(t.TempDir(), "index.db")
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(ownBuckets.meta)
		if err != nil {
			return err
		}
		return b.Put(metaSchema, []byte{99})
	})
	bdb.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, nil); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of schema 99 = %v, want an error naming the path", err)
	}
}

// corruptEntry flips one bit of key's stored entry, as a bad disk would.
func corruptEntry(t *testing.T, db *DB, key string) {
	t.Helper()
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(ownBuckets.entries)
		v := bytes.Clone(b.Get([]byte(key)))
		v[len(v)-10] ^= 0x04
		return b.Put([]byte(key), v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCorruptEntry(t *testing.T) {
	db := openTest(t, "", noSync)
	mustPut(t, db, Entry{Key: "/a/good", Slot: 9, Held: Held{ShardLen: 5, Version: Version{HLC: 1}}})
	mustPut(t, db, Entry{Key: "/a/bad", Slot: 9, Held: Held{ShardLen: 5, Version: Version{HLC: 1}}})
	corruptEntry(t, db, "/a/bad")
	var err error
	isCorrupt := func(op string, err error) {
		t.Helper()
		var ce *CorruptError
		if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || ce.Key != "/a/bad" {
			t.Fatalf("%s: error %v, want a CorruptError for /a/bad", op, err)
		}
	}
	_, err = db.Get("/a/bad")
	isCorrupt("Get", err)
	_, err = db.ListPrefix("/a/", "", 0)
	isCorrupt("ListPrefix", err)
	_, err = db.ListSlot(9, "", 0)
	isCorrupt("ListSlot", err)
	_, err = db.Put(Entry{Key: "/a/bad", Slot: 9, Held: Held{Version: Version{HLC: 2}}})
	isCorrupt("Put", err)
	// Opened again, the index cannot sum the slot of an entry it cannot
	// read (loadSums is what Open runs).
	if err := db.loadSums(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Sums(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Sums with a corrupt entry: %v, want ErrCorrupt", err)
	}
	if _, err := db.Get("/a/good"); err != nil {
		t.Fatalf("Get of the intact neighbour: %v", err)
	}

	if err := db.Delete("/a/bad"); err != nil {
		t.Fatalf("Delete of the corrupt entry: %v", err)
	}
	checkConsistent(t, db)
	if got := walkSlot(t, db, 9, 0); !slices.Equal(got, []string{"/a/good"}) {
		t.Fatalf("slot 9 after purge = %q", got)
	}
	mustPut(t, db, Entry{Key: "/a/bad", Slot: 10, Held: Held{Version: Version{HLC: 2}}})
	checkConsistent(t, db)
}

// TestEncodingGolden pins format 5: changing it needs a new format version.
func TestEncodingGolden(t *testing.T) {
	e := Entry{Key: "/k", Slot: 0x0102,
		Held: Held{Index: 3, Kind: 1, K: 4, M: 2, ValueLen: 300, ShardLen: 75, ShardSum: 0x1112131415161718,
			Version: Version{HLC: 0x2122232425262728, Writer: 0x3132333435363738}},
		Also: []Held{{Index: 4, Kind: 1, K: 4, M: 2, ValueLen: 300, ShardLen: 75, ShardSum: 0x5152535455565758,
			Version: Version{HLC: 0x2122232425262728, Writer: 0x3132333435363738},
			Loc:     [16]byte{0x61, 0x62, 15: 0x70}}},
		Older: []Held{{Index: 5, Kind: 2, K: 1, M: 2, Tombstone: true, ValueLen: 1, ShardLen: 2, ShardSum: 0x0102030405060708,
			Version: Version{HLC: 0x1122232425262728, Writer: 0x4142434445464748}}}}
	got := fmt.Sprintf("%x", encodeEntry(e))
	const want = "0501010102" + // format, one more position, one older shard, slot
		"0003010402" + "ac02" + "4b" + "1112131415161718" + "2122232425262728" + "3132333435363738" +
		"0204010402" + "ac02" + "4b" + "5152535455565758" + "2122232425262728" + "3132333435363738" +
		"6162000000000000000000000000" + "0070" + // Loc
		"0105020102" + "01" + "02" + "0102030405060708" + "1122232425262728" + "4142434445464748" +
		"cd62e9d9" // crc32c("/k" + preceding bytes)
	if got != want {
		t.Fatalf("encodeEntry = %s\nwant           %s", got, want)
	}
	if d, err := decodeEntry(e.Key, encodeEntry(e)); err != nil || !reflect.DeepEqual(d, e) {
		t.Fatalf("decode(encode(e)) = %+v, %v", d, err)
	}
}

// TestSumsUnderConcurrentOverwrites: commit handlers run after bbolt lets
// the next transaction in, so concurrent overwrites of the same keys
// reach the sums out of order; they still end equal to a recount, also
// when an entry is purged as corrupt (a reload) while writes go on.
func TestSumsUnderConcurrentOverwrites(t *testing.T) {
	db := openTest(t, "", &Options{NoSync: true, MaxBatchSize: 1})
	const writers, perWriter = 16, 300
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				e := Entry{Key: fmt.Sprintf("/k/%d", i%7), Slot: uint16(i % 3), Held: Held{ShardLen: 1, Version: Version{HLC: uint64(i), Writer: uint64(w)}}}
				if i%2 == 1 { // half keep an older version: Sum.Older counts them
					e.Older = []Held{{ShardLen: 1, Version: Version{HLC: uint64(i - 1)}}}
				}
				if _, err := db.Put(e); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					if err := db.Delete(fmt.Sprintf("/k/%d", (i/50)%7)); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	// Meanwhile a corrupt entry is purged, which recounts every sum.
	mustPut(t, db, Entry{Key: "/bad", Slot: 1, Held: Held{Version: Version{HLC: 1}}})
	corruptEntry(t, db, "/bad")
	if err := db.Delete("/bad"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	checkConsistent(t, db)
}

// PurgeCorrupt removes exactly the entries that do not decode; listings
// and sums work again and count the rest.
func TestPurgeCorrupt(t *testing.T) {
	db := openTest(t, "", noSync)
	for _, k := range []string{"/a/1", "/a/2", "/a/3"} {
		mustPut(t, db, Entry{Key: k, Slot: 9, Held: Held{ShardLen: 5, Version: Version{HLC: 1}}})
	}
	corruptEntry(t, db, "/a/2")
	if _, err := db.ListSlot(9, "", 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ListSlot with a corrupt entry: %v, want ErrCorrupt", err)
	}
	bad, err := db.PurgeCorrupt()
	if err != nil || !slices.Equal(bad, []string{"/a/2"}) {
		t.Fatalf("PurgeCorrupt: %v, %v; want [/a/2]", bad, err)
	}
	es, err := db.ListSlot(9, "", 0)
	if err != nil || len(es) != 2 || es[0].Key != "/a/1" || es[1].Key != "/a/3" {
		t.Fatalf("ListSlot after the purge: %+v, %v", es, err)
	}
	sums, err := db.Sums()
	if err != nil {
		t.Fatalf("sums after the purge: %v", err)
	}
	n := uint64(0)
	for _, s := range sums {
		n += s.Count
	}
	if n != 2 {
		t.Fatalf("sums count %d entries after the purge, want 2", n)
	}
	if bad, err := db.PurgeCorrupt(); err != nil || len(bad) != 0 {
		t.Fatalf("second PurgeCorrupt: %v, %v; want nothing", bad, err)
	}
}

// A purge whose scan is stale (another purge deleted the bad entry, and a
// put stored a good one since) leaves the good entry alone: it used to
// delete it by key, losing a shard the writer had been told was stored.
func TestStalePurgeKeepsGoodEntry(t *testing.T) {
	db := openTest(t, "", noSync)
	good := Entry{Key: "/a/1", Slot: 9, Held: Held{ShardLen: 5, Version: Version{HLC: 1}}}
	mustPut(t, db, good)
	corruptEntry(t, db, good.Key)
	if bad, err := db.PurgeCorrupt(); err != nil || len(bad) != 1 {
		t.Fatalf("first purge: %v, %v", bad, err)
	}
	good.Version.HLC = 2
	mustPut(t, db, good)
	// The second purger's scan listed the key before the first purge.
	if gone, err := db.delete(good.Key, true); err != nil || gone {
		t.Fatalf("stale purge of a good entry: deleted %v, %v; want it kept", gone, err)
	}
	if e, err := db.Get(good.Key); err != nil || e.Version.HLC != 2 {
		t.Fatalf("get after the stale purge: %+v, %v; want version 2", e, err)
	}
}

// TestOldFormatRefused: an index an older version wrote (schema 1, entries
// of format 1) is refused when it opens, with an error that says so, and
// an entry of format 1 does not decode.
func TestOldFormatRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	db := openTest(t, path, nil)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, schema := range []byte{1, 2} {
		bdb, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := bdb.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(ownBuckets.meta).Put(metaSchema, []byte{schema})
		}); err != nil {
			t.Fatal(err)
		}
		if err := bdb.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(path, nil); !errors.Is(err, ErrOldFormat) || !strings.Contains(err.Error(), "older go-ds-cluster") {
			t.Fatalf("open a schema %d index: %v, want ErrOldFormat", schema, err)
		}
	}
	v1 := encodeEntry(Entry{Key: "/k", Held: Held{Version: Version{HLC: 1}}})
	v1[0] = 1
	if _, err := decodeEntry("/k", v1); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "format version 1") {
		t.Fatalf("decode a format 1 entry: %v, want it refused by its format", err)
	}
}

// TestInvalidOlderRefused: an entry whose older versions would not decode
// (too many, or out of order) is refused when stored, and nothing is
// written.
func TestInvalidOlderRefused(t *testing.T) {
	db := openTest(t, "", noSync)
	v := func(hlc uint64) Held { return Held{Version: Version{HLC: hlc}} }
	many := make([]Held, MaxOlder+1)
	for i := range many {
		many[i] = v(uint64(100 - i))
	}
	for name, e := range map[string]Entry{
		"too many":                          {Key: "/k", Held: v(200), Older: many},
		"not older":                         {Key: "/k", Held: v(5), Older: []Held{v(5)}},
		"out of order":                      {Key: "/k", Held: v(9), Older: []Held{v(3), v(4)}},
		"same position twice":               {Key: "/k", Held: v(9), Older: []Held{v(3), v(3)}},
		"also of another version":           {Key: "/k", Held: v(9), Also: []Held{{Index: 1, Version: Version{HLC: 8}}}},
		"also below the newest":             {Key: "/k", Held: Held{Index: 2, Version: Version{HLC: 9}}, Also: []Held{{Index: 1, Version: Version{HLC: 9}}}},
		"a position of the newest in older": {Key: "/k", Held: v(9), Older: []Held{{Index: 1, Version: Version{HLC: 9}}}},
	} {
		if _, err := db.Put(e); !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("%s: Put = %v, want ErrInvalidEntry", name, err)
		}
		if err := db.Replace(e); !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("%s: Replace = %v, want ErrInvalidEntry", name, err)
		}
	}
	if _, err := db.Get("/k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after refused puts: %v, want ErrNotFound", err)
	}
	checkConsistent(t, db)
}

// NewEntry puts shards in the order an entry keeps them: the newest
// version's positions ascending, then older versions newest first, each
// version's positions ascending; the same shard twice counts once.
func TestNewEntry(t *testing.T) {
	at := func(hlc uint64, pos uint8) Held { return Held{Index: pos, Version: Version{HLC: hlc}} }
	e, ok := NewEntry("/k", 7, []Held{at(3, 2), at(9, 4), at(3, 0), at(9, 1), at(5, 3), at(9, 4)})
	want := Entry{Key: "/k", Slot: 7, Held: at(9, 1), Also: []Held{at(9, 4)}, Older: []Held{at(5, 3), at(3, 0), at(3, 2)}}
	if !ok || !reflect.DeepEqual(e, want) {
		t.Fatalf("NewEntry = %+v, %v\nwant       %+v", e, ok, want)
	}
	if err := e.check(); err != nil {
		t.Fatalf("check: %v", err)
	}
	if got := e.At(3); !reflect.DeepEqual(got, []Held{at(5, 3)}) {
		t.Fatalf("At(3) = %+v", got)
	}
	if got := e.Newest(); !reflect.DeepEqual(got, []Held{at(9, 1), at(9, 4)}) {
		t.Fatalf("Newest = %+v", got)
	}
	if _, ok := NewEntry("/k", 7, nil); ok {
		t.Fatal("NewEntry of no shards is ok")
	}
}

// A shard store that moves a shard repoints its entry (MoveTx), and an
// entry read before the move and written after it keeps the new place
// (ReplaceTx takes the stored Loc of every shard both hold): a writer holds
// its key's lock, the store's compaction does not.
func TestMovedShardKeepsItsPlace(t *testing.T) {
	db := openTest(t, "", &Options{NoSync: true})
	at := func(b byte) [16]byte { return [16]byte{15: b} }
	v1, v2 := Version{HLC: 1}, Version{HLC: 2}
	mustPut(t, db, Entry{Key: "/m", Slot: 3, Held: Held{Version: v1, Index: 2, ShardLen: 10, Loc: at(1)}})
	stale, err := db.Get("/m")
	if err != nil {
		t.Fatal(err)
	}
	sumsBefore, _ := db.Sums()
	statsBefore, _ := db.Stats()
	move := func(from, to [16]byte) bool {
		t.Helper()
		var moved bool
		if err := db.Update(func(tx *bolt.Tx) error {
			var err error
			moved, err = db.MoveTx(tx, "/m", from, to)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return moved
	}
	if !move(at(1), at(7)) {
		t.Fatal("MoveTx found no shard at its place")
	}
	if move(at(1), at(8)) {
		t.Fatal("MoveTx moved a shard from a place it had left")
	}
	if e, err := db.Get("/m"); err != nil || e.Loc != at(7) {
		t.Fatalf("after the move: %+v, %v", e, err)
	}
	sumsAfter, _ := db.Sums()
	statsAfter, _ := db.Stats()
	if !reflect.DeepEqual(sumsBefore, sumsAfter) || statsBefore != statsAfter {
		t.Fatalf("a move changed the sums or stats: %v %v, then %v %v", sumsBefore, statsBefore, sumsAfter, statsAfter)
	}

	// A newer version written from the entry read before the move.
	in := Held{Version: v2, Index: 2, ShardLen: 10, Loc: at(9)}
	e, _ := NewEntry("/m", 3, append(stale.Shards(), in))
	var gone [][16]byte
	if err := db.Update(func(tx *bolt.Tx) (err error) { gone, err = db.ReplaceTx(tx, e); return err }); err != nil {
		t.Fatal(err)
	}
	if len(gone) != 0 {
		t.Fatalf("a write that drops nothing gave up places %v", gone)
	}
	got, err := db.Get("/m")
	if err != nil {
		t.Fatal(err)
	}
	if got.Loc != at(9) || len(got.Older) != 1 || got.Older[0].Loc != at(7) {
		t.Fatalf("after a write from a stale read: newest at %v, older %+v; want the new shard at 9 and the moved one at 7", got.Loc, got.Older)
	}
	// Dropping the moved shard, from the same stale read, gives up its
	// place as it is now; deleting the entry, every place it had.
	rest, _ := NewEntry("/m", 3, []Held{in})
	if err := db.Update(func(tx *bolt.Tx) (err error) { gone, err = db.ReplaceTx(tx, rest); return err }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gone, [][16]byte{at(7)}) {
		t.Fatalf("dropping the moved shard gave up %v, want its place now, 7", gone)
	}
	if err := db.Update(func(tx *bolt.Tx) (err error) { gone, err = db.DeleteTx(tx, "/m"); return err }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gone, [][16]byte{at(9)}) {
		t.Fatalf("deleting the entry gave up %v, want 9", gone)
	}
	checkConsistent(t, db)
}
