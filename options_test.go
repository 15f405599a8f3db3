package dscluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
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
	// The nodes answer; the policy does not fit their map. The error says
	// that, not that no node could be reached.
	_, err := dscluster.Open(ctx, c.ClientConfig(), &dscluster.Options{Policy: coding.Erasure(6, 3)})
	if err == nil || !strings.Contains(err.Error(), "needs 9 nodes per slot") || strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("a 6+3 policy on a width-6 map: %v, want the policy named as too wide", err)
	}
}

// TestReadSeesPastAStaleFirstPosition: reads ask the first positions every
// acknowledged write reaches (2 with the defaults) and go further only when
// one of them does not answer. Position 0 holds a stale replica and
// position 1 is down for the reader: Get, GetSize and Has must ask on and
// find the newer value (and then its tombstone), never serve the stale one.
func TestReadSeesPastAStaleFirstPosition(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	k := ds.NewKey("/stale/first")
	owners := c.Owners(k.String())
	v1 := bytes.Repeat([]byte("1"), 1000)
	v2 := bytes.Repeat([]byte("2"), 2000) // both replicated (under 16 KiB)
	if err := c.Client(nil).Put(ctx, k, v1); err != nil {
		t.Fatal(err)
	}
	// A writer that cannot reach position 0 stores v2 on positions 1 and
	// 2, its quorum of the three replicas; position 0 keeps v1.
	writer := c.Client(&dscluster.Options{Down: []int{owners[0]}})
	if err := writer.Put(ctx, k, v2); err != nil {
		t.Fatal(err)
	}
	reader := c.Client(&dscluster.Options{Down: []int{owners[1]}})
	got, err := reader.Get(ctx, k)
	if err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("get with position 1 down: %q (%d bytes), %v; want the %d bytes of v2", got[:min(len(got), 8)], len(got), err, len(v2))
	}
	if size, err := reader.GetSize(ctx, k); err != nil || size != len(v2) {
		t.Fatalf("getsize with position 1 down: %d, %v; want %d", size, err, len(v2))
	}
	// A reader that reaches positions 0 and 1 stops there and is right.
	if got, err := c.Client(nil).Get(ctx, k); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("get: %d bytes, %v; want v2", len(got), err)
	}

	if err := writer.Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	if has, err := reader.Has(ctx, k); err != nil || has {
		t.Fatalf("has after delete, position 1 down: %v, %v; want false (position 0 still holds v1)", has, err)
	}
	if _, err := reader.Get(ctx, k); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("get after delete, position 1 down: %v; want ds.ErrNotFound", err)
	}
}
