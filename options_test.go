package dscluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	ds "github.com/ipfs/go-datastore"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/clustertest"
	"github.com/filedrive-team/go-ds-cluster/coding"
)

// TestOptionDown: a front end that treats 2 nodes as down rebuilds every
// value without contacting them; with 3 it reports them unavailable.
func TestOptionDown(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)
	vals := map[ds.Key][]byte{}
	for i := 0; i < 20; i++ {
		k := ds.NewKey(fmt.Sprintf("/down/%d", i))
		vals[k] = bytes.Repeat([]byte{byte(i)}, 1000+i*20000)
		if err := d.Put(ctx, k, vals[k]); err != nil {
			t.Fatal(err)
		}
	}
	// Stop the nodes as well: a front end that contacted them would fail
	// differently (a dial error instead of "marked down").
	c.Stop(1)
	c.Stop(4)
	two := c.Client(&dscluster.Options{Down: []int{1, 4}})
	for k, want := range vals {
		got, err := two.Get(ctx, k)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s with nodes 1,4 down: %d bytes, err %v", k, len(got), err)
		}
	}
	three := c.Client(&dscluster.Options{Down: []int{1, 4, 0}})
	k := ds.NewKey("/down/19") // 381 KB: erasure coded on all 6 nodes
	_, err := three.Get(ctx, k)
	var ue *dscluster.UnavailableError
	if !errors.As(err, &ue) || ue.Found != 3 || !bytes.Contains([]byte(err.Error()), []byte("marked down")) {
		t.Fatalf("get with 3 nodes down: %v, want unavailable, 3 found, naming the marked-down nodes", err)
	}
}

// TestOptionPolicy: a front end with its own policy (2+1 and 3 replicas)
// round-trips values on the 4+2 cluster.
func TestOptionPolicy(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	for _, p := range []coding.Policy{coding.Erasure(2, 1), coding.Erasure(3, 3)} {
		d := c.Client(&dscluster.Options{Policy: p})
		k := ds.NewKey("/policy/" + p.String())
		val := bytes.Repeat([]byte("x"), 300<<10+1)
		if err := d.Put(ctx, k, val); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		got, err := d.Get(ctx, k)
		if err != nil || !bytes.Equal(got, val) {
			t.Fatalf("%s: %d bytes, err %v", p, len(got), err)
		}
	}
	if _, err := dscluster.Open(ctx, c.ClientConfig(), &dscluster.Options{Policy: coding.Erasure(6, 3)}); err == nil {
		t.Fatal("a 6+3 policy on a width-6 map was accepted")
	}
}
