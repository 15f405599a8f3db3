package dscluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	ds "github.com/ipfs/go-datastore"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/clustertest"
)

// tombstones sums the tombstones the nodes' indexes hold.
func tombstones(t *testing.T, d *dscluster.Datastore) int {
	t.Helper()
	total := 0
	for _, s := range d.Status(context.Background()) {
		if s.Err != nil {
			t.Fatalf("status of node %d: %v", s.Index, s.Err)
		}
		var st struct{ Tombstones int }
		if err := json.Unmarshal(s.Status, &st); err != nil {
			t.Fatal(err)
		}
		total += st.Tombstones
	}
	return total
}

func TestCollectGarbagePurgesTombstones(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(&dscluster.Options{TombstoneGrace: -1})
	keep := c.Client(nil) // default grace: purges nothing this young
	for i := 0; i < 20; i++ {
		k := ds.NewKey(fmt.Sprintf("/gc/%d", i))
		if err := d.Put(ctx, k, make([]byte, 100+i*1000)); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := d.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
	}
	// 10 deletes, each a tombstone on all 6 positions.
	if got := tombstones(t, d); got != 60 {
		t.Fatalf("tombstones before gc: %d, want 60", got)
	}
	if err := keep.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if got := tombstones(t, d); got != 60 {
		t.Fatalf("tombstones after gc within the grace: %d, want 60", got)
	}
	if err := d.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if got := tombstones(t, d); got != 0 {
		t.Fatalf("tombstones after gc: %d, want 0", got)
	}
	for i := 0; i < 20; i++ {
		k := ds.NewKey(fmt.Sprintf("/gc/%d", i))
		has, err := d.Has(ctx, k)
		if err != nil || has != (i%2 == 1) {
			t.Fatalf("%s after gc: has=%v err=%v", k, has, err)
		}
	}
}

// TestCollectGarbageKeepsPartialTombstones: a tombstone that a stopped node
// missed must stay where it is, to hide that node's old shard when it
// returns.
func TestCollectGarbageKeepsPartialTombstones(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(&dscluster.Options{TombstoneGrace: -1})
	k := ds.NewKey("/gc/partial")
	if err := d.Put(ctx, k, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	c.Stop(c.Owners(k.String())[5])
	if err := d.Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := d.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	c.Restart(c.Owners(k.String())[5])
	if got := tombstones(t, d); got != 5 {
		t.Fatalf("tombstones after gc with one node missing it: %d, want 5 kept", got)
	}
	if _, err := d.Get(ctx, k); err != ds.ErrNotFound {
		t.Fatalf("get after delete and gc: %v, want ErrNotFound", err)
	}
}
