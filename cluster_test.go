package dscluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/clustertest"
	"github.com/filedrive-team/go-ds-cluster/coding"
)

// smallThreshold is clustertest's default: values below it are replicated
// m+1 = 3 times on the first 3 positions of their slot.
const smallThreshold = 16 << 10

// logUniformSize draws a size between 1 B and max, uniform in log(size):
// as many 1-10 B values as 100 KiB-1 MiB ones. For max = 2 MiB the mean is
// max/ln(max) ≈ 144 KiB, so 1,000 values total about 150 MB: all size
// classes are covered (tiny replicated ones, 256 KiB blocks, multi-MiB ones)
// while the run fits the CI budget.
func logUniformSize(r *rand.Rand, limit int) int {
	n := int(math.Exp(r.Float64() * math.Log(float64(limit))))
	return min(max(n, 1), limit)
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// putAll writes vals under keys with `workers` goroutines.
func putAll(t *testing.T, d *dscluster.Datastore, keys []ds.Key, vals [][]byte, workers int) {
	t.Helper()
	ctx := context.Background()
	idx := make(chan int)
	errs := make(chan error, len(keys))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				if err := d.Put(ctx, keys[i], vals[i]); err != nil {
					errs <- fmt.Errorf("put %s (%d bytes): %w", keys[i], len(vals[i]), err)
				}
			}
		}()
	}
	for i := range keys {
		idx <- i
	}
	close(idx)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// countStopped is how many of nodes are in stopped.
func countStopped(nodes []int, stopped []int) int {
	n := 0
	for _, o := range nodes {
		if slices.Contains(stopped, o) {
			n++
		}
	}
	return n
}

func TestSurvivesTwoNodesLost(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	c := clustertest.Start(t, clustertest.Options{Nodes: 6})
	d := c.Client(nil)

	const n = 1000
	keys := make([]ds.Key, n)
	vals := make([][]byte, n)
	total, small := 0, 0
	for i := range keys {
		keys[i] = ds.NewKey(fmt.Sprintf("/blocks/v%04d", i))
		vals[i] = randBytes(r, logUniformSize(r, 2<<20))
		total += len(vals[i])
		if len(vals[i]) < smallThreshold {
			small++
		}
	}
	t.Logf("%d values, %d bytes in all, %d replicated (< %d B), %d erasure coded", n, total, small, smallThreshold, n-small)

	start := time.Now()
	putAll(t, d, keys, vals, 8)
	t.Logf("put: %v", time.Since(start))

	perm := r.Perm(6)
	stopped := perm[:2]
	t.Logf("stopping nodes %v", stopped)
	for _, i := range stopped {
		c.Stop(i)
	}

	start = time.Now()
	var (
		wg  sync.WaitGroup
		idx = make(chan int)
		mu  sync.Mutex
		bad []string
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				got, err := d.Get(ctx, keys[i])
				var msg string
				switch {
				case err != nil:
					msg = fmt.Sprintf("get %s (%d bytes, owners %v): %v", keys[i], len(vals[i]), c.Owners(keys[i].String()), err)
				case !bytes.Equal(got, vals[i]):
					msg = fmt.Sprintf("get %s: got %d bytes that differ from the %d put", keys[i], len(got), len(vals[i]))
				}
				if msg != "" {
					mu.Lock()
					bad = append(bad, msg)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range keys {
		idx <- i
	}
	close(idx)
	wg.Wait()
	t.Logf("get all with nodes %v stopped: %v", stopped, time.Since(start))
	for _, m := range bad {
		t.Error(m)
	}
	if len(bad) > 0 {
		t.Fatalf("%d of %d values not read back with 2 nodes stopped", len(bad), n)
	}

	for i := 0; i < n; i += 7 {
		has, err := d.Has(ctx, keys[i])
		if err != nil || !has {
			t.Errorf("has %s = %v, %v; want true, nil", keys[i], has, err)
		}
		size, err := d.GetSize(ctx, keys[i])
		if err != nil || size != len(vals[i]) {
			t.Errorf("getsize %s = %d, %v; want %d, nil", keys[i], size, err, len(vals[i]))
		}
	}
}

// freshFrontEnd opens a new front end (a new libp2p host) after nodes were
// restarted. The front end that saw the nodes down cannot dial them again
// for the libp2p dial backoff (5 s and more, growing to 5 min):
// TestFrontEndReachesRestartedNode shows that bug. Tests about other
// invariants read through a fresh front end so they test what they name.
func freshFrontEnd(c *clustertest.Cluster) *dscluster.Datastore { return c.Client(nil) }

// isUnavailable checks that err is an unavailability error, never a
// not-found answer.
func isUnavailable(err error) bool {
	return errors.Is(err, dscluster.ErrUnavailable) && !errors.Is(err, ds.ErrNotFound)
}

func TestThreeNodesLostIsUnavailable(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	c := clustertest.Start(t, clustertest.Options{Nodes: 6})
	d := c.Client(nil)

	const n = 50
	keys := make([]ds.Key, n)
	vals := make([][]byte, n)
	for i := range keys {
		keys[i] = ds.NewKey(fmt.Sprintf("/three/k%02d", i))
		size := 1 + r.IntN(smallThreshold-1) // replicated
		if i%2 == 1 {
			size = smallThreshold + r.IntN(300<<10) // erasure coded
		}
		vals[i] = randBytes(r, size)
	}
	putAll(t, d, keys, vals, 8)

	stopped := r.Perm(6)[:3]
	t.Logf("stopping nodes %v", stopped)
	for _, i := range stopped {
		c.Stop(i)
	}

	var smallServed, smallUnavailable int
	for i, k := range keys {
		owners := c.Owners(k.String())
		got, err := d.Get(ctx, k)
		if len(vals[i]) >= smallThreshold {
			if !isUnavailable(err) {
				t.Errorf("get erasure %s (owners %v) with nodes %v stopped: %d bytes, %v; want ErrUnavailable",
					k, owners, stopped, len(got), err)
				continue
			}
			if got != nil {
				t.Errorf("get %s: returned %d bytes along with the error", k, len(got))
			}
			if want := "found 3 valid shards, need 4"; !strings.Contains(err.Error(), want) {
				t.Errorf("get %s: error %q does not say %q", k, err, want)
			}
			var ue *dscluster.UnavailableError
			if !errors.As(err, &ue) || ue.Found != 3 || ue.Need != 4 || len(ue.Failed) != 3 {
				t.Errorf("get %s: %#v: want Found 3, Need 4, 3 failed nodes", k, ue)
			}
			continue
		}
		// A replicated value lives on its slot's first 3 positions.
		if countStopped(owners[:3], stopped) == 3 {
			smallUnavailable++
			if !isUnavailable(err) || got != nil {
				t.Errorf("get replicated %s (replicas on %v, all stopped): %d bytes, %v; want ErrUnavailable", k, owners[:3], len(got), err)
			} else if !strings.Contains(err.Error(), "found 0 valid shards") {
				t.Errorf("get %s: error %q does not say it found 0 valid shards", k, err)
			}
			continue
		}
		smallServed++
		if err != nil || !bytes.Equal(got, vals[i]) {
			t.Errorf("get replicated %s (replicas on %v, stopped %v): %d bytes, %v; want the %d bytes put",
				k, owners[:3], stopped, len(got), err, len(vals[i]))
		}
	}
	t.Logf("replicated values: %d served from a surviving replica, %d unavailable", smallServed, smallUnavailable)

	// Back to 2 nodes stopped: a key never written is not found, except
	// where both stopped nodes are among the first 3 positions of its slot:
	// a replicated write acknowledged by its quorum of 2 may sit on exactly
	// those two, so the front end must answer "unavailable", not "absent".
	c.Restart(stopped[2])
	down := stopped[:2]
	d = freshFrontEnd(c)
	var notFound, ambiguous int
	for i := range 40 {
		k := ds.NewKey(fmt.Sprintf("/three/never-%d", i))
		owners := c.Owners(k.String())
		got, err := d.Get(ctx, k)
		if countStopped(owners[:3], down) == 2 {
			ambiguous++
			if !isUnavailable(err) {
				t.Errorf("get missing %s (replica positions %v, stopped %v): %d bytes, %v; want ErrUnavailable (it may exist)", k, owners[:3], down, len(got), err)
			}
			continue
		}
		notFound++
		if !errors.Is(err, ds.ErrNotFound) || got != nil {
			t.Errorf("get missing %s (owners %v, stopped %v): %d bytes, %v; want ds.ErrNotFound", k, owners, down, len(got), err)
		}
	}
	t.Logf("never-written keys with nodes %v stopped: %d ErrNotFound, %d ErrUnavailable (both stopped nodes hold replica positions)", down, notFound, ambiguous)

	for _, i := range down {
		c.Restart(i)
	}
	d = freshFrontEnd(c)
	for i, k := range keys {
		got, err := d.Get(ctx, k)
		if err != nil || !bytes.Equal(got, vals[i]) {
			t.Errorf("get %s after restart: %d bytes, %v; want the %d bytes put", k, len(got), err, len(vals[i]))
		}
	}
}

// flip inverts the byte at off of file path.
func flip(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func shardFile(t *testing.T, c *clustertest.Cluster, node int, key ds.Key) string {
	t.Helper()
	p, err := c.ShardFile(node, key.String())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCorruptShardNeverServed(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(5, 6))
	c := clustertest.Start(t, clustertest.Options{Nodes: 6})
	d := c.Client(nil)

	put := func(name string, size int) (ds.Key, []byte) {
		k := ds.NewKey("/corrupt/" + name)
		v := randBytes(r, size)
		if err := d.Put(ctx, k, v); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		return k, v
	}
	wantBytes := func(what string, k ds.Key, v []byte) {
		t.Helper()
		got, err := d.Get(ctx, k)
		if err != nil || !bytes.Equal(got, v) {
			t.Errorf("%s: get %s = %d bytes, %v; want the %d bytes put", what, k, len(got), err, len(v))
		}
	}
	wantUnavailable := func(what string, k ds.Key) {
		t.Helper()
		got, err := d.Get(ctx, k)
		if !isUnavailable(err) || got != nil {
			t.Errorf("%s: get %s = %d bytes, %v; want ErrUnavailable and no bytes", what, k, len(got), err)
		}
	}
	const size = 256 << 10
	const shardLen = size / 4

	// Data area of data shard 0: the last byte of the file is shard data.
	k1, v1 := put("data-flip", size)
	flip(t, shardFile(t, c, c.Owners(k1.String())[0], k1), -1)
	flip(t, shardFile(t, c, c.Owners(k1.String())[0], k1), -shardLen/2)
	wantBytes("data shard 0 data corrupted", k1, v1)

	// Header of data shard 1: byte 20 is inside the value checksum field.
	k2, v2 := put("header-flip", size)
	flip(t, shardFile(t, c, c.Owners(k2.String())[1], k2), 20)
	wantBytes("data shard 1 header corrupted", k2, v2)

	// Truncated data shard 2.
	k3, v3 := put("truncated", size)
	p3 := shardFile(t, c, c.Owners(k3.String())[2], k3)
	if err := os.Truncate(p3, 1000); err != nil {
		t.Fatal(err)
	}
	wantBytes("data shard 2 truncated to 1000 bytes", k3, v3)
	if err := os.Truncate(p3, 0); err != nil {
		t.Fatal(err)
	}
	wantBytes("data shard 2 truncated to 0 bytes", k3, v3)

	// A file that holds another key's (valid) shard, as a misplaced file
	// would: same node, same position.
	k4, v4 := put("swapped-a", size)
	k5, v5 := put("swapped-b", size)
	o4, o5 := c.Owners(k4.String()), c.Owners(k5.String())
	node := o4[0]
	if pos := slices.Index(o5, node); pos >= 0 {
		b, err := os.ReadFile(shardFile(t, c, node, k5))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(shardFile(t, c, node, k4), b, 0o644); err != nil {
			t.Fatal(err)
		}
		wantBytes("shard file replaced by another key's shard", k4, v4)
		wantBytes("the other key", k5, v5)
	}

	// Corruption on 3 of 6 shards (two data, one parity): not rebuildable.
	k6, _ := put("three-bad", size)
	o6 := c.Owners(k6.String())
	flip(t, shardFile(t, c, o6[0], k6), -1)
	flip(t, shardFile(t, c, o6[3], k6), 30)
	if err := os.Truncate(shardFile(t, c, o6[5], k6), 10); err != nil {
		t.Fatal(err)
	}
	wantUnavailable("3 of 6 shards corrupt", k6)
	_, err := d.Get(ctx, k6)
	if err != nil && !strings.Contains(err.Error(), "found 3 valid shards, need 4") {
		t.Errorf("3 of 6 shards corrupt: error %q does not say it found 3 of the 4 needed", err)
	}

	// Every data shard corrupted the same way, parity intact: still exact.
	k7, v7 := put("all-data-bad", size)
	o7 := c.Owners(k7.String())
	flip(t, shardFile(t, c, o7[0], k7), -7)
	flip(t, shardFile(t, c, o7[1], k7), -7)
	wantBytes("data shards 0 and 1 corrupt", k7, v7)

	// Replicated small value: one replica corrupt, then two, then three.
	k8, v8 := put("small", 1000)
	o8 := c.Owners(k8.String())
	flip(t, shardFile(t, c, o8[0], k8), -1)
	wantBytes("replica 0 corrupt", k8, v8)
	flip(t, shardFile(t, c, o8[1], k8), 4)
	wantBytes("replicas 0 and 1 corrupt", k8, v8)
	if err := os.Truncate(shardFile(t, c, o8[2], k8), 100); err != nil {
		t.Fatal(err)
	}
	wantUnavailable("all 3 replicas corrupt", k8)

	// The other values are untouched by all this.
	wantBytes("untouched", k5, v5)
}

func TestOverwriteNewestWins(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 8))
	c := clustertest.Start(t, clustertest.Options{Nodes: 6})
	d := c.Client(nil)
	k := ds.NewKey("/overwrite/key")
	owners := c.Owners(k.String())
	// Stop the node at position 0 (data shard 0 and first replica), so the
	// restarted node holds stale shards of both kinds where Get asks first.
	victim := owners[0]

	var last []byte
	check := func(step int) {
		t.Helper()
		got, err := d.Get(ctx, k)
		if err != nil || !bytes.Equal(got, last) {
			t.Fatalf("step %d: get = %d bytes, %v; want the last %d bytes written", step, len(got), err, len(last))
		}
		size, err := d.GetSize(ctx, k)
		if err != nil || size != len(last) {
			t.Fatalf("step %d: getsize = %d, %v; want %d", step, size, err, len(last))
		}
	}
	for step := range 30 {
		switch step {
		case 10:
			c.Stop(victim)
		case 20:
			c.Restart(victim)
			d = freshFrontEnd(c)
		}
		size := 1 + r.IntN(4000)
		if step%2 == 1 {
			size = smallThreshold + r.IntN(600<<10)
		}
		v := randBytes(r, size)
		if err := d.Put(ctx, k, v); err != nil {
			t.Fatalf("step %d: put %d bytes: %v", step, size, err)
		}
		last = v
		check(step)
	}
	// Back-to-back overwrites with no read in between.
	for step := 30; step < 60; step++ {
		v := randBytes(r, []int{10, 300 << 10}[step%2])
		if err := d.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
		last = v
	}
	check(60)
}

// TestOverwriteNewestWinsTwoWriters: a write that happens after another
// front end's write (here: it starts after that Put returned) must win.
func TestOverwriteNewestWinsTwoWriters(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{Nodes: 6})
	a, b := c.Client(nil), c.Client(nil)
	fronts := []*dscluster.Datastore{a, b}
	k := ds.NewKey("/overwrite/two-writers")
	lost := 0
	const rounds = 200
	for i := range rounds {
		first, second := fronts[i%2], fronts[1-i%2]
		v1 := fmt.Appendf(nil, "round %d first", i)
		v2 := fmt.Appendf(nil, "round %d second", i)
		if err := first.Put(ctx, k, v1); err != nil {
			t.Fatal(err)
		}
		if err := second.Put(ctx, k, v2); err != nil {
			t.Fatal(err)
		}
		got, err := a.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, v2) {
			lost++
			if lost <= 3 {
				t.Errorf("round %d: get = %q; want %q, written after %q returned", i, got, v2, v1)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d later writes lost to an earlier write of the other front end", lost, rounds)
	}

	// The same for Delete after another front end's Put.
	undeleted := 0
	for i := range rounds {
		first, second := fronts[i%2], fronts[1-i%2]
		if err := first.Put(ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := second.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Get(ctx, k); !errors.Is(err, ds.ErrNotFound) {
			undeleted++
		}
	}
	if undeleted > 0 {
		t.Errorf("%d of %d acknowledged deletes lost to the other front end's earlier put", undeleted, rounds)
	}
}

func TestDeleteWithNodeDown(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(9, 10))
	c := clustertest.Start(t, clustertest.Options{Nodes: 6})

	for _, size := range []int{100, 256 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			d := c.Client(nil)
			k := ds.NewKey(fmt.Sprintf("/del/%d", size))
			other := ds.NewKey(fmt.Sprintf("/del/%d-kept", size))
			v := randBytes(r, size)
			for _, key := range []ds.Key{k, other} {
				if err := d.Put(ctx, key, v); err != nil {
					t.Fatal(err)
				}
			}
			// The node at position 0 holds a shard (or replica) of the value
			// and will miss the tombstone.
			victim := c.Owners(k.String())[0]
			c.Stop(victim)
			if err := d.Delete(ctx, k); err != nil {
				t.Fatalf("delete with node %d stopped: %v", victim, err)
			}
			if got, err := d.Get(ctx, k); !errors.Is(err, ds.ErrNotFound) {
				t.Fatalf("get after delete: %d bytes, %v; want ds.ErrNotFound", len(got), err)
			}
			c.Restart(victim)
			d = freshFrontEnd(c)
			if _, err := c.ShardFile(victim, k.String()); err != nil {
				t.Fatalf("the restarted node should still hold its stale shard: %v", err)
			}
			if got, err := d.Get(ctx, k); !errors.Is(err, ds.ErrNotFound) {
				t.Fatalf("get after restart of node %d: %d bytes, %v; want ds.ErrNotFound (tombstone is newer)", victim, len(got), err)
			}
			if has, err := d.Has(ctx, k); err != nil || has {
				t.Errorf("has after restart = %v, %v; want false", has, err)
			}
			if _, err := d.GetSize(ctx, k); !errors.Is(err, ds.ErrNotFound) {
				t.Errorf("getsize after restart: %v; want ds.ErrNotFound", err)
			}
			keys := queryKeys(t, d, dsq.Query{Prefix: "/del", KeysOnly: true})
			if slices.Contains(keys, k.String()) || !slices.Contains(keys, other.String()) {
				t.Errorf("query lists %v; want %s and not the deleted %s", keys, other, k)
			}
			got, err := d.Get(ctx, other)
			if err != nil || !bytes.Equal(got, v) {
				t.Errorf("get %s: %d bytes, %v", other, len(got), err)
			}
		})
	}
}

func queryKeys(t *testing.T, d *dscluster.Datastore, q dsq.Query) []string {
	t.Helper()
	res, err := d.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	defer res.Close()
	var keys []string
	for r := range res.Next() {
		if r.Error != nil {
			t.Fatalf("query result: %v", r.Error)
		}
		keys = append(keys, r.Key)
	}
	return keys
}

func TestPutQuorum(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(11, 12))
	c := clustertest.Start(t, clustertest.Options{Nodes: 6})
	d := c.Client(nil)
	stopped := r.Perm(6)[:2]
	t.Logf("stopping nodes %v", stopped)
	for _, i := range stopped {
		c.Stop(i)
	}

	big := randBytes(r, 256<<10)
	k := ds.NewKey("/quorum/big")
	err := d.Put(ctx, k, big)
	if !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("put 256 KiB with 2 of 6 nodes stopped: %v; want ErrQuorum (quorum 5)", err)
	}
	var qe *dscluster.QuorumError
	if !errors.As(err, &qe) || qe.Stored != 4 || qe.Quorum != 5 || len(qe.Failed) != 2 {
		t.Errorf("quorum error %#v: want Stored 4, Quorum 5, 2 failed nodes", qe)
	}
	for _, i := range stopped {
		if name := fmt.Sprintf("node %d (", i); !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name stopped %s…)", err, name)
		}
	}
	if !strings.Contains(err.Error(), "stored 4 shards, quorum is 5") {
		t.Errorf("error %q does not say 4 of 5 shards were stored", err)
	}

	// Small values: 3 replicas on the slot's first 3 positions, quorum 2.
	seen := map[int]int{}
	for i := 0; i < 200 && len(seen) < 3 || i < 30; i++ {
		k := ds.NewKey(fmt.Sprintf("/quorum/small-%d", i))
		owners := c.Owners(k.String())
		down := countStopped(owners[:3], stopped)
		seen[down]++
		v := randBytes(r, 1+r.IntN(1000))
		err := d.Put(ctx, k, v)
		if down <= 1 {
			if err != nil {
				t.Errorf("put small %s (replicas on %v, %d stopped): %v; want success", k, owners[:3], down, err)
				continue
			}
			got, err := d.Get(ctx, k)
			if err != nil || !bytes.Equal(got, v) {
				t.Errorf("get small %s: %d bytes, %v", k, len(got), err)
			}
			continue
		}
		if !errors.Is(err, dscluster.ErrQuorum) || !errors.As(err, &qe) || qe.Stored != 1 || qe.Quorum != 2 {
			t.Errorf("put small %s (replicas on %v, both stopped nodes among them): %v; want ErrQuorum, 1 of 2 stored", k, owners[:3], err)
		}
	}
	t.Logf("small puts by stopped replica owners: %v", seen)
	if len(seen) < 3 {
		t.Errorf("keys cover only %v stopped-replica counts; want 0, 1 and 2", seen)
	}

	// The failed big Put is retried once the nodes are back: it succeeds.
	for _, i := range stopped {
		c.Restart(i)
	}
	d = freshFrontEnd(c)
	if err := d.Put(ctx, k, big); err != nil {
		t.Fatalf("retry after restart: %v", err)
	}
	got, err := d.Get(ctx, k)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("get after retry: %d bytes, %v", len(got), err)
	}
}

func TestQueryWithNodeDown(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(13, 14))
	c := clustertest.Start(t, clustertest.Options{Nodes: 6})
	d := c.Client(nil)

	const n = 200
	keys := make([]ds.Key, n)
	vals := make([][]byte, n)
	want := make([]string, n)
	for i := range keys {
		keys[i] = ds.NewKey(fmt.Sprintf("/q/%03d", i))
		size := 1 + r.IntN(2000)
		if i%10 == 0 {
			size = smallThreshold + r.IntN(100<<10)
		}
		vals[i] = randBytes(r, size)
		want[i] = keys[i].String()
	}
	putAll(t, d, keys, vals, 8)
	// A key outside the prefix must not show up.
	if err := d.Put(ctx, ds.NewKey("/qq/outside"), []byte("x")); err != nil {
		t.Fatal(err)
	}

	perm := r.Perm(6)
	c.Stop(perm[0])
	c.Stop(perm[1])
	t.Logf("stopped nodes %v", perm[:2])

	got := queryKeys(t, d, dsq.Query{Prefix: "/q", KeysOnly: true})
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("query with 2 nodes stopped: %d keys, want exactly the %d put (first got %v)", len(got), n, got[:min(len(got), 5)])
	}

	// With values and sizes: every value exact.
	res, err := d.Query(ctx, dsq.Query{Prefix: "/q"})
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for e := range res.Next() {
		if e.Error != nil {
			t.Fatalf("query result: %v", e.Error)
		}
		i := slices.Index(want, e.Key)
		if i < 0 || !bytes.Equal(e.Value, vals[i]) || e.Size != len(vals[i]) {
			t.Errorf("query entry %s: %d bytes (size %d), want the %d bytes put", e.Key, len(e.Value), e.Size, len(vals[max(i, 0)]))
		}
		count++
	}
	_ = res.Close()
	if count != n {
		t.Errorf("query with values: %d entries, want %d", count, n)
	}

	c.Stop(perm[2])
	if res, err := d.Query(ctx, dsq.Query{Prefix: "/q", KeysOnly: true}); err == nil {
		all, _ := res.Rest()
		t.Fatalf("query with 3 of 6 nodes stopped: no error, %d entries; want an error (keys could be missing)", len(all))
	} else if !strings.Contains(err.Error(), "3 nodes unreachable") {
		t.Errorf("query error %q does not say 3 nodes are unreachable", err)
	}
}

// TestFrontEndReachesRestartedNode: a front end that found a node down must
// use it again once it is back. Here node X is seen down by a Get, comes
// back, and then another node Y stops: a 256 KiB Put needs 5 of 6 shards,
// so it succeeds only if the front end reaches X again.
func TestFrontEndReachesRestartedNode(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{Nodes: 6})
	d := c.Client(nil)
	k := ds.NewKey("/restart/k")
	v := bytes.Repeat([]byte("restart "), 32<<10)
	if err := d.Put(ctx, k, v); err != nil {
		t.Fatal(err)
	}
	x, y := c.Owners(k.String())[0], c.Owners(k.String())[1]
	c.Stop(x)
	// Reads while x is down: each asks x first (data shard 0).
	for range 20 {
		if got, err := d.Get(ctx, k); err != nil || !bytes.Equal(got, v) {
			t.Fatalf("get with node %d stopped: %d bytes, %v", x, len(got), err)
		}
	}
	c.Restart(x)
	c.Stop(y)
	err := d.Put(ctx, k, v)
	if err != nil {
		t.Errorf("put right after node %d restarted, node %d stopped: %v\n"+
			"want success: node %d is back and serving (a fresh front end reaches it, see below)", x, y, err, x)
	}
	if err := freshFrontEnd(c).Put(ctx, k, v); err != nil {
		t.Fatalf("a fresh front end cannot put either: %v", err)
	}
}

// TestRacingWritersAllSucceed: front ends that keep overwriting one key at
// once show each other newer versions, and each writes again after them
// until its own version holds the quorum. They must all get through (a
// first cut that gave up after a few attempts failed up to a third of
// such puts), and the key must end as one of the values written.
func TestRacingWritersAllSucceed(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	k := ds.NewKey("/race/hot")
	const writers, puts = 6, 10
	errs := make(chan error, writers*puts)
	var wg sync.WaitGroup
	for g := range writers {
		d := c.Client(nil)
		wg.Go(func() {
			for range puts {
				errs <- d.Put(ctx, k, bytes.Repeat([]byte{byte('a' + g)}, 64<<10))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("put racing %d writers: %v", writers, err)
		}
	}
	got, err := c.Client(nil).Get(ctx, k)
	if err != nil || len(got) != 64<<10 || got[0] < 'a' || got[0] >= 'a'+writers || !bytes.Equal(got, bytes.Repeat(got[:1], len(got))) {
		t.Fatalf("get after the race: %d bytes, %v; want one writer's value", len(got), err)
	}
}

// TestThreeNodesOneAndTwo: the policy dscfg picks for the seed's 3-node
// cluster, 1+2 (three copies), stores values, takes writes with one node
// stopped and serves reads with two stopped.
func TestThreeNodesOneAndTwo(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{Nodes: 3, Policy: coding.Erasure(1, 2), RepairInterval: time.Hour})
	d := c.Client(nil)
	vals := map[ds.Key][]byte{
		ds.NewKey("/three/big"):   bytes.Repeat([]byte("b"), 300<<10),
		ds.NewKey("/three/small"): []byte("s"),
	}
	for k, v := range vals {
		if err := d.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	c.Stop(2)
	late := ds.NewKey("/three/late")
	vals[late] = bytes.Repeat([]byte("l"), 100<<10)
	if err := c.Client(nil).Put(ctx, late, vals[late]); err != nil {
		t.Fatalf("put with one of 3 nodes stopped: %v", err)
	}
	c.Stop(1)
	r := c.Client(nil)
	for k, v := range vals {
		if got, err := r.Get(ctx, k); err != nil || !bytes.Equal(got, v) {
			t.Fatalf("get %s with two of 3 nodes stopped: %d bytes, %v", k, len(got), err)
		}
	}
}
