package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"

	"github.com/filedrive-team/go-ds-cluster/clustertest"
	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/node"
	"github.com/filedrive-team/go-ds-cluster/volume"
)

// entriesOnDisk is every index entry of the stopped node whose volume
// store is in dir.
func entriesOnDisk(t *testing.T, dir string) []index.Entry {
	t.Helper()
	v, err := node.OpenVolume(dir, volume.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	idx, err := index.OpenIn(v.DB(), nil)
	if err != nil {
		t.Fatal(err)
	}
	es, err := idx.ListPrefix("", "", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// After an operating system crash a node's index is rebuilt from its
// shards: the volume store rebuilds its own from the volume files, and the
// node's entries (tombstones, a second position and the older versions
// kept beside the newest included) come back as they were, from the shards' headers. The
// cluster then reads every value as before.
func TestIndexRebuiltFromShards(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Nodes: 6, Store: "volume", RepairInterval: time.Hour})
	d := c.Client(nil)
	defer d.Close()
	want := map[string][]byte{}
	for i := 0; i < 60; i++ {
		k := fmt.Sprintf("/re/%02d", i)
		v := bytes.Repeat([]byte{byte(i)}, 1000+i*3000)
		if err := d.Put(ctx, ds.NewKey(k), v); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	for i := 0; i < 60; i += 3 {
		k := fmt.Sprintf("/re/%02d", i)
		if i%2 == 0 {
			if err := d.Delete(ctx, ds.NewKey(k)); err != nil {
				t.Fatal(err)
			}
			want[k] = nil
			continue
		}
		v := bytes.Repeat([]byte{byte(i + 1)}, 5000)
		if err := d.Put(ctx, ds.NewKey(k), v); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	// One key whose node keeps two older versions, as two overwrites
	// leave it: a key written once, so that no drop of older versions is
	// on its way.
	n0 := c.Node(0)
	var withPrev string
	for i := 1; i < 60 && withPrev == ""; i++ {
		if k := fmt.Sprintf("/re/%02d", i); i%3 != 0 && c.Owners(k)[0] == 0 {
			withPrev = k
		}
	}
	if withPrev == "" {
		t.Fatal("no key with a shard at node 0")
	}
	for hlc := uint64(1); hlc <= 2; hlc++ {
		if err := n0.SetPrevShard(withPrev, encodeShardAt(t, withPrev, 3000, 0, hlc)); err != nil {
			t.Fatal(err)
		}
	}
	// And a second position of its newest version, as a rebalance leaves
	// it.
	second, err := c.Node(c.Owners(withPrev)[1]).ShardAt(withPrev, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := n0.SetPrevShard(withPrev, second); err != nil {
		t.Fatal(err)
	}
	// The front end drops and supersedes older shards in the background:
	// close it first, and read node 0's index from its files once it is
	// stopped.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	c.Stop(0)
	vol := filepath.Join(c.Dirs[0], "volume")
	before := entriesOnDisk(t, vol)
	tombstones, prevs := 0, 0
	for _, e := range before {
		if e.Tombstone {
			tombstones++
		}
		if len(e.Older) == 2 && len(e.Also) == 1 {
			prevs++
		}
	}
	if len(before) == 0 || tombstones == 0 || prevs == 0 {
		t.Fatalf("node 0 holds %d entries, %d tombstones, %d with two positions and two older versions: want some of each", len(before), tombstones, prevs)
	}
	// As an operating system crash leaves it: open, by an earlier boot.
	if err := os.WriteFile(filepath.Join(vol, volume.RunFile), []byte("an earlier boot"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Restart(0)
	if _, err := os.Stat(filepath.Join(vol, "index.bolt.bad")); err != nil {
		t.Fatalf("no rebuild: %v", err)
	}
	after, err := c.Node(0).IndexEntries()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("index after the rebuild differs:\nbefore %v\nafter  %v", before, after)
	}
	d2 := c.Client(nil)
	defer d2.Close()
	for k, v := range want {
		got, err := d2.Get(ctx, ds.NewKey(k))
		if v == nil {
			if !errors.Is(err, ds.ErrNotFound) {
				t.Fatalf("%s was deleted: %v", k, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("%s: %d bytes, %v; want %d bytes", k, len(got), err, len(v))
		}
	}
}
