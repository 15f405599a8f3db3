package dscluster_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dstest "github.com/ipfs/go-datastore/test"

	"github.com/filedrive-team/go-ds-cluster/clustertest"
)

// TestConformance runs go-datastore's own suite against a real cluster,
// on each shard store.
func TestConformance(t *testing.T) {
	// The suite's smallest sanctioned element count (it uses 20 itself under
	// the race detector): its query combinations write and delete 4×ElemCount
	// keys over 1152 queries, every one a network round trip here.
	dstest.ElemCount = 20
	for _, store := range []string{"volume", "flatfs"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel() // flatfs takes about three times as long
			c := clustertest.Start(t, clustertest.Options{Store: store})
			dstest.SubtestAll(t, c.Client(nil))
		})
	}
}

func TestPutGetDelete(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)
	for _, n := range []int{0, 1, 100, 16 << 10, 256 << 10, 1<<20 + 3} {
		k := ds.NewKey("/k").ChildString(string(rune('a' + n%26)))
		val := bytes.Repeat([]byte{byte(n)}, n)
		if err := d.Put(ctx, k, val); err != nil {
			t.Fatalf("put %d bytes: %v", n, err)
		}
		got, err := d.Get(ctx, k)
		if err != nil {
			t.Fatalf("get %d bytes: %v", n, err)
		}
		if !bytes.Equal(got, val) {
			t.Fatalf("get %d bytes: got %d different bytes", n, len(got))
		}
		if err := d.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Get(ctx, k); !errors.Is(err, ds.ErrNotFound) {
			t.Fatalf("get after delete: %v, want ErrNotFound", err)
		}
	}
}
