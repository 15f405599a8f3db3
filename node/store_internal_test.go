package node

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	ds "github.com/ipfs/go-datastore"
	flatfs "github.com/ipfs/go-ds-flatfs"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/index"
)

// A MongoDB store that cannot open is an error and no store: it used to be
// a nil *mongods.Datastore in the interface, which Start's cleanup closed
// (a panic that hid the error).
func TestOpenMongoDBStoreFails(t *testing.T) {
	_, key, err := config.NewPrivKey()
	if err != nil {
		t.Fatal(err)
	}
	for uri, want := range map[string]string{
		"":                       "give its URI",
		"mongodb://u:pa/ss@h/db": "does not parse",
	} {
		st, err := openStore(context.Background(), &config.Node{Store: "mongodb", PrivKey: key}, Options{MongoDB: uri})
		if st != nil || err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("openStore with URI %q: store %v, err %v; want no store and an error saying %q", uri, st, err, want)
		}
	}
}

// An index that names keys over a shard store that holds none is refused:
// another store than the index's (a MongoDB URI naming another database).
func TestIndexOverAnEmptyStoreRefused(t *testing.T) {
	dir := t.TempDir()
	open := func() error {
		store, err := openFlatfs(dir, false)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		idx, _, err := openIndex(dir, store, true)
		if err == nil {
			defer idx.Close()
		}
		return err
	}
	if err := open(); err != nil {
		t.Fatalf("a new node: %v", err)
	}
	idx, err := index.Open(filepath.Join(dir, "index.db"), &index.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	e, ok := index.NewEntry("/k", 1, []index.Held{{Version: index.Version{HLC: 1, Writer: 1}, Kind: 1, K: 4, M: 2, ValueLen: 1, ShardLen: 1}})
	if !ok {
		t.Fatal("NewEntry refused the entry")
	}
	if _, err := idx.Put(e); err != nil {
		t.Fatal(err)
	}
	idx.Close()
	if err := open(); err == nil || !strings.Contains(err.Error(), "the index names 1 keys but the shard store holds none") {
		t.Fatalf("an index over an empty store: %v; want a refusal", err)
	}
}

// A flatfs shard store made with another sharding (next-to-last/2, before
// shardDirs) opens with it, its files where they were; a new one takes
// shardDirs.
func TestFlatfsKeepsItsSharding(t *testing.T) {
	ctx := context.Background()
	old := t.TempDir()
	fs, err := flatfs.CreateOrOpen(filepath.Join(old, "shards"), flatfs.NextToLast(2), false)
	if err != nil {
		t.Fatal(err)
	}
	k := ds.NewKey("/ABCDEFG-0123")
	if err := fs.Put(ctx, k, []byte("shard")); err != nil {
		t.Fatal(err)
	}
	if err := fs.Close(); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]string{old: flatfs.NextToLast(2).String(), t.TempDir(): shardDirs.String()} {
		st, err := openFlatfs(dir, false)
		if err != nil {
			t.Fatalf("open the store in %s: %v", dir, err)
		}
		if got := st.(*flatfs.Datastore).ShardStr(); got != want {
			t.Errorf("store in %s shards by %s, want %s", dir, got, want)
		}
		if dir == old {
			if v, err := st.Get(ctx, k); err != nil || string(v) != "shard" {
				t.Errorf("the older store's file: %q, %v", v, err)
			}
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// shardName's names are those of the format it replaced, byte for byte:
// shard stores hold them.
func TestShardNameFormat(t *testing.T) {
	for _, tc := range []struct {
		key string
		v   index.Version
		pos uint8
	}{
		{"/a", index.Version{}, 0},
		{"/CIQA4T3TD3BP3C2M3GXCGRCRTCCHV7XSGAZPZJOAOHLPOI6IQR3H6YQ", index.Version{HLC: 1 << 63, Writer: 0xDEADBEEF}, 5},
		{"", index.Version{HLC: ^uint64(0), Writer: ^uint64(0)}, 255},
	} {
		sum := sha256.Sum256([]byte(tc.key))
		want := fmt.Sprintf("/%s-%016X%016X%02X", base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]), tc.v.HLC, tc.v.Writer, tc.pos)
		if got := shardName(tc.key, tc.v, tc.pos).String(); got != want {
			t.Errorf("shardName(%q, %v, %d) = %s, want %s", tc.key, tc.v, tc.pos, got, want)
		}
		if got := ShardNamePrefix(tc.key); "/"+got != want[:len(got)+1] {
			t.Errorf("ShardNamePrefix(%q) = %s, not the start of %s", tc.key, got, want)
		}
	}
}
