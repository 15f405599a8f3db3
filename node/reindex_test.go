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
)

// After an operating system crash a node's index is rebuilt from its
// shards: the volume store rebuilds its own from the volume files, and the
// node's entries (tombstones and the previous version kept beside the
// newest included) come back as they were, from the shards' headers. The
// cluster then reads every value as before.
func TestIndexRebuiltFromShards(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Nodes: 6, Store: "volume"})
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
	// One key whose node keeps the value an overwrite replaced.
	n0 := c.Node(0)
	var withPrev string
	for k := range want {
		if want[k] != nil && c.Owners(k)[0] == 0 {
			withPrev = k
			break
		}
	}
	if withPrev == "" {
		t.Fatal("no key with a shard at node 0")
	}
	if err := n0.SetPrevShard(withPrev, encodeShardAt(t, withPrev, 3000, 0, 1)); err != nil {
		t.Fatal(err)
	}
	before, err := n0.IndexEntries()
	if err != nil {
		t.Fatal(err)
	}
	tombstones, prevs := 0, 0
	for _, e := range before {
		if e.Tombstone {
			tombstones++
		}
		if !e.Prev.IsZero() {
			prevs++
		}
	}
	if len(before) == 0 || tombstones == 0 || prevs == 0 {
		t.Fatalf("node 0 holds %d entries, %d tombstones, %d with a previous version: want some of each", len(before), tombstones, prevs)
	}

	c.Stop(0)
	// As an operating system crash leaves it: open, by an earlier boot.
	vol := filepath.Join(c.Dirs[0], "volume")
	if err := os.WriteFile(filepath.Join(vol, "running"), []byte("an earlier boot"), 0o644); err != nil {
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
