package dscluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	ds "github.com/ipfs/go-datastore"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/clustertest"
)

// TestBatchGroupsPerNode commits a batch of small and large values through
// the per-node batch requests, overwrites and deletes some in a second
// batch, and reads everything back.
func TestBatchGroupsPerNode(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)
	rng := rand.New(rand.NewPCG(7, 7))
	want := map[ds.Key][]byte{}
	b, err := d.Batch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		n := 1 + rng.IntN(64<<10)
		if i%10 == 0 {
			n = 256<<10 + rng.IntN(1000)
		}
		val := make([]byte, n)
		for j := range val {
			val[j] = byte(rng.Uint32())
		}
		k := ds.NewKey(fmt.Sprintf("/batch/%03d", i))
		want[k] = append([]byte(nil), val...)
		if err := b.Put(ctx, k, val); err != nil {
			t.Fatal(err)
		}
		val[0] ^= 0xff // callers may reuse the buffer: the batch must have copied it
	}
	if err := b.Commit(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	b2, _ := d.Batch(ctx)
	for i := 0; i < 300; i += 3 {
		k := ds.NewKey(fmt.Sprintf("/batch/%03d", i))
		if i%2 == 0 {
			if err := b2.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
			delete(want, k)
			continue
		}
		val := []byte(fmt.Sprintf("overwritten %d", i))
		want[k] = val
		if err := b2.Put(ctx, k, val); err != nil {
			t.Fatal(err)
		}
	}
	if err := b2.Commit(ctx); err != nil {
		t.Fatalf("commit 2: %v", err)
	}
	for i := 0; i < 300; i++ {
		k := ds.NewKey(fmt.Sprintf("/batch/%03d", i))
		got, err := d.Get(ctx, k)
		w, ok := want[k]
		switch {
		case !ok && !errors.Is(err, ds.ErrNotFound):
			t.Fatalf("%s: deleted in a batch, Get gave %d bytes, err %v", k, len(got), err)
		case ok && err != nil:
			t.Fatalf("%s: %v", k, err)
		case ok && !bytes.Equal(got, w):
			t.Fatalf("%s: got %d bytes, want %d different ones", k, len(got), len(w))
		}
	}
}

// TestBatchQuorumError: with 2 nodes stopped a batch of erasure-coded
// values cannot reach quorum k+1=5 and Commit says so for each key.
func TestBatchQuorumError(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)
	c.Stop(1)
	c.Stop(2)
	b, _ := d.Batch(ctx)
	for i := 0; i < 5; i++ {
		if err := b.Put(ctx, ds.NewKey(fmt.Sprintf("/q/%d", i)), make([]byte, 100<<10)); err != nil {
			t.Fatal(err)
		}
	}
	err := b.Commit(ctx)
	if !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("commit with 2 of 6 nodes down: %v, want ErrQuorum", err)
	}
}
