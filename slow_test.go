package dscluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/network"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/clustertest"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// hang makes node x read the first request of every new stream and answer
// none, until the test ends (its connections stay open, as a hung or
// overloaded process's do). It counts the shard requests (get, put, batch
// put) it takes; the leader's heartbeats are held too, but not counted.
func hang(t *testing.T, c *clustertest.Cluster, x int) *atomic.Int64 {
	var held atomic.Int64
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	c.Node(x).Host().SetStreamHandler(wire.ShardProtocol, func(s network.Stream) {
		if f, err := wire.ReadFrame(s, nil); err == nil {
			if r, err := wire.DecodeRequest(f); err == nil && (r.Op == wire.OpGet || r.Op == wire.OpPut || r.Op == wire.OpBatchPut) {
				held.Add(1)
			}
		}
		<-release
		_ = s.Reset()
	})
	return &held
}

// TestHungNodeIsAskedLast: a node that takes requests and never answers
// (its connection stays open) costs the front end one hedge, not one per
// operation. Once a request to it is overdue the client marks it slow:
// reads ask it last, and settle without it; writes return with their
// quorum instead of waiting HedgeAfter for it. The hedge here is 2 s, so
// that paying it per operation (which the test would see as at least
// 40 s) cannot be mistaken for paying it once.
func TestHungNodeIsAskedLast(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)
	var keys []ds.Key
	var vals [][]byte
	for i := 0; i < 20; i++ {
		keys = append(keys, ds.NewKey(fmt.Sprintf("/hung/%d", i)))
		vals = append(vals, bytes.Repeat([]byte{byte(i)}, 100<<10+i))
		if err := d.Put(ctx, keys[i], vals[i]); err != nil {
			t.Fatal(err)
		}
	}

	const x = 3
	held := hang(t, c, x)
	// A new front end (no pooled streams to x), with the hedge and the
	// request timeout from its config file, as kubo's plugin reads them.
	const hedge = 2 * time.Second
	cfg := c.ClientConfig()
	cfg.HedgeAfter, cfg.Timeout = hedge.String(), time.Minute.String()
	d, err := dscluster.Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	start := time.Now()
	for i, k := range keys {
		got, err := d.Get(ctx, k)
		if err != nil || !bytes.Equal(got, vals[i]) {
			t.Fatalf("get %s with node %d hung: %d bytes, %v", k, x, len(got), err)
		}
	}
	gets := time.Since(start)
	// Node x is at one of the first 4 positions of 2/3 of the keys; only
	// the first read that asks it waits for it: its hedge marks x slow.
	if n := held.Load(); n != 1 {
		t.Fatalf("%d reads waited for the hung node, want 1", n)
	}
	if gets > 5*hedge {
		t.Fatalf("%d gets took %s with a hedge of %s: the hung node was waited for more than twice", len(keys), gets, hedge)
	}
	if gets < hedge {
		t.Fatalf("%d gets took %s: the read that asked the hung node did not wait the configured hedge of %s", len(keys), gets, hedge)
	}

	start = time.Now()
	more := make([]ds.Key, 10)
	for i := range more {
		more[i] = ds.NewKey(fmt.Sprintf("/hung/more/%d", i))
		if err := d.Put(ctx, more[i], vals[i]); err != nil {
			t.Fatalf("put %s with node %d hung: %v", more[i], x, err)
		}
		if has, err := d.Has(ctx, more[i]); err != nil || !has {
			t.Fatalf("has %s with node %d hung: %v, %v", more[i], x, has, err)
		}
	}
	// Each put still sends x its shard (held below the in-flight bound),
	// but none waits for it.
	if n := held.Load(); n < int64(len(more)) {
		t.Fatalf("%d requests reached the hung node, want at least one per put (%d)", n, len(more))
	}
	if took := time.Since(start); took > 5*hedge {
		t.Fatalf("%d puts and has took %s with a hedge of %s: writes waited for the hung node", len(more), took, hedge)
	}
	t.Logf("with node %d hung: %d gets in %s, %d puts and has in %s; %d requests held",
		x, len(keys), gets.Round(time.Millisecond), len(more), time.Since(start).Round(time.Millisecond), held.Load())

	// A batch (how kubo writes) does not wait for it either.
	batchPut := func(name string) {
		t.Helper()
		start := time.Now()
		b, err := d.Batch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var bk []ds.Key
		for i := range 10 {
			k := ds.NewKey(fmt.Sprintf("/hung/%s/%d", name, i))
			bk = append(bk, k)
			if err := b.Put(ctx, k, vals[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(ctx); err != nil {
			t.Fatalf("%s: batch commit with node %d hung: %v", name, x, err)
		}
		if took := time.Since(start); took > 2*hedge {
			t.Fatalf("%s: batch commit took %s with a hedge of %s: it waited for the hung node", name, took, hedge)
		}
		for i, k := range bk {
			if got, err := d.Get(ctx, k); err != nil || !bytes.Equal(got, vals[i]) {
				t.Fatalf("%s: get %s: %d bytes, %v", name, k, len(got), err)
			}
		}
	}
	batchPut("batch")

	// Past 64 requests waiting on it, writes stop sending it shards (the
	// buffers a hung node holds are bounded); they still reach their
	// quorum on the others.
	const bound = 64 // maxSlowInFlight
	for i := 0; i < bound+20; i++ {
		k := ds.NewKey(fmt.Sprintf("/hung/bound/%d", i))
		if err := d.Put(ctx, k, vals[i%len(vals)]); err != nil {
			t.Fatalf("put %s with node %d hung: %v", k, x, err)
		}
	}
	if n := held.Load(); n > bound+2 {
		t.Fatalf("%d requests wait on the hung node, want at most %d", n, bound+2)
	}
	// (Requests already sent reach the handler a moment later: wait
	// until the count settles.)
	before := held.Load()
	for {
		time.Sleep(200 * time.Millisecond)
		if n := held.Load(); n != before {
			before = n
			continue
		}
		break
	}
	batchPut("batch-bounded") // now sends it nothing
	if n := held.Load(); n != before {
		t.Fatalf("a batch sent %d requests to the hung node past the bound", n-before)
	}
}

// TestTimedOutOwnersHoldAReadUpOnce: a read that cannot serve the newest
// version it finds asks the positions which older versions they hold. An
// owner whose shard request ran out of time is not asked again: three hung
// owners cost the read one request timeout, not two.
func TestTimedOutOwnersHoldAReadUpOnce(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	k := ds.NewKey("/hung/older")
	if err := c.Client(nil).Put(ctx, k, bytes.Repeat([]byte{7}, 100<<10)); err != nil {
		t.Fatal(err)
	}
	owners := c.Owners(k.String())
	var held []*atomic.Int64
	for _, x := range owners[:3] {
		held = append(held, hang(t, c, x))
	}
	cfg := c.ClientConfig()
	cfg.HedgeAfter, cfg.Timeout = "100ms", "2s"
	d, err := dscluster.Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, err = d.Get(ctx, k)
	var ue *dscluster.UnavailableError
	if !errors.As(err, &ue) || ue.Found != 3 {
		t.Fatalf("get %s with the owners of positions 0-2 hung: %v, want 3 shards found of 4", k, err)
	}
	for pos, n := range held {
		if got := n.Load(); got != 1 {
			t.Errorf("the hung owner of position %d (node %d) took %d requests of one read, want 1", pos, owners[pos], got)
		}
	}

	// With a node whose last dial failed, a read runs again without
	// skipping it (it may be back): the hung owners are not asked again.
	c.Stop(owners[2])
	if _, err := d.Get(ctx, k); !errors.As(err, &ue) {
		t.Fatalf("get %s with two owners hung and one stopped: %v", k, err)
	}
	before := []int64{held[0].Load(), held[1].Load()}
	_, err = d.Get(ctx, k)
	if !errors.As(err, &ue) {
		t.Fatalf("get %s with two owners hung and one stopped: %v", k, err)
	}
	for pos := range 2 {
		if got := held[pos].Load() - before[pos]; got != 1 {
			t.Errorf("the hung owner of position %d took %d requests of a read that ran twice, want 1", pos, got)
		}
	}
}
