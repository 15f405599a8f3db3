package dscluster_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"

	"github.com/filedrive-team/go-ds-cluster/clustertest"
)

// TestVolumeStoreCluster runs a cluster whose nodes keep shards in the
// volume store: values survive 2 nodes stopped and a restart of every node.
func TestVolumeStoreCluster(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{Store: "volume", Sync: true})
	d := c.Client(nil)
	vals := map[ds.Key][]byte{}
	for i := 0; i < 60; i++ {
		k := ds.NewKey(fmt.Sprintf("/vol/%d", i))
		v := bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 1+i*3000)
		vals[k] = v
		if err := d.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Delete(ctx, ds.NewKey("/vol/7")); err != nil {
		t.Fatal(err)
	}
	delete(vals, ds.NewKey("/vol/7"))
	check := func(when string) {
		t.Helper()
		for k, want := range vals {
			got, err := d.Get(ctx, k)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: %s: %d bytes, err %v", when, k, len(got), err)
			}
		}
		if _, err := d.Get(ctx, ds.NewKey("/vol/7")); err != ds.ErrNotFound {
			t.Fatalf("%s: deleted key: %v", when, err)
		}
	}
	c.Stop(2)
	c.Stop(5)
	check("2 nodes stopped")
	for i := 0; i < 6; i++ {
		c.Stop(i)
		c.Restart(i)
	}
	check("every node restarted")
}

// TestVolumeCompaction: nodes compact their volume stores in the background;
// overwritten and deleted shards give their space back and every live value
// still reads back.
//
// An overwrite appends the old shard again as the key's previous one (kept
// until the write is acknowledged) before the new shard, so the second
// round's volumes alternate garbage and live records: a volume of them can
// stay just under the half garbage that compaction asks for. The bound
// below holds whatever the layout: the first round is all garbage; a
// sealed volume compaction leaves holds at most twice its live bytes;
// and the active volume adds at most one volume. With a quarter of the
// keys left (165 KiB of shards per node, of 660 KiB a round) that is at
// most 330+128 KiB, under the 495 KiB the test asks for.
func TestVolumeCompaction(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{Store: "volume", VolumeSize: 128 << 10, CompactEvery: 100 * time.Millisecond})
	d := c.Client(nil)
	put := func(round byte) map[ds.Key][]byte {
		vals := map[ds.Key][]byte{}
		for i := 0; i < 40; i++ {
			k := ds.NewKey(fmt.Sprintf("/compact/%d", i))
			v := bytes.Repeat([]byte{round, byte(i)}, 32<<10)
			vals[k] = v
			if err := d.Put(ctx, k, v); err != nil {
				t.Fatal(err)
			}
		}
		return vals
	}
	put(1)
	full, err := d.DiskUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vals := put(2) // the first round is garbage now
	for i := 0; i < 30; i++ {
		k := ds.NewKey(fmt.Sprintf("/compact/%d", i))
		if err := d.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		delete(vals, k)
	}
	var now uint64
	deadline := time.Now().Add(20 * time.Second)
	for {
		if now, err = d.DiskUsage(ctx); err != nil {
			t.Fatal(err)
		}
		// A quarter of the keys are live, once each.
		if now < full*3/4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if now >= full*3/4 {
		t.Fatalf("disk usage %d after overwriting and deleting, %d after the first round: compaction did not reclaim", now, full)
	}
	for k, want := range vals {
		got, err := d.Get(ctx, k)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s after compaction: %d bytes, err %v", k, len(got), err)
		}
	}
}

// TestCompactionUnderLoad: writers overwrite their keys and read each value
// back at once while every node compacts its volumes all the time, so
// that compaction moves shards whose entries writers have just read (to
// keep them as older versions, or drop them) and readers are about to
// read. Every read returns the value just acknowledged, and the space of
// the overwritten versions comes back.
func TestCompactionUnderLoad(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{Store: "volume", VolumeSize: 64 << 10, CompactEvery: 5 * time.Millisecond})
	d := c.Client(nil)
	const writers, keys, rounds = 4, 6, 25
	value := func(w, k, r int) []byte { return bytes.Repeat([]byte{byte(w), byte(k), byte(r)}, 4000) }
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		go func() {
			errs <- func() error {
				for r := 0; r < rounds; r++ {
					for k := 0; k < keys; k++ {
						key := ds.NewKey(fmt.Sprintf("/load/%d/%d", w, k))
						if err := d.Put(ctx, key, value(w, k, r)); err != nil {
							return fmt.Errorf("put %s round %d: %w", key, r, err)
						}
						got, err := d.Get(ctx, key)
						if err != nil || !bytes.Equal(got, value(w, k, r)) {
							return fmt.Errorf("get %s right after round %d's put: %d bytes, %v", key, r, len(got), err)
						}
					}
				}
				return nil
			}()
		}()
	}
	for w := 0; w < writers; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// 24 values of 12,000 bytes are live, 1.5 times over in shards: 432 KB
	// of the 10.8 MB written. Compaction leaves each node at most a
	// sealed volume's worth of garbage per live volume, and the active one.
	var used uint64
	clustertest.WaitFor(t, 20*time.Second, "overwritten versions reclaimed", func() (bool, string) {
		var err error
		if used, err = d.DiskUsage(ctx); err != nil {
			return false, err.Error()
		}
		return used < 3<<20, fmt.Sprintf("%d bytes on the nodes' disks", used)
	})
	for w := 0; w < writers; w++ {
		for k := 0; k < keys; k++ {
			key := ds.NewKey(fmt.Sprintf("/load/%d/%d", w, k))
			if got, err := d.Get(ctx, key); err != nil || !bytes.Equal(got, value(w, k, rounds-1)) {
				t.Fatalf("%s after compaction: %d bytes, %v", key, len(got), err)
			}
		}
	}
}
