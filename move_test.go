package dscluster_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"

	"github.com/filedrive-team/go-ds-cluster/clustertest"
	"github.com/filedrive-team/go-ds-cluster/membership"
)

// TestMovedNodeIsFoundAgain: a node restarted on another port (another
// machine, a new pod IP) tells the cluster its new address. The cluster
// records it in the member list and in the map, without a new map epoch,
// and a front end that was open all along finds the node there: its
// writes reach all 6 nodes again, so with two other nodes stopped every
// value still reads back. Before, the map kept the old address: the front
// end never reached the node again, its writes stayed one shard short, and
// the node was declared down.
func TestMovedNodeIsFoundAgain(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{FastRaft: true, HeartbeatInterval: 200 * time.Millisecond,
		OutAfter: time.Hour, RepairInterval: time.Hour})
	d := c.Client(nil)
	clustertest.WaitFor(t, 20*time.Second, "a raft leader", func() (bool, string) { return c.Leader() >= 0, "no leader" })
	if err := d.Put(ctx, ds.NewKey("/before"), bytes.Repeat([]byte{1}, 64<<10)); err != nil {
		t.Fatal(err)
	}

	victim := (c.Leader() + 1) % c.Len()
	id := c.Node(victim).ID().String()
	epoch := c.Current().Map.Epoch
	c.Stop(victim)
	addrs := c.Move(victim)

	clustertest.WaitFor(t, 20*time.Second, "the cluster records the new address", func() (bool, string) {
		cur := c.Node(c.Leader()).Cluster()
		m, _ := cur.Member(id)
		i, _ := cur.Map.NodeIndex(id)
		return m.State == membership.Up && slices.Equal(m.Addrs, addrs) && slices.Equal(cur.Map.Nodes[i].Addrs, addrs),
			fmt.Sprintf("member %s at %v, map entry %v, want %v", m.State, m.Addrs, cur.Map.Nodes[i].Addrs, addrs)
	})
	if e := c.Current().Map.Epoch; e != epoch {
		t.Errorf("map epoch %d after the move, want %d: addresses do not move slots", e, epoch)
	}
	// The front end learns the address when its dial to the old one fails
	// (a large value has a shard on every node; a small one has 3 copies).
	probe := bytes.Repeat([]byte{2}, 64<<10)
	clustertest.WaitFor(t, 20*time.Second, "the front end dials the new address", func() (bool, string) {
		_ = d.Put(ctx, ds.NewKey("/probe"), probe)
		i, _ := d.Cluster().Map.NodeIndex(id)
		got := d.Cluster().Map.Nodes[i].Addrs
		return slices.Equal(got, addrs), fmt.Sprintf("front end has %v", got)
	})

	vals := map[ds.Key][]byte{}
	for j := 0; j < 20; j++ {
		k := ds.NewKey(fmt.Sprintf("/after/%d", j))
		vals[k] = bytes.Repeat([]byte{byte(j)}, 64<<10+j)
		if err := d.Put(ctx, k, vals[k]); err != nil {
			t.Fatal(err)
		}
	}
	// Every key has a shard on each of the 6 nodes; with 2 others stopped
	// the moved node's shard is one of the 4 a read needs.
	stopped := 0
	for i := 0; i < c.Len() && stopped < 2; i++ {
		if i != victim && i != c.Leader() {
			c.Stop(i)
			stopped++
		}
	}
	for k, v := range vals {
		got, err := d.Get(ctx, k)
		if err != nil || !bytes.Equal(got, v) {
			t.Errorf("get %s with the moved node and 3 others: %d bytes, %v", k, len(got), err)
		}
	}
}
