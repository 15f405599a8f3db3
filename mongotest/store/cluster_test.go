package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/clustertest"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/mongods"
	"github.com/filedrive-team/go-ds-cluster/mongotest/ferret"
)

func state(c *clustertest.Cluster, id string) string {
	m, _ := c.Current().Member(id)
	return m.State
}

func putAll(t *testing.T, d *dscluster.Datastore, keys []ds.Key, vals [][]byte) {
	t.Helper()
	for i, k := range keys {
		if err := d.Put(context.Background(), k, vals[i]); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
}

func checkAll(t *testing.T, d *dscluster.Datastore, keys []ds.Key, vals [][]byte) {
	t.Helper()
	for i, k := range keys {
		got, err := d.Get(context.Background(), k)
		if err != nil || !bytes.Equal(got, vals[i]) {
			t.Fatalf("get %s: %d bytes (want %d), err %v", k, len(got), len(vals[i]), err)
		}
	}
}

func randomValues(prefix string, seed uint64, n int) ([]ds.Key, [][]byte) {
	r := rand.New(rand.NewPCG(seed, 7))
	keys := make([]ds.Key, n)
	vals := make([][]byte, n)
	for i := range keys {
		keys[i] = ds.NewKey(fmt.Sprintf("/%s/%03d", prefix, i))
		vals[i] = make([]byte, 1<<10+r.IntN(255<<10))
		for j := range vals[i] {
			vals[i][j] = byte(r.Uint32())
		}
	}
	return keys, vals
}

// TestNodeDatabaseStops: a 7-node cluster, each node on a MongoDB of its
// own. One node's database stops: the node reports it, fails heartbeats, is
// taken out, and repair rebuilds its shards elsewhere (two more nodes
// stopped, every value still reads). The database comes back: the node is
// up again and the cluster settles with it.
func TestNodeDatabaseStops(t *testing.T) {
	const nodes = 7
	var mu sync.Mutex
	servers := make([]*ferret.Server, nodes)
	stores := make([]*mongods.Datastore, nodes)
	for i := range servers {
		servers[i] = server(t)
	}
	c := clustertest.Start(t, clustertest.Options{
		Nodes: nodes, HeartbeatInterval: 100 * time.Millisecond, OutAfter: time.Second,
		RepairInterval: 300 * time.Millisecond, FastRaft: true,
		OpenStore: func(i int, _ string) (ds.Datastore, error) {
			mu.Lock()
			defer mu.Unlock()
			d, err := mongods.Open(context.Background(), servers[i].URI()+"shards",
				mongods.Options{Collection: fmt.Sprintf("node%d", i), CheckEvery: 100 * time.Millisecond, Timeout: time.Second})
			if err == nil {
				stores[i] = d
			}
			return d, err
		},
	})
	d := c.Client(nil)
	keys, vals := randomValues("before", 1, 40)
	putAll(t, d, keys, vals)
	clustertest.WaitFor(t, 60*time.Second, "first repair pass", c.Settled)

	victim := (c.Leader() + 1) % nodes
	id := c.Node(victim).ID().String()
	epoch := c.Current().Map.Epoch
	mu.Lock()
	dir, addr := servers[victim].Dir(), servers[victim].Addr()
	servers[victim].Stop()
	mu.Unlock()
	clustertest.WaitFor(t, 10*time.Second, "the node reports its store failed", func() (bool, string) {
		st, err := c.Node(victim).Stat(context.Background())
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(st.StoreError, "mongodb shard store mongodb://"+addr), "store error: " + st.StoreError
	})
	// Writes go on without it (5 of 6 positions are a quorum).
	keys2, vals2 := randomValues("during", 2, 20)
	putAll(t, d, keys2, vals2)
	clustertest.WaitFor(t, 30*time.Second, "the node out and the map moved on", func() (bool, string) {
		s := state(c, id)
		return s == membership.Out && c.Current().Map.Epoch > epoch, fmt.Sprintf("epoch %d, node %s", c.Current().Map.Epoch, s)
	})
	clustertest.WaitFor(t, 90*time.Second, "repair rebuilt its shards", c.Settled)

	// Full redundancy: with two more nodes stopped, every value reads.
	var stopped []int
	for i := 0; i < nodes && len(stopped) < 2; i++ {
		if i != victim && i != c.Leader() {
			c.Stop(i)
			stopped = append(stopped, i)
		}
	}
	checkAll(t, c.Client(nil), append(keys, keys2...), append(vals, vals2...))
	for _, i := range stopped {
		c.Restart(i)
	}

	// The database comes back, and with it the node.
	s, err := ferret.Start(dir, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	clustertest.WaitFor(t, 30*time.Second, "the node up again", func() (bool, string) {
		st, err := c.Node(victim).Stat(context.Background())
		if err != nil {
			return false, err.Error()
		}
		return st.StoreError == "" && state(c, id) == membership.Up, fmt.Sprintf("state %s, store error %q", state(c, id), st.StoreError)
	})
	clustertest.WaitFor(t, 90*time.Second, "the cluster settled with the node back", c.Settled)
	st, err := c.Node(victim).Stat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Keys == 0 {
		t.Errorf("the node holds no key after it came back: %+v", st)
	}
	checkAll(t, c.Client(nil), append(keys, keys2...), append(vals, vals2...))
}
