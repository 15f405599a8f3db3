package dscluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/clustertest"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/node"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/transport"
	"github.com/filedrive-team/go-ds-cluster/volume"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// lifeOptions is a cluster whose life runs in seconds: heartbeats every
// 100 ms, out after 1 s, a repair pass every 300 ms.
func lifeOptions(nodes int) clustertest.Options {
	return clustertest.Options{
		Nodes: nodes, HeartbeatInterval: 100 * time.Millisecond, OutAfter: time.Second,
		RepairInterval: 300 * time.Millisecond, FastRaft: true,
	}
}

// stopUntilOut stops the node after the raft leader and waits until it is
// out, the map has moved on without it and repair has rebuilt its shards.
// It returns the node's index and peer ID.
func stopUntilOut(t *testing.T, c *clustertest.Cluster) (int, string) {
	t.Helper()
	victim := (c.Leader() + 1) % c.Len()
	id := stopUntilMapMoves(t, c, victim)
	clustertest.WaitFor(t, 60*time.Second, "0 degraded keys after the rebuild", c.Settled)
	return victim, id
}

// stopUntilMapMoves stops node victim and waits until it is out and the
// map has moved on without it. It returns the node's peer ID.
func stopUntilMapMoves(t *testing.T, c *clustertest.Cluster, victim int) string {
	t.Helper()
	id := c.Node(victim).ID().String()
	epoch := c.Current().Map.Epoch
	c.Stop(victim)
	clustertest.WaitFor(t, 30*time.Second, "victim out and the map moved on", func() (bool, string) {
		cur := c.Current()
		m, _ := cur.Member(id)
		return m.State == membership.Out && cur.Map.Epoch > epoch, fmt.Sprintf("epoch %d, victim %s", cur.Map.Epoch, m.State)
	})
	return id
}

// stopTwoMore stops two running nodes other than except and the raft
// leader: with 4+2, every value must then still read back.
func stopTwoMore(c *clustertest.Cluster, except int) {
	stopped := 0
	for i := 0; i < c.Len() && stopped < 2; i++ {
		if i != except && i != c.Leader() && c.Node(i) != nil {
			c.Stop(i)
			stopped++
		}
	}
}

func memberState(c *clustertest.Cluster, i int) string {
	m, ok := c.Current().Member(c.Node(i).ID().String())
	if !ok {
		return "not a member"
	}
	return m.State
}

func putRandom(t *testing.T, d *dscluster.Datastore, seed uint64, n, maxSize int) ([]ds.Key, [][]byte) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	keys := make([]ds.Key, n)
	vals := make([][]byte, n)
	for i := range keys {
		keys[i] = ds.NewKey(fmt.Sprintf("/repair/%d/%04d", seed, i))
		vals[i] = randBytes(r, logUniformSize(r, maxSize))
	}
	putAll(t, d, keys, vals, 8)
	return keys, vals
}

func checkAll(t *testing.T, d *dscluster.Datastore, keys []ds.Key, vals [][]byte) {
	t.Helper()
	ctx := context.Background()
	for i, k := range keys {
		got, err := d.Get(ctx, k)
		if err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
		if !bytes.Equal(got, vals[i]) {
			t.Fatalf("get %s: %d bytes differ from the %d put", k, len(got), len(vals[i]))
		}
	}
}

// TestRepairRestoresRedundancy: a node stops; after the grace period it is
// out, the map moves its slots and repair rebuilds its shards, with no
// manual step. Then two more nodes stop and every value still reads back:
// with 4+2 that holds only if the third redundancy really came back.
func TestRepairRestoresRedundancy(t *testing.T) {
	c := clustertest.Start(t, lifeOptions(7))
	d := c.Client(nil)
	keys, vals := putRandom(t, d, 1, 150, 1<<20)
	clustertest.WaitFor(t, 30*time.Second, "first repair pass", c.Settled)

	victim, _ := stopUntilOut(t, c)
	stopTwoMore(c, victim)
	checkAll(t, freshFrontEnd(c), keys, vals)
}

// TestJoinRebalances: an 8th node joins a loaded 7-node cluster. A reader
// runs through the whole rebalance and sees no error and no wrong byte;
// afterwards the new node holds its share and the bytes moved are close to
// the ideal 1/8.
func TestJoinRebalances(t *testing.T) {
	c := clustertest.Start(t, lifeOptions(7))
	d := c.Client(nil)
	// Values of 32-64 KiB: enough shards (2,400) that the bytes on the
	// moved positions are within a few percent of 1/8 of all.
	r := rand.New(rand.NewPCG(2, 2))
	keys := make([]ds.Key, 400)
	vals := make([][]byte, len(keys))
	for i := range keys {
		keys[i] = ds.NewKey(fmt.Sprintf("/join/%04d", i))
		vals[i] = randBytes(r, 32<<10+r.IntN(32<<10))
	}
	putAll(t, d, keys, vals, 8)
	clustertest.WaitFor(t, 30*time.Second, "first repair pass", c.Settled)
	var total int64 // shard bytes stored
	for i := 0; i < c.Len(); i++ {
		st, err := c.Node(i).Stat(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		total += int64(st.ShardBytes)
	}
	before := c.Node(c.Leader()).RepairStats().BytesMoved

	stop := make(chan struct{})
	readErr := make(chan error, 1)
	reads := 0
	go func() {
		r := freshFrontEnd(c)
		for i := 0; ; i++ {
			select {
			case <-stop:
				readErr <- nil
				return
			default:
			}
			j := i % len(keys)
			got, err := r.Get(context.Background(), keys[j])
			if err != nil {
				readErr <- fmt.Errorf("read %d (%s): %w", i, keys[j], err)
				return
			}
			if !bytes.Equal(got, vals[j]) {
				readErr <- fmt.Errorf("read %d (%s): wrong bytes", i, keys[j])
				return
			}
			reads++
		}
	}()
	// A writer runs through the rebalance too: new keys land on the map
	// owners and are forwarded to the target owners, so the target still
	// converges and commits.
	var written []ds.Key
	var writtenVals [][]byte
	writeErr := make(chan error, 1)
	go func() {
		w := freshFrontEnd(c)
		wr := rand.New(rand.NewPCG(8, 8))
		for i := 0; ; i++ {
			select {
			case <-stop:
				writeErr <- nil
				return
			default:
			}
			k := ds.NewKey(fmt.Sprintf("/during-join/%04d", i))
			v := randBytes(wr, 32<<10)
			if err := w.Put(context.Background(), k, v); err != nil {
				writeErr <- fmt.Errorf("write %s during the rebalance: %w", k, err)
				return
			}
			written, writtenVals = append(written, k), append(writtenVals, v)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	epoch := c.Current().Map.Epoch
	n8 := c.AddNode("")
	clustertest.WaitFor(t, 60*time.Second, "the new node owns slots and repair settled", func() (bool, string) {
		cur := c.Current()
		_, in := cur.Map.NodeIndex(c.Node(n8).ID().String())
		ok, desc := c.Settled()
		return in && cur.Map.Epoch > epoch && ok, desc
	})
	close(stop)
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d reads and %d writes during the rebalance", reads, len(written))
	if s := memberState(c, n8); s != membership.Up {
		t.Fatalf("new node is %s, want up", s)
	}
	moved := c.Node(c.Leader()).RepairStats().BytesMoved - before
	ideal := total / 8
	t.Logf("moved %d bytes, ideal %d (%.2fx)", moved, ideal, float64(moved)/float64(ideal))
	if moved > ideal*12/10 {
		t.Fatalf("moved %d bytes, more than 1.2x the ideal %d", moved, ideal)
	}
	checkAll(t, freshFrontEnd(c), keys, vals)
	checkAll(t, freshFrontEnd(c), written, writtenVals)
}

// TestDrainMovesDataFirst: a drained node's data lands on the others
// before it is removed; at the end it holds nothing, no key is degraded,
// and with it stopped the cluster still loses two more nodes safely.
func TestDrainMovesDataFirst(t *testing.T) {
	c := clustertest.Start(t, lifeOptions(7))
	d := c.Client(nil)
	keys, vals := putRandom(t, d, 3, 100, 512<<10)
	clustertest.WaitFor(t, 30*time.Second, "first repair pass", c.Settled)

	victim := (c.Leader() + 2) % 7
	id := c.Node(victim).ID().String()
	if err := d.Member(context.Background(), membership.Command{Op: membership.OpDrain, ID: id}); err != nil {
		t.Fatal(err)
	}
	clustertest.WaitFor(t, 60*time.Second, "drained node removed", func() (bool, string) {
		s := memberState(c, victim)
		return s == membership.Removed, "state " + s
	})
	// Six nodes are left for six positions per slot: one more drain would
	// leave too few, and is refused.
	err := d.Member(context.Background(), membership.Command{Op: membership.OpDrain, ID: c.Node(c.Leader()).ID().String()})
	if err == nil || !strings.Contains(err.Error(), "fewer than") {
		t.Fatalf("drain of a 7th node of 7 for width 6: %v, want a refusal", err)
	}
	st, err := c.Node(victim).Stat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Keys != 0 {
		t.Fatalf("removed node still holds %d shards", st.Keys)
	}
	clustertest.WaitFor(t, 30*time.Second, "0 degraded keys", c.Settled)
	// The front end opened before the drain still writes and reads: its
	// map is stale, nodes say so, and it moves to the new one.
	for i := 0; i < 20; i++ {
		k := ds.NewKey(fmt.Sprintf("/after-drain/%d", i))
		v := randBytes(rand.New(rand.NewPCG(uint64(i), 5)), 20<<10+i*1000)
		if err := d.Put(context.Background(), k, v); err != nil {
			t.Fatalf("put %s with the front end opened before the drain: %v", k, err)
		}
		keys, vals = append(keys, k), append(vals, v)
	}
	checkAll(t, d, keys, vals)
	c.Stop(victim)
	stopTwoMore(c, victim)
	checkAll(t, freshFrontEnd(c), keys, vals)
}

// TestScrubRebuildsCorruptShard: a shard file rots on disk. Get never
// returns its bytes, and within one scrub interval the scrubber has found
// it and repair has rebuilt it, byte for byte.
func TestScrubRebuildsCorruptShard(t *testing.T) {
	const interval = 2 * time.Second
	opts := lifeOptions(6)
	opts.ScrubInterval = interval
	c := clustertest.Start(t, opts)
	d := c.Client(nil)
	ctx := context.Background()
	key := ds.NewKey("/scrub/victim")
	val := randBytes(rand.New(rand.NewPCG(9, 9)), 300<<10)
	if err := d.Put(ctx, key, val); err != nil {
		t.Fatal(err)
	}
	owner := c.Owners(key.String())[1]
	path := shardFile(t, c, owner, key)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	flip(t, path, int64(len(orig)/2))
	got, err := d.Get(ctx, key)
	if err != nil || !bytes.Equal(got, val) {
		t.Fatalf("get with a corrupt shard: %v (equal %v)", err, bytes.Equal(got, val))
	}
	start := time.Now()
	clustertest.WaitFor(t, interval+3*time.Second, "the corrupt shard rebuilt", func() (bool, string) {
		p, err := c.ShardFile(owner, key.String())
		if err != nil {
			return false, err.Error()
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return false, err.Error()
		}
		return bytes.Equal(b, orig), "shard file still differs"
	})
	t.Logf("rebuilt %s after the corruption", time.Since(start).Round(time.Millisecond))
	st, err := c.Node(owner).Stat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Scrub.Total != 1 {
		t.Fatalf("scrub found %d bad shards on node %d, want 1", st.Scrub.Total, owner)
	}
}

// TestMissedWriteRepaired: a node is stopped while values are written (the
// quorum is met without it) and comes back before its grace period ends.
// Repair gives it the shards it missed, with no manual step.
func TestMissedWriteRepaired(t *testing.T) {
	opts := lifeOptions(6)
	opts.OutAfter = time.Minute // it must come back as up, not be replaced
	c := clustertest.Start(t, opts)
	d := c.Client(nil)
	victim := (c.Leader() + 1) % 6
	c.Stop(victim)
	keys, vals := putRandom(t, d, 4, 60, 256<<10)
	c.Restart(victim)
	clustertest.WaitFor(t, 30*time.Second, "0 degraded keys", c.Settled)
	// The repair listed only the slots of the keys the victim missed (its
	// slot sums differed from the other owners'); once they agree, a pass
	// lists nothing and still counts every key.
	clustertest.WaitFor(t, 10*time.Second, "a pass that lists no slot", func() (bool, string) {
		l := c.Leader()
		if l < 0 {
			return false, "no leader"
		}
		st := c.Node(l).RepairStats()
		return st.SlotsListed == 0 && st.Keys == len(keys), fmt.Sprintf("%d slots listed, %d keys", st.SlotsListed, st.Keys)
	})
	st, err := c.Node(victim).Stat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for i, k := range keys {
		width := 6
		if len(vals[i]) < smallThreshold {
			width = 3 // replicated m+1 times on the first positions
		}
		if slices.Contains(c.Owners(k.String())[:width], victim) {
			want++
		}
	}
	if want == 0 || st.Keys != want {
		t.Fatalf("node %d holds %d shards after repair, want %d", victim, st.Keys, want)
	}
	// With the victim's shards back, any two other nodes may go.
	stopTwoMore(c, victim)
	checkAll(t, freshFrontEnd(c), keys, vals)
}

// TestGCWaitsForRebalance: while a rebalance is under way, the new owner of
// a slot may hold an old copy that only a tombstone hides, so garbage
// collection keeps every tombstone until the map is committed; then it
// purges them.
func TestGCWaitsForRebalance(t *testing.T) {
	opts := lifeOptions(7)
	opts.RepairRate = 256 << 10 // bytes/s: the copy to the new node takes seconds
	c := clustertest.Start(t, opts)
	d := c.Client(&dscluster.Options{TombstoneGrace: -1})
	ctx := context.Background()
	keys, _ := putRandom(t, d, 6, 60, 128<<10)
	clustertest.WaitFor(t, 30*time.Second, "first repair pass", c.Settled)
	n8 := c.AddNode("")
	clustertest.WaitFor(t, 10*time.Second, "a rebalance target", func() (bool, string) {
		return c.Current().Target != nil, "no target yet"
	})
	target := c.Current().Target.Epoch
	// A loaded machine may finish this rebalance and start another (a
	// node that missed heartbeats for OutAfter) while the test runs: then
	// garbage collection ran between the two, and purged rightly.
	sameRebalance := func() {
		if cur := c.Current(); cur.Target == nil || cur.Target.Epoch != target {
			t.Skipf("the rebalance to epoch %d ended before the check; nothing to show", target)
		}
	}
	deleteAll(t, d, keys[:10])
	before := clusterTombstones(t, c)
	if err := d.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	sameRebalance()
	if got := clusterTombstones(t, c); got < before || before == 0 {
		t.Fatalf("during the rebalance: %d tombstones after garbage collection, %d before; want none purged", got, before)
	}
	// A front end whose description lags (it has not seen the target yet)
	// sends a purge anyway: the node, which knows better, keeps the
	// tombstones.
	if n := purgeAsStale(t, c, keys[0].String()); n == 0 {
		t.Fatalf("no owner of %s listed its tombstone", keys[0])
	}
	sameRebalance()
	if got := clusterTombstones(t, c); got < before {
		t.Fatalf("during the rebalance: %d tombstones after a purge from a lagging front end, %d before; want none purged", got, before)
	}
	clustertest.WaitFor(t, 60*time.Second, "the rebalance committed and settled", func() (bool, string) {
		in, where := onEveryNode(c, func(cur *config.Cluster) bool {
			_, in := cur.Map.NodeIndex(c.Node(n8).ID().String())
			return in && cur.Target == nil
		})
		ok, desc := c.Settled()
		return in && ok, where + desc
	})
	if err := d.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if got := clusterTombstones(t, c); got != 0 {
		t.Fatalf("after the rebalance: %d tombstones left after garbage collection, want 0", got)
	}
	for _, k := range keys[:10] {
		if _, err := d.Get(ctx, k); !errors.Is(err, ds.ErrNotFound) {
			t.Fatalf("get deleted %s: %v, want ErrNotFound", k, err)
		}
	}
}

// TestScrubRebuildsCorruptRecordVolume is the scrub test on the volume
// store: a shard's bytes rot inside a volume file. Get still returns the
// value, scrub finds the bad record within its interval and repair rebuilds
// the shard, which the value then needs: with two other owners stopped, it
// reads back only if the rebuilt shard is good.
func TestScrubRebuildsCorruptRecordVolume(t *testing.T) {
	const interval = 2 * time.Second
	opts := lifeOptions(6)
	opts.ScrubInterval = interval
	opts.Store = "volume"
	c := clustertest.Start(t, opts)
	d := c.Client(nil)
	ctx := context.Background()
	key := ds.NewKey("/scrub/volume-victim")
	val := randBytes(rand.New(rand.NewPCG(9, 10)), 300<<10)
	if err := d.Put(ctx, key, val); err != nil {
		t.Fatal(err)
	}
	owners := c.Owners(key.String())
	victim := owners[1]
	// The shard's header carries the key; rot a byte of its data after it.
	vols, err := filepath.Glob(filepath.Join(c.Dirs[victim], "volume", "*"))
	if err != nil {
		t.Fatal(err)
	}
	flipped := false
	for _, f := range vols {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if i := bytes.LastIndex(b, []byte(key.String())); i >= 0 && i+len(key.String())+4096 < len(b) {
			flip(t, f, int64(i+len(key.String())+4096))
			flipped = true
			break
		}
	}
	if !flipped {
		t.Fatalf("no volume file of node %d holds %s (files %v)", victim, key, vols)
	}
	if got, err := d.Get(ctx, key); err != nil || !bytes.Equal(got, val) {
		t.Fatalf("get with a rotten record: %v (equal %v)", err, bytes.Equal(got, val))
	}
	clustertest.WaitFor(t, interval+3*time.Second, "scrub found the bad record and repair settled", func() (bool, string) {
		st, err := c.Node(victim).Stat(ctx)
		if err != nil {
			return false, err.Error()
		}
		// A pass that listed the node before the scrub removed the record
		// does not count.
		ok, desc := c.Settled()
		l := c.Leader()
		after := l >= 0 && c.Node(l).RepairStats().Started.After(st.Scrub.Finished)
		return st.Scrub.Total == 1 && after && ok, fmt.Sprintf("scrub total %d; %s", st.Scrub.Total, desc)
	})
	c.Stop(owners[0])
	c.Stop(owners[2])
	got, err := freshFrontEnd(c).Get(ctx, key)
	if err != nil || !bytes.Equal(got, val) {
		t.Fatalf("get needing the rebuilt shard: %v (equal %v)", err, bytes.Equal(got, val))
	}
}

// TestGCWaitsForOutMember: a node that is out still holds its old shards,
// and may come back. Values deleted while it is out must stay deleted when
// it does: garbage collection keeps their tombstones while a member is out
// (it would otherwise purge them, and the returning node's old replica of
// a small value would be the only copy left, which repair spreads again),
// and purges them once the node has rejoined and repair has dropped its
// stale shards.
func TestGCWaitsForOutMember(t *testing.T) {
	c := clustertest.Start(t, lifeOptions(7))
	d := c.Client(&dscluster.Options{TombstoneGrace: -1})
	ctx := context.Background()
	keys := make([]ds.Key, 30)
	for i := range keys {
		keys[i] = ds.NewKey(fmt.Sprintf("/zombie/%02d", i))
		// Small values are replicated: one copy is enough to read them.
		if err := d.Put(ctx, keys[i], bytes.Repeat([]byte{byte(i)}, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	clustertest.WaitFor(t, 30*time.Second, "first repair pass", c.Settled)

	victim, id := stopUntilOut(t, c)
	deleteAll(t, d, keys)
	// The out member does not answer and is in no slot: the front end's
	// check passes (it used to index the map with the member's -1).
	if err := d.Check(ctx); err != nil {
		t.Fatalf("check with node %d out of the map: %v", victim, err)
	}
	before := clusterTombstones(t, c)
	if err := d.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if got := clusterTombstones(t, c); got != before || before == 0 {
		t.Fatalf("with node %d out: %d tombstones after garbage collection, %d before; want none purged", victim, got, before)
	}
	if hold := d.GCHold(); !strings.Contains(hold, id) || !strings.Contains(hold, "node remove") {
		t.Fatalf("GCHold with node %d out: %q, want it named, with the way out", victim, hold)
	}

	c.Restart(victim)
	clustertest.WaitFor(t, 60*time.Second, "victim back in the map and repair settled", func() (bool, string) {
		in, _ := onEveryNode(c, func(cur *config.Cluster) bool {
			_, in := cur.Map.NodeIndex(id)
			return in && cur.Target == nil
		})
		ok, desc := c.Settled()
		return in && ok, fmt.Sprintf("victim %s in map %v; %s", memberState(c, victim), in, desc)
	})
	if err := d.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if got := clusterTombstones(t, c); got != 0 {
		t.Fatalf("after the rejoin: %d tombstones left after garbage collection, want 0", got)
	}
	if hold := d.GCHold(); hold != "" {
		t.Fatalf("GCHold after the rejoin: %q, want none", hold)
	}
	// Repair passes after the purge must not bring anything back.
	passes := c.Node(c.Leader()).RepairStats().Passes
	clustertest.WaitFor(t, 30*time.Second, "two more repair passes", func() (bool, string) {
		p := c.Node(c.Leader()).RepairStats().Passes
		return p >= passes+2, fmt.Sprintf("%d passes", p-passes)
	})
	fe := freshFrontEnd(c)
	for _, k := range keys {
		if got, err := fe.Get(ctx, k); !errors.Is(err, ds.ErrNotFound) {
			t.Fatalf("get %s deleted while node %d was out: %d bytes, %v; want ErrNotFound", k, victim, len(got), err)
		}
	}
}

// TestRemoveOutMember: an operator gives up on an out member (its machine
// is gone for good): the removal is refused for a live member, accepted for
// the out one, and garbage collection, which waits for out members, then
// purges again.
func TestRemoveOutMember(t *testing.T) {
	c := clustertest.Start(t, lifeOptions(7))
	d := c.Client(&dscluster.Options{TombstoneGrace: -1})
	ctx := context.Background()
	keys, _ := putRandom(t, d, 9, 20, 64<<10)
	clustertest.WaitFor(t, 30*time.Second, "first repair pass", c.Settled)

	live := (c.Leader() + 2) % 7
	err := d.Member(ctx, membership.Command{Op: membership.OpRemove, ID: c.Node(live).ID().String()})
	if err == nil || !strings.Contains(err.Error(), "only an out member can be removed") {
		t.Fatalf("remove a live member: %v, want a refusal", err)
	}

	_, id := stopUntilOut(t, c)
	deleteAll(t, d, keys)
	if err := d.Member(ctx, membership.Command{Op: membership.OpRemove, ID: id}); err != nil {
		t.Fatalf("remove the out member: %v", err)
	}
	clustertest.WaitFor(t, 10*time.Second, "victim removed", func() (bool, string) {
		return onEveryNode(c, func(cur *config.Cluster) bool {
			m, _ := cur.Member(id)
			return m.State == membership.Removed
		})
	})
	if err := d.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if n := clusterTombstones(t, c); n != 0 {
		t.Fatalf("%d tombstones kept after the out member was removed, want 0", n)
	}
}

// deleteAll deletes keys one by one.
func deleteAll(t *testing.T, d *dscluster.Datastore, keys []ds.Key) {
	t.Helper()
	for _, k := range keys {
		if err := d.Delete(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
}

// onEveryNode reports whether cond holds for the description of every
// running node, and if not, which node it fails on. Garbage collection
// purges only where the node's own description holds nothing back
// (membership.GCHold), so tests wait for every node, not only the one a
// front end asks.
func onEveryNode(c *clustertest.Cluster, cond func(*config.Cluster) bool) (bool, string) {
	for i := range c.Len() {
		if n := c.Node(i); n != nil && !cond(n.Cluster()) {
			return false, fmt.Sprintf("not yet on node %d; ", i)
		}
	}
	return true, ""
}

// purgeAsStale sends, from the last node added (it owns nothing before
// the rebalance commits), every owner of key a purge of the tombstone it lists
// for key, as a front end that does not know of a rebalance would, and
// checks that each refuses it. It returns how many owners it asked.
func purgeAsStale(t *testing.T, c *clustertest.Cluster, key string) int {
	t.Helper()
	ctx := context.Background()
	cl := transport.NewClient(c.Node(c.Len()-1).Host(), 20*time.Second) // the new node: no owner yet
	asked := 0
	for _, o := range c.Owners(key) {
		to := c.Node(o).ID()
		resp, err := cl.Do(ctx, to, &wire.Request{Op: wire.OpList, Prefix: key, Limit: 1})
		if err != nil || resp.Status != wire.StatusOK {
			t.Fatalf("list node %d: %v %v", o, err, resp)
		}
		es, _, err := wire.DecodeListPayload(resp.Payload)
		if err != nil || len(es) != 1 || !es[0].Tombstone {
			t.Fatalf("node %d lists %+v for deleted %s (%v)", o, es, key, err)
		}
		resp, err = cl.Do(ctx, to, &wire.Request{Op: wire.OpPurge, Purge: es})
		if err != nil || resp.Status != wire.StatusOK {
			t.Fatalf("purge at node %d: %v %v", o, err, resp)
		}
		rs, err := wire.DecodeBatchPayload(resp.Payload)
		if err != nil || len(rs) != 1 || rs[0].Status != wire.StatusUnavailable || !strings.Contains(rs[0].Message, "rebalance") {
			t.Fatalf("purge at node %d during a rebalance: %+v (%v), want it refused", o, rs, err)
		}
		asked++
	}
	return asked
}

// clusterTombstones sums the tombstones the running nodes hold.
func clusterTombstones(t *testing.T, c *clustertest.Cluster) int {
	t.Helper()
	n := 0
	for i := 0; i < c.Len(); i++ {
		if c.Node(i) == nil {
			continue
		}
		st, err := c.Node(i).Stat(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n += st.Tombstones
	}
	return n
}

// TestFailedDiskIsRebuilt: a node whose disk fails an fsync takes no more
// writes and answers no heartbeat (an fsync error is not retried: the
// kernel may have dropped the pages). The cluster marks it down, then out,
// and rebuilds its shards on the others: with two more nodes stopped after
// that, every value, those written after the failure too, reads back.
func TestFailedDiskIsRebuilt(t *testing.T) {
	var bad atomic.Int32
	bad.Store(-1)
	eio := errors.New("input/output error (injected)")
	opts := lifeOptions(7)
	opts.OpenStore = func(i int, dir string) (ds.Datastore, error) {
		return node.OpenVolume(filepath.Join(dir, "volume"), volume.Options{SyncFile: func(*os.File) error {
			if int(bad.Load()) == i {
				return eio
			}
			return nil // the test needs no durability across machine crashes
		}})
	}
	c := clustertest.Start(t, opts)
	d := c.Client(nil)
	keys, vals := putRandom(t, d, 10, 40, 256<<10)
	clustertest.WaitFor(t, 30*time.Second, "first repair pass", c.Settled)

	x := (c.Leader() + 1) % 7
	id := c.Node(x).ID().String()
	bad.Store(int32(x))
	more, moreVals := putRandom(t, d, 11, 10, 256<<10) // node x fails these
	st, err := c.Node(x).Stat(context.Background())
	if err != nil || !strings.Contains(st.StoreError, eio.Error()) {
		t.Fatalf("node %d after a failed fsync: store error %q, %v; want the fsync error", x, st.StoreError, err)
	}
	clustertest.WaitFor(t, 30*time.Second, "node x out and its shards rebuilt", func() (bool, string) {
		m, _ := c.Current().Member(id)
		_, inMap := c.Current().Map.NodeIndex(id)
		ok, desc := c.Settled()
		return m.State == membership.Out && !inMap && ok, fmt.Sprintf("node x %s, in map %v; %s", m.State, inMap, desc)
	})
	stopTwoMore(c, x)
	checkAll(t, freshFrontEnd(c), append(keys, more...), append(vals, moreVals...))
}

// TestBatchAfterMapChange: a front end whose map went stale while it was
// idle (a join was committed meanwhile) commits a batch: every node
// refuses the shards for the old map, and the batch writes them again by
// the new one instead of failing.
func TestBatchAfterMapChange(t *testing.T) {
	c := clustertest.Start(t, lifeOptions(7))
	ctx := context.Background()
	d := c.Client(nil)
	if _, err := d.Has(ctx, ds.NewKey("/warm")); err != nil { // connects; the map is now the only state
		t.Fatal(err)
	}
	epoch := d.Cluster().Map.Epoch
	n8 := c.AddNode("")
	clustertest.WaitFor(t, 60*time.Second, "the join committed", func() (bool, string) {
		_, in := c.Current().Map.NodeIndex(c.Node(n8).ID().String())
		return in && c.Current().Target == nil, fmt.Sprintf("epoch %d", c.Current().Map.Epoch)
	})
	if d.Cluster().Map.Epoch != epoch {
		t.Fatal("the idle front end learnt the new map: the test shows nothing")
	}
	b, err := d.Batch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]ds.Key, 20)
	for i := range keys {
		keys[i] = ds.NewKey(fmt.Sprintf("/stale-batch/%d", i))
		if err := b.Put(ctx, keys[i], bytes.Repeat([]byte{byte(i)}, 50<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(ctx); err != nil {
		t.Fatalf("batch commit with a stale map: %v", err)
	}
	fe := freshFrontEnd(c)
	for i, k := range keys {
		if got, err := fe.Get(ctx, k); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{byte(i)}, 50<<10)) {
			t.Fatalf("get %s: %d bytes, %v", k, len(got), err)
		}
	}
}

// TestRepairRollsBackFailedOverwrite: an overwrite that failed after
// reaching 3 of 6 positions leaves 3 current shards of each value, so no
// version is readable from current shards; reads serve the older value
// from the previous shards that nodes keep, and repair counted the key
// lost. Repair now rolls the failed version back (its holders put their
// previous shards back) once it is older than the garbage grace, and the
// key is whole again: with the two positions that held the older value
// all along stopped, it still reads back (from previous shards it would
// not: nothing would prove that the failed write never reached 5).
func TestRepairRollsBackFailedOverwrite(t *testing.T) {
	ctx := context.Background()
	opts := lifeOptions(6)
	opts.GarbageGrace = 500 * time.Millisecond
	c := clustertest.Start(t, opts)
	d := c.Client(nil)
	k := ds.NewKey("/rollback/overwrite")
	o := c.Owners(k.String())
	v1 := bytes.Repeat([]byte("1"), 300<<10)
	// Repair judges a write by the owners of the map only a grace after
	// the map was set.
	clustertest.WaitFor(t, 10*time.Second, "the map a grace old", func() (bool, string) {
		since := c.Current().MapSince
		return since != 0 && time.Since(time.Unix(0, since)) > opts.GarbageGrace, fmt.Sprintf("map since %d", since)
	})
	failedOverwrite(t, c, d, k, v1, 280<<10, 3, 4, 5)
	if got, err := d.Get(ctx, k); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("get after the failed overwrite: %d bytes, %v; want v1", len(got), err)
	}
	wrote := time.Now()
	clustertest.WaitFor(t, 30*time.Second, "no degraded or lost key", func() (bool, string) {
		ok, state := c.Settled()
		st := c.Node(c.Leader()).RepairStats()
		return ok && st.Lost == 0 && st.Started.After(wrote), state
	})
	c.Stop(o[3])
	c.Stop(o[4])
	if got, err := d.Get(ctx, k); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("get with positions 3 and 4 stopped after the roll-back: %d bytes, %v; want v1", len(got), err)
	}
}

// TestNewOwnerNotFilledIsNotAbsent: a node that took a position over when
// its owner went out holds nothing until repair fills it, so its "not
// found" must not count as the key's absence. A small value acknowledged on
// positions 0 and 2 (position 1 missed it) whose position 0 went out, read
// while position 2 is down, is unavailable, not ds.ErrNotFound; once repair
// has filled the new owner it reads back.
func TestNewOwnerNotFilledIsNotAbsent(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Nodes: 7, HeartbeatInterval: 100 * time.Millisecond, OutAfter: time.Second,
		RepairInterval: time.Hour, FastRaft: true})
	ctx := context.Background()
	clustertest.WaitFor(t, 10*time.Second, "a raft leader", func() (bool, string) { return c.Leader() >= 0, "none" })
	leader := c.Leader()
	var key ds.Key
	var owners []int
	for i := 0; ; i++ {
		key = ds.NewKey(fmt.Sprintf("/unfilled/%d", i))
		owners = c.Owners(key.String())
		if !slices.Contains(owners[:3], leader) {
			break
		}
	}
	victim, missed, held := owners[0], owners[1], owners[2]
	val := []byte("a small value, replicated on positions 0 to 2")
	writer := c.Client(&dscluster.Options{Down: []int{missed}})
	if err := writer.Put(ctx, key, val); err != nil {
		t.Fatalf("put with position 1 down: %v", err)
	}

	heldID := c.Node(held).ID().String()
	stopUntilMapMoves(t, c, victim)
	cur := c.Current()
	if cur.Vouches(placement.Slot(key.String()), 0) {
		t.Fatal("position 0 changed owner without repair, but the description vouches for it")
	}
	now := cur.Map.Owners(placement.Slot(key.String()))
	if cur.Map.Nodes[now[2]].ID != heldID {
		t.Fatalf("position 2 moved to %s; the test needs it where the value is", cur.Map.Nodes[now[2]].ID)
	}
	reader := c.Client(&dscluster.Options{Down: []int{int(now[2])}})
	_, err := reader.Get(ctx, key)
	if !errors.Is(err, dscluster.ErrUnavailable) {
		t.Fatalf("get with position 0 not filled, position 1 without the write and position 2 down: %v; want ErrUnavailable, never ErrNotFound", err)
	}
	if _, err := reader.Has(ctx, key); !errors.Is(err, dscluster.ErrUnavailable) {
		t.Fatalf("has: %v; want ErrUnavailable", err)
	}

	// Repair fills the new owner, then a pass finds every key at full
	// redundancy and the description vouches for every owner again.
	clustertest.WaitFor(t, 30*time.Second, "repair fills the new owners", func() (bool, string) {
		l := c.Leader()
		if l < 0 {
			return false, "no leader"
		}
		err := c.Node(l).RepairPass(ctx)
		return c.Current().Unfilled == nil, fmt.Sprintf("pass: %v", err)
	})
	// The reader looks the description up again at most once a second.
	clustertest.WaitFor(t, 10*time.Second, "the value read back once repair filled position 0", func() (bool, string) {
		got, err := reader.Get(ctx, key)
		return err == nil && bytes.Equal(got, val), fmt.Sprintf("%q, %v", got, err)
	})
}

// TestOpenAfterDrainReadsTheCurrentDescription: a drained node removed from
// the cluster and left running serves the description it had then. A front
// end whose config lists it first must not keep that one: there, a node
// drained after it is still draining, and `dsclient status --wait` would
// wait for it forever.
func TestOpenAfterDrainReadsTheCurrentDescription(t *testing.T) {
	c := clustertest.Start(t, lifeOptions(8))
	d := c.Client(nil)
	ctx := context.Background()
	clustertest.WaitFor(t, 10*time.Second, "a raft leader", func() (bool, string) { return c.Leader() >= 0, "none" })
	leaderState := func(i int) string {
		m, ok := c.Node(c.Leader()).Cluster().Member(c.Node(i).ID().String())
		if !ok {
			return "not a member"
		}
		return m.State
	}
	var drained []int
	for i := 0; i < c.Len() && len(drained) < 2; i++ {
		if i == c.Leader() {
			continue
		}
		if err := d.Member(ctx, membership.Command{Op: membership.OpDrain, ID: c.Node(i).ID().String()}); err != nil {
			t.Fatalf("drain node %d: %v", i, err)
		}
		clustertest.WaitFor(t, 60*time.Second, fmt.Sprintf("node %d drained and removed", i), func() (bool, string) {
			s := leaderState(i)
			return s == membership.Removed, "state " + s
		})
		drained = append(drained, i)
	}
	first, second := drained[0], drained[1]
	secondID := c.Node(second).ID().String()
	if m, _ := c.Node(first).Cluster().Member(secondID); m.State == membership.Removed {
		t.Fatalf("node %d, removed first, learnt that node %d was removed after it: the test needs its stale description", first, second)
	}

	// Every member applies the removal a little after the leader: the
	// front end may ask any of them.
	clustertest.WaitFor(t, 30*time.Second, fmt.Sprintf("every member knows node %d removed", second), func() (bool, string) {
		for i := 0; i < c.Len(); i++ {
			if slices.Contains(drained, i) || c.Node(i) == nil {
				continue
			}
			if m, _ := c.Node(i).Cluster().Member(secondID); m.State != membership.Removed {
				return false, fmt.Sprintf("node %d: %s", i, m.State)
			}
		}
		return true, ""
	})
	cc := c.ClientConfig()
	firstAddr := c.Info.Map.Nodes[first].Addrs[0] + "/p2p/" + c.Node(first).ID().String()
	cc.Nodes = append([]string{firstAddr}, cc.Nodes...)
	d2, err := dscluster.Open(ctx, cc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if m, ok := d2.Cluster().Member(secondID); ok && m.State != membership.Removed {
		t.Fatalf("a front end opened through removed node %d sees node %d %s; want removed", first, second, m.State)
	}
}
