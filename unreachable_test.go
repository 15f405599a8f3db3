package dscluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/clustertest"
)

// TestDeadNodeIsNotDialledPerRequest: a node whose dial failed is not
// dialled again for a second (transport.RedialAfter); reads meanwhile go
// to the other positions without touching the network for it. Here the
// dead node's port answers TCP and drops every connection, and the test
// counts the dials: about one per second, not one per read.
func TestDeadNodeIsNotDialledPerRequest(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)
	var keys []ds.Key
	var vals [][]byte
	for i := 0; i < 40; i++ {
		keys = append(keys, ds.NewKey(fmt.Sprintf("/dead/%d", i)))
		vals = append(vals, bytes.Repeat([]byte{byte(i)}, 100<<10+i))
		if err := d.Put(ctx, keys[i], vals[i]); err != nil {
			t.Fatal(err)
		}
	}
	const x = 3
	var port string
	for _, a := range c.Node(x).Addrs() {
		if s := a.String(); strings.HasPrefix(s, "/ip4/127.0.0.1/tcp/") {
			port = strings.TrimPrefix(s, "/ip4/127.0.0.1/tcp/")
		}
	}
	c.Stop(x)
	l, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatalf("take over node %d's port %s: %v", x, port, err)
	}
	defer l.Close()
	var dials atomic.Int64
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			conn.Close()
		}
	}()

	d = c.Client(nil) // no pooled streams: every use of node x needs a dial
	start := time.Now()
	const rounds = 5
	for r := 0; r < rounds; r++ {
		for i, k := range keys {
			got, err := d.Get(ctx, k)
			if err != nil || !bytes.Equal(got, vals[i]) {
				t.Fatalf("get %s with node %d dead: %d bytes, %v", k, x, len(got), err)
			}
		}
	}
	elapsed := time.Since(start)
	// Node x is at one of the 6 positions of every key, so about 2/3 of
	// the 200 reads ask it; each dial failure holds it off for a second.
	if n, most := dials.Load(), int64(elapsed/time.Second)+2; n > most {
		t.Fatalf("%d dials to the dead node in %s of %d reads, want at most %d (one per second)", n, elapsed, rounds*len(keys), most)
	} else if n == 0 {
		t.Fatalf("no dial reached the dead node's port: the test does not test anything")
	} else {
		t.Logf("%d dials to the dead node in %s of %d reads", n, elapsed.Round(time.Millisecond), rounds*len(keys))
	}
}

// TestRestartedNodesAreReadAtOnce: reads skip nodes whose last dial failed
// (for transport.RedialAfter), but when the other positions are not enough
// they dial the skipped ones after all: nodes that were down and have just
// restarted serve the very next read.
func TestRestartedNodesAreReadAtOnce(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)
	k, v := ds.NewKey("/restarted"), bytes.Repeat([]byte{7}, 200<<10)
	if err := d.Put(ctx, k, v); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		c.Stop(i)
	}
	if _, err := d.Get(ctx, k); !errors.Is(err, dscluster.ErrUnavailable) {
		t.Fatalf("get with 3 of 6 nodes stopped: %v, want ErrUnavailable", err)
	}
	for i := 0; i < 3; i++ {
		c.Restart(i)
	}
	start := time.Now()
	got, err := d.Get(ctx, k)
	if err != nil || !bytes.Equal(got, v) {
		t.Fatalf("get %s after the restart: %d bytes, %v", time.Since(start).Round(time.Millisecond), len(got), err)
	}
}
