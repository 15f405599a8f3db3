package dscluster_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"

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
