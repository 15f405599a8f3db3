package dscluster_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

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
