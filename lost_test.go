package dscluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/clustertest"
	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// TestRetriedDeleteIsDurable: a delete that reached only position 0
// fails its quorum; the caller retries it, as the QuorumError says to.
// The retry must write its tombstone through the quorum: with position 0
// (the only holder of the failed delete's tombstone) down, the value must
// still be gone. A retried delete used to see that tombstone, take the key
// for deleted, and write nothing.
func TestRetriedDeleteIsDurable(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	for _, size := range []int{1000, 300 << 10} { // replicated, erasure coded
		k := ds.NewKey("/lost/retried-delete/" + string(rune('a'+size%26)))
		o := c.Owners(k.String())
		if err := c.Client(nil).Put(ctx, k, bytes.Repeat([]byte("v"), size)); err != nil {
			t.Fatal(err)
		}
		part := c.Client(&dscluster.Options{Down: []int{o[1], o[2], o[3], o[4], o[5]}})
		if err := part.Delete(ctx, k); !errors.Is(err, dscluster.ErrQuorum) {
			t.Fatalf("size %d: delete reaching position 0 only: %v, want a quorum error", size, err)
		}
		d := c.Client(nil)
		// The failed delete's tombstone already hides the value: a
		// tombstone needs one shard, as repair counts it.
		if got, err := d.Get(ctx, k); !errors.Is(err, ds.ErrNotFound) {
			t.Fatalf("size %d: get after the failed delete: %d bytes, %v; want ds.ErrNotFound", size, len(got), err)
		}
		if err := d.Delete(ctx, k); err != nil {
			t.Fatalf("size %d: retried delete: %v", size, err)
		}
		without0 := c.Client(&dscluster.Options{Down: []int{o[0]}})
		if got, err := without0.Get(ctx, k); !errors.Is(err, ds.ErrNotFound) {
			t.Fatalf("size %d: get after the retried delete, position 0 down: %d bytes, %v; want ds.ErrNotFound", size, len(got), err)
		}
		if has, err := without0.Has(ctx, k); err != nil || has {
			t.Fatalf("size %d: has after the retried delete, position 0 down: %v, %v; want false", size, has, err)
		}
	}
}

// TestTombstoneHidesReplicatedValue: a small value (3 replicas) is deleted
// while position 0 is down, so its tombstone (of the erasure policy) is
// on positions 1-5. A reader that reaches positions 0-3 sees 3 tombstone
// shards and the old replica on position 0: the delete was acknowledged,
// so the value must not come back. A tombstone used to need k = 4 shards.
func TestTombstoneHidesReplicatedValue(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	k := ds.NewKey("/lost/tombstone")
	o := c.Owners(k.String())
	if err := c.Client(nil).Put(ctx, k, bytes.Repeat([]byte("x"), 1000)); err != nil {
		t.Fatal(err)
	}
	if err := c.Client(&dscluster.Options{Down: []int{o[0]}}).Delete(ctx, k); err != nil {
		t.Fatalf("delete with position 0 down: %v", err)
	}
	r := c.Client(&dscluster.Options{Down: []int{o[4], o[5]}})
	if got, err := r.Get(ctx, k); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("get with positions 4 and 5 down after the delete: %d bytes, %v; want ds.ErrNotFound", len(got), err)
	}
}

// TestLostReplicaDoesNotHideNewer: v2 overwrote a small value on positions
// 1 and 2 (its quorum; position 0 missed it and keeps v1). Then position
// 1's copy rots and its node's scrub removes it, so position 1 answers
// "not found". That answer shows no version: Get must ask on and find v2
// on position 2, not serve v1 from position 0.
func TestLostReplicaDoesNotHideNewer(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	k := ds.NewKey("/lost/replica")
	o := c.Owners(k.String())
	v1 := bytes.Repeat([]byte("1"), 1000)
	v2 := bytes.Repeat([]byte("2"), 1000)
	if err := c.Client(nil).Put(ctx, k, v1); err != nil {
		t.Fatal(err)
	}
	if err := c.Client(&dscluster.Options{Down: []int{o[0]}}).Put(ctx, k, v2); err != nil {
		t.Fatal(err)
	}
	if err := c.CorruptShard(o[1], k.String()); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Node(o[1]).Scrub(ctx); err != nil || st.Corrupt != 1 {
		t.Fatalf("scrub of position 1: %+v, %v; want 1 corrupt shard", st, err)
	}
	d := c.Client(nil)
	if got, err := d.Get(ctx, k); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("get: %q..., %v; want v2", got[:min(4, len(got))], err)
	}
	// Has and GetSize judge versions the same way.
	if err := c.Client(&dscluster.Options{Down: []int{o[0]}}).Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	if has, err := d.Has(ctx, k); err != nil || has {
		t.Fatalf("has after the delete: %v, %v; want false", has, err)
	}
}

// TestTimeoutBoundsEachRequest: Options.Timeout bounds every request to a
// node even when the caller's context allows longer. With two nodes that
// take requests and never answer, a 4+2 write cannot make its quorum of 5:
// it must fail once its requests time out, well before the caller's
// deadline, not hold the caller (and its buffers) until then.
func TestTimeoutBoundsEachRequest(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{})
	k := ds.NewKey("/lost/timeout")
	o := c.Owners(k.String())
	for _, x := range []int{o[4], o[5]} {
		hang(t, c, x)
	}
	d := c.Client(&dscluster.Options{Timeout: time.Second, HedgeAfter: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := d.Put(ctx, k, bytes.Repeat([]byte("t"), 300<<10))
	if !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("put with 2 of 6 nodes hung: %v; want a quorum error from timed-out requests", err)
	}
	if ctx.Err() != nil {
		t.Fatal("put returned only at the caller's deadline: Options.Timeout did not bound its requests")
	}
}

// TestHasAndSizeFollowGet: Has and GetSize judge versions as Get does, by
// the newest version with enough shards, not by the newest entry seen.
//   - v2 (200 KiB) overwrote v1 (300 KiB) but reached position 0 only and
//     failed. Get serves v1, so GetSize must give v1's length.
//   - A first write reached positions 0 and 1 only and failed. Get cannot
//     serve it, so Has must not say true: kubo's blockstore does not put a
//     block its datastore has, so a retried `ipfs add` would skip the block
//     and leave it unreadable.
func TestHasAndSizeFollowGet(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)

	k := ds.NewKey("/lost/size")
	v1 := bytes.Repeat([]byte("1"), 300<<10)
	failedOverwrite(t, c, d, k, v1, 200<<10, 1, 2, 3, 4, 5)
	if got, err := d.Get(ctx, k); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("get after the failed overwrite: %d bytes, %v; want v1", len(got), err)
	}
	if n, err := d.GetSize(ctx, k); err != nil || n != len(v1) {
		t.Fatalf("getsize after the failed overwrite: %d, %v; want %d (v1, which Get serves)", n, err, len(v1))
	}

	k = ds.NewKey("/lost/has")
	o := c.Owners(k.String())
	part := c.Client(&dscluster.Options{Down: []int{o[2], o[3], o[4], o[5]}})
	if err := part.Put(ctx, k, v1); !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("put reaching positions 0 and 1 only: %v, want a quorum error", err)
	}
	_, getErr := d.Get(ctx, k)
	if getErr == nil {
		t.Fatal("get served a write that reached 2 of 6 positions")
	}
	has, err := d.Has(ctx, k)
	if has {
		t.Fatalf("has after a failed first write: true, while get says %v", getErr)
	}
	if errors.Is(getErr, ds.ErrNotFound) != (err == nil) {
		t.Fatalf("has after a failed first write: %v; get says %v", err, getErr)
	}
	if _, err := d.GetSize(ctx, k); errors.Is(getErr, ds.ErrNotFound) != errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("getsize after a failed first write: %v; get says %v", err, getErr)
	}
	// Each error names its own operation, once.
	if errors.Is(getErr, dscluster.ErrUnavailable) {
		_, sizeErr := d.GetSize(ctx, k)
		for op, err := range map[string]error{"get": getErr, "has": err, "getsize": sizeErr} {
			if msg := fmt.Sprint(err); !strings.HasPrefix(msg, op+" "+k.String()+": unavailable: ") || strings.Count(msg, k.String()) != 1 {
				t.Errorf("%s's error: %q", op, msg)
			}
		}
	}
	// A retry, as the quorum error says, makes it whole.
	if err := d.Put(ctx, k, v1); err != nil {
		t.Fatal(err)
	}
	if has, err := d.Has(ctx, k); !has || err != nil {
		t.Fatalf("has after the retried put: %v, %v", has, err)
	}
}

// TestDeleteHidesFailedWrite: a first write that reached 2 positions and
// failed leaves shards that no version can be read from. Deleting the key
// must write a tombstone over them, not fail because nothing is readable.
func TestDeleteHidesFailedWrite(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	k := ds.NewKey("/lost/delete-failed")
	o := c.Owners(k.String())
	part := c.Client(&dscluster.Options{Down: []int{o[2], o[3], o[4], o[5]}})
	if err := part.Put(ctx, k, bytes.Repeat([]byte("f"), 300<<10)); !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("put reaching positions 0 and 1 only: %v, want a quorum error", err)
	}
	d := c.Client(nil)
	if err := d.Delete(ctx, k); err != nil {
		t.Fatalf("delete over a failed write: %v", err)
	}
	if got, err := d.Get(ctx, k); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("get after the delete: %d bytes, %v; want ds.ErrNotFound", len(got), err)
	}
	if has, err := d.Has(ctx, k); has || err != nil {
		t.Fatalf("has after the delete: %v, %v; want false", has, err)
	}
}

// failedOverwrite puts v1 under k, then overwrites it with size bytes
// through a front end that takes the owners of positions down for down,
// which must fail its quorum.
func failedOverwrite(t *testing.T, c *clustertest.Cluster, d *dscluster.Datastore, k ds.Key, v1 []byte, size int, down ...int) {
	t.Helper()
	ctx := context.Background()
	if err := d.Put(ctx, k, v1); err != nil {
		t.Fatal(err)
	}
	o := c.Owners(k.String())
	var nodes []int
	for _, pos := range down {
		nodes = append(nodes, o[pos])
	}
	if err := c.Client(&dscluster.Options{Down: nodes}).Put(ctx, k, bytes.Repeat([]byte("2"), size)); !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("overwrite with positions %v down: %v, want a quorum error", down, err)
	}
}

// failedDelete puts val under k, then deletes it with every position
// but 0 down: the delete fails, its tombstone on position 0 only.
func failedDelete(t *testing.T, c *clustertest.Cluster, d *dscluster.Datastore, k ds.Key, val []byte) {
	t.Helper()
	ctx := context.Background()
	if err := d.Put(ctx, k, val); err != nil {
		t.Fatal(err)
	}
	if err := c.Client(&dscluster.Options{Down: c.Owners(k.String())[1:]}).Delete(ctx, k); !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("delete with every position but 0 down: %v, want a quorum error", err)
	}
}

// TestFailedOverwriteKeepsOlderValue: a node keeps one current shard per
// key, so an overwrite that failed after reaching 3 of 6 positions (more
// than m, fewer than k) left 3 shards of each version and the key
// unreadable: the acknowledged value was lost. Nodes now keep the
// overwritten value's shard, and reads rebuild it, because the newer
// version provably never reached its quorum (3 positions still hold the
// older one as current). An acknowledged newer version that later lost
// shards must not be taken for a failed one: that read stays unavailable.
func TestFailedOverwriteKeepsOlderValue(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)

	k := ds.NewKey("/lost/overwrite-failed")
	o := c.Owners(k.String())
	v1 := bytes.Repeat([]byte("1"), 300<<10)
	failedOverwrite(t, c, d, k, v1, 280<<10, 3, 4, 5)
	if got, err := d.Get(ctx, k); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("get after the failed overwrite: %d bytes, %v; want v1", len(got), err)
	}
	if n, err := d.GetSize(ctx, k); err != nil || n != len(v1) {
		t.Fatalf("getsize after the failed overwrite: %d, %v; want %d", n, err, len(v1))
	}
	if has, err := d.Has(ctx, k); !has || err != nil {
		t.Fatalf("has after the failed overwrite: %v, %v", has, err)
	}

	// Two failed overwrites in a row, neither undone: the nodes keep both
	// older versions, and reads rebuild v1 from the older shards.
	twice := ds.NewKey("/lost/overwrite-failed-twice")
	failedOverwrite(t, c, d, twice, v1, 280<<10, 3, 4, 5)
	ot := c.Owners(twice.String())
	if err := c.Client(&dscluster.Options{Down: []int{ot[3], ot[4], ot[5]}}).Put(ctx, twice, bytes.Repeat([]byte("4"), 260<<10)); !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("second overwrite with positions 3-5 down: %v, want a quorum error", err)
	}
	if got, err := d.Get(ctx, twice); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("get after two failed overwrites: %d bytes, %v; want v1", len(got), err)
	}
	if n, err := d.GetSize(ctx, twice); err != nil || n != len(v1) {
		t.Fatalf("getsize after two failed overwrites: %d, %v; want %d", n, err, len(v1))
	}

	// The next overwrite that reaches its quorum wins as usual.
	v3 := bytes.Repeat([]byte("3"), 100<<10)
	if err := d.Put(ctx, k, v3); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Get(ctx, k); err != nil || !bytes.Equal(got, v3) {
		t.Fatalf("get after a good overwrite: %d bytes, %v; want v3", len(got), err)
	}

	// v2 acknowledged on positions 0-4, then positions 2 and 3 lose their
	// shards: 3 shards of v2, 1 of v1 current, and v1's previous shards.
	// (Had positions 0 and 1 lost theirs, their "not found" would prove
	// the key absent, as the package doc says of lost shards.)
	k = ds.NewKey("/lost/overwrite-degraded")
	o = c.Owners(k.String())
	if err := d.Put(ctx, k, v1); err != nil {
		t.Fatal(err)
	}
	if err := c.Client(&dscluster.Options{Down: []int{o[5]}}).Put(ctx, k, bytes.Repeat([]byte("2"), 280<<10)); err != nil {
		t.Fatal(err)
	}
	for _, pos := range []int{2, 3} {
		if err := c.CorruptShard(o[pos], k.String()); err != nil {
			t.Fatal(err)
		}
		if st, err := c.Node(o[pos]).Scrub(ctx); err != nil || st.Corrupt != 1 {
			t.Fatalf("scrub of position %d: %+v, %v", pos, st, err)
		}
	}
	if got, err := d.Get(ctx, k); !errors.Is(err, dscluster.ErrUnavailable) {
		t.Fatalf("get of an acknowledged version with 3 shards left: %d bytes (%q...), %v; want unavailable, never v1",
			len(got), got[:min(4, len(got))], err)
	}
	if has, err := d.Has(ctx, k); has || !errors.Is(err, dscluster.ErrUnavailable) {
		t.Fatalf("has of an acknowledged version with 3 shards left: %v, %v; want unavailable", has, err)
	}
}

// TestRetriedOverwritesKeepOlderValue: a client retries an overwrite while
// 3 of the key's 6 nodes are down. Each attempt reaches 3 positions and
// fails its quorum. When nodes kept one previous shard per key, the second
// attempt replaced the acknowledged value's shards there with the first
// attempt's, and v1 was lost; then writers undid each failed attempt.
// Nodes now keep every version an overwrite replaced, so neither undo nor
// anything else is needed: with every node up, v1 reads back. Likewise for
// a batch, and with the nodes stopped for real, where the failed dials
// refresh the front end's map and a batch writes its failed values again
// with Put. With two nodes down as well, the failed attempts cannot be
// proven failed, and the read is unavailable, never a failed value. A
// failed write that reached k positions is readable, and a reader may have
// seen it: the key reads as it.
func TestRetriedOverwritesKeepOlderValue(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	d := c.Client(nil)
	v1 := bytes.Repeat([]byte("1"), 300<<10)
	overwrite := func(w *dscluster.Datastore, batch bool, k ds.Key, val []byte) error {
		if !batch {
			return w.Put(ctx, k, val)
		}
		b, err := w.Batch(ctx)
		if err != nil {
			return err
		}
		if err := b.Put(ctx, k, val); err != nil {
			return err
		}
		return b.Commit(ctx)
	}
	for _, stop := range []bool{false, true} {
		for _, batch := range []bool{false, true} {
			name := fmt.Sprintf("stopped %v, batch %v", stop, batch)
			k := ds.NewKey(fmt.Sprintf("/lost/undone-%v-%v", stop, batch))
			o := c.Owners(k.String())
			if err := d.Put(ctx, k, v1); err != nil {
				t.Fatal(err)
			}
			w := c.Client(&dscluster.Options{Down: []int{o[3], o[4], o[5]}})
			if stop {
				w = c.Client(nil)
				for _, n := range o[3:] {
					c.Stop(n)
				}
			}
			for _, size := range []int{280 << 10, 260 << 10} {
				if err := overwrite(w, batch, k, bytes.Repeat([]byte("2"), size)); !errors.Is(err, dscluster.ErrQuorum) {
					t.Fatalf("%s: overwrite reaching 3 positions: %v, want a quorum error", name, err)
				}
			}
			for _, n := range o[3:] {
				c.Restart(n)
			}
			if got, err := d.Get(ctx, k); err != nil || !bytes.Equal(got, v1) {
				t.Fatalf("%s: get after two failed overwrites: %d bytes, %v; want v1", name, len(got), err)
			}
			// Positions 0-3 alone: 3 newest shards of the last attempt, and
			// one position that never held it, may be an acknowledged
			// write's five less two lost shards.
			r := c.Client(&dscluster.Options{Down: []int{o[4], o[5]}})
			if got, err := r.Get(ctx, k); !errors.Is(err, dscluster.ErrUnavailable) {
				t.Fatalf("%s: get from positions 0-3: %d bytes, %v; want unavailable", name, len(got), err)
			}
		}
	}

	for _, batch := range []bool{false, true} {
		k := ds.NewKey(fmt.Sprintf("/lost/readable-%v", batch))
		o := c.Owners(k.String())
		if err := d.Put(ctx, k, v1); err != nil {
			t.Fatal(err)
		}
		v2 := bytes.Repeat([]byte("2"), 280<<10)
		w := c.Client(&dscluster.Options{Down: []int{o[4], o[5]}})
		if err := overwrite(w, batch, k, v2); !errors.Is(err, dscluster.ErrQuorum) {
			t.Fatalf("batch %v: overwrite reaching 4 positions: %v, want a quorum error", batch, err)
		}
		if got, err := d.Get(ctx, k); err != nil || !bytes.Equal(got, v2) {
			t.Fatalf("batch %v: get after an overwrite that reached k positions and failed: %d bytes, %v; want its value", batch, len(got), err)
		}
	}
}

// TestDeleteOfValueWithLostShards: positions 0 and 1 lost their shards (bit
// rot, scrubbed, not yet repaired), so Get takes the key for absent; 4 valid
// shards remain on the others. Delete took the same two answers as proof
// that there was nothing to delete and wrote no tombstone: a reader that
// could not reach positions 0 and 1 still read the value, and repair would
// have rebuilt it for everyone. Delete now writes the tombstone unless
// every position answers that it holds no entry of the key or was not
// reached at all: nodes that are down do not make deleting a missing key an
// error, and positions that take the request but do not answer in time
// (they may hold the value) do not make an unwritten delete succeed.
func TestDeleteOfValueWithLostShards(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	d := c.Client(nil)
	// rot puts a value under key and has positions 0 and 1 lose their
	// shards to bit rot, scrubbed and not repaired.
	rot := func(key ds.Key) {
		if err := d.Put(ctx, key, bytes.Repeat([]byte("v"), 300<<10)); err != nil {
			t.Fatal(err)
		}
		for _, n := range c.Owners(key.String())[:2] {
			if err := c.CorruptShard(n, key.String()); err != nil {
				t.Fatal(err)
			}
			if st, err := c.Node(n).Scrub(ctx); err != nil || st.Corrupt != 1 {
				t.Fatalf("scrub node %d: %+v, %v; want 1 corrupt shard", n, st, err)
			}
		}
	}
	k := ds.NewKey("/lost/delete-after-rot")
	o := c.Owners(k.String())
	rot(k)
	if err := d.Delete(ctx, k); err != nil {
		t.Fatalf("delete: %v", err)
	}
	r := c.Client(&dscluster.Options{Down: o[:2]})
	if got, err := r.Get(ctx, k); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("get after the delete, positions 0 and 1 unreachable: %d bytes, %v; want ds.ErrNotFound", len(got), err)
	}
	// A key no position holds is deleted without a tombstone.
	tombstones := func() (n int) {
		for i := range c.Len() {
			st, err := c.Node(i).Stat(ctx)
			if err != nil {
				t.Fatal(err)
			}
			n += st.Tombstones
		}
		return n
	}
	before := tombstones()
	missing := ds.NewKey("/lost/never-written")
	// A position that does not answer within the hedge may hold the key:
	// front ends that wait long enough for a loaded machine's answers.
	patient := &dscluster.Options{HedgeAfter: 10 * time.Second}
	d = c.Client(patient)
	if err := d.Delete(ctx, missing); err != nil {
		t.Fatalf("delete of a missing key: %v", err)
	}
	if after := tombstones(); after != before {
		t.Fatalf("tombstones: %d before deleting a missing key, %d after; want no new one", before, after)
	}
	// Nodes that are down do not make it an error (a tombstone would not
	// make its quorum with two of them down).
	if err := c.Client(&dscluster.Options{HedgeAfter: patient.HedgeAfter, Down: c.Owners(missing.String())[4:]}).Delete(ctx, missing); err != nil {
		t.Fatalf("delete of a missing key with positions 4 and 5 down: %v", err)
	}
	// Nor do nodes that are stopped, whose dials fail.
	for _, n := range c.Owners(missing.String())[4:] {
		c.Stop(n)
	}
	if err := c.Client(patient).Delete(ctx, missing); err != nil {
		t.Fatalf("delete of a missing key with the nodes of positions 4 and 5 stopped: %v", err)
	}
	for _, n := range c.Owners(missing.String())[4:] {
		c.Restart(n)
	}

	// Positions 2 to 5 hold the value and take requests without answering
	// (a loaded or hung node): the delete cannot tell the key is missing
	// and must not report success without its tombstone, which it used to.
	k2 := ds.NewKey("/lost/delete-after-rot-unanswered")
	rot(k2)
	for _, n := range c.Owners(k2.String())[2:] {
		hang(t, c, n)
	}
	hung := c.Client(&dscluster.Options{Timeout: 2 * time.Second, HedgeAfter: 100 * time.Millisecond})
	if err := hung.Delete(ctx, k2); err == nil {
		t.Fatal("delete with the positions that hold the value unanswering: acknowledged, with no tombstone written")
	}
}

// TestMalformedIndexEntryIsCorrupt: a node answers header-only gets with an
// entry whose policy has no shards (0+0: a damaged index, a buggy or hostile
// peer). Has, GetSize and Delete used to take it for a version held by no
// position and panic; the answer now counts as a corrupt one, and the
// other positions answer.
func TestMalformedIndexEntryIsCorrupt(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	k := ds.NewKey("/lost/bad-entry")
	v := bytes.Repeat([]byte("v"), 300<<10)
	o := c.Owners(k.String())
	if err := c.Client(nil).Put(ctx, k, v); err != nil {
		t.Fatal(err)
	}
	c.Node(o[0]).Host().SetStreamHandler(wire.ShardProtocol, func(s network.Stream) {
		defer s.Close()
		for {
			f, err := wire.ReadFrame(s, nil)
			if err != nil {
				return
			}
			r, err := wire.DecodeRequest(f)
			if err != nil || r.Op != wire.OpGet || !r.HeaderOnly {
				_ = s.Reset()
				return
			}
			h := wire.HeaderEntry{ListEntry: wire.ListEntry{Key: r.Key, HLC: 1 << 62, Writer: 1, ValueLen: 5}, Kind: uint8(coding.KindErasure)}
			if _, err := wire.WriteResponse(s, nil, &wire.Response{Op: r.Op, Status: wire.StatusOK, Epoch: r.Epoch, Payload: wire.AppendHeaderPayload(nil, h)}); err != nil {
				return
			}
		}
	})
	d := c.Client(nil)
	if has, err := d.Has(ctx, k); err != nil || !has {
		t.Fatalf("has with position 0 answering a 0+0 entry: %v, %v; want true", has, err)
	}
	if n, err := d.GetSize(ctx, k); err != nil || n != len(v) {
		t.Fatalf("getsize with position 0 answering a 0+0 entry: %d, %v; want %d", n, err, len(v))
	}
	if err := d.Delete(ctx, k); err != nil {
		t.Fatalf("delete with position 0 answering a 0+0 entry: %v", err)
	}
}

// TestOverwriteOfOtherWidthNotServedStale: a small value v1 is replicated
// on positions 0-2; v2, erasure coded, is acknowledged on positions 1-5
// while position 0 is down, so position 0 keeps v1's copy, which alone is
// enough to read v1. With two of v2's holders down a read finds v2 too
// scarce, and used to fall back on that copy: the overwritten value. It
// may fall back only past versions that provably never reached their
// quorum, so it answers unavailable. A read with every node up serves v2
// and writes it back to position 0, which missed it: then the read with
// two holders down serves v2.
func TestOverwriteOfOtherWidthNotServedStale(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	k := ds.NewKey("/lost/wider-overwrite")
	o := c.Owners(k.String())
	v1, v2 := bytes.Repeat([]byte("1"), 1000), bytes.Repeat([]byte("2"), 300<<10)
	if err := c.Client(nil).Put(ctx, k, v1); err != nil {
		t.Fatal(err)
	}
	if err := c.Client(&dscluster.Options{Down: o[:1]}).Put(ctx, k, v2); err != nil {
		t.Fatalf("put v2 with position 0 down: %v", err)
	}
	got, err := c.Client(&dscluster.Options{Down: o[1:3]}).Get(ctx, k)
	if !errors.Is(err, dscluster.ErrUnavailable) {
		t.Fatalf("get with positions 1 and 2 down: %d bytes (v1: %v), %v; want ErrUnavailable", len(got), bytes.Equal(got, v1), err)
	}
	if got, err := c.Client(nil).Get(ctx, k); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("get with every node up: %d bytes, %v; want v2", len(got), err)
	}
	if got, err := c.Client(&dscluster.Options{Down: o[1:3]}).Get(ctx, k); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("get with positions 1 and 2 down, after a read wrote v2 back to position 0: %d bytes (v1: %v), %v; want v2", len(got), bytes.Equal(got, v1), err)
	}
}

// TestFailedLargeOverwriteOfSmallValue: a small value v1 is replicated on
// positions 0-2; a large overwrite failed after reaching positions 1 and 2
// only (not undone: its writer died). Positions 3-5 hold nothing, as they
// never held the small value; they used to count as possible holders of
// the failed write, which then looked acknowledged, and the key was
// unavailable, every node up, until repair dropped the failed write. No
// more of an acknowledged write's positions than its parity shards can
// have lost it, so the read serves v1.
func TestFailedLargeOverwriteOfSmallValue(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	d := c.Client(nil)
	k := ds.NewKey("/lost/large-over-small")
	v1 := bytes.Repeat([]byte("1"), 1000)
	failedOverwrite(t, c, d, k, v1, 300<<10, 0, 3, 4, 5)
	if got, err := d.Get(ctx, k); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("get with every node up: %d bytes, %v; want v1", len(got), err)
	}
	if has, err := d.Has(ctx, k); err != nil || !has {
		t.Fatalf("has: %v, %v", has, err)
	}
}

// TestKeysOnlyQueryFollowsGet: a keys-only Query (kubo's AllKeysChan) lists
// what Get would serve, with the size it would serve, not the newest entry
// any node holds.
//   - A deleted key that a later put reached on position 0 only: Get says
//     not found, and the query used to list it.
//   - A failed overwrite on positions 3-5 of a live key: listed with the
//     older value's size, which Get serves.
func TestKeysOnlyQueryFollowsGet(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	d := c.Client(nil)
	deleted := ds.NewKey("/keysonly/deleted")
	o := c.Owners(deleted.String())
	if err := d.Put(ctx, deleted, bytes.Repeat([]byte("1"), 300<<10)); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	if err := c.Client(&dscluster.Options{Down: o[1:]}).Put(ctx, deleted, bytes.Repeat([]byte("2"), 200<<10)); !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("put reaching position 0 only: %v; want a quorum error", err)
	}
	if _, err := d.Get(ctx, deleted); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("get of the deleted key: %v; want ds.ErrNotFound", err)
	}
	live := ds.NewKey("/keysonly/live")
	failedOverwrite(t, c, d, live, bytes.Repeat([]byte("1"), 300<<10), 200<<10, 0, 1, 2)
	plain := ds.NewKey("/keysonly/plain")
	if err := d.Put(ctx, plain, bytes.Repeat([]byte("p"), 1000)); err != nil {
		t.Fatal(err)
	}
	res, err := d.Query(ctx, dsq.Query{Prefix: "/keysonly", KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	es, err := res.Rest()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range es {
		got[e.Key] = e.Size
	}
	want := map[string]int{live.String(): 300 << 10, plain.String(): 1000}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("keys-only query: %v; want %v", got, want)
	}
}

// TestQueryRefusesAnEmptyPageWithMore: a node that answers every list
// request with no entries and "more to come" made the query ask it again
// forever. Its answer is now an error, and the node counts as one the
// query does without.
func TestQueryRefusesAnEmptyPageWithMore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	d := c.Client(nil)
	k := ds.NewKey("/emptypage/k")
	if err := d.Put(ctx, k, []byte("v")); err != nil {
		t.Fatal(err)
	}
	c.Node(c.Owners(k.String())[3]).Host().SetStreamHandler(wire.ShardProtocol, func(s network.Stream) {
		defer s.Close()
		for {
			f, err := wire.ReadFrame(s, nil)
			if err != nil {
				return
			}
			r, err := wire.DecodeRequest(f)
			if err != nil || r.Op != wire.OpList {
				_ = s.Reset()
				return
			}
			if _, err := wire.WriteResponse(s, nil, &wire.Response{Op: r.Op, Status: wire.StatusOK, Epoch: r.Epoch, Payload: wire.AppendListPayload(nil, nil, true)}); err != nil {
				return
			}
		}
	})
	res, err := c.Client(nil).Query(ctx, dsq.Query{Prefix: "/emptypage", KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	es, err := res.Rest()
	if err != nil || len(es) != 1 || es[0].Key != k.String() {
		t.Fatalf("query: %v, %v; want %s alone", es, err, k)
	}
	if ctx.Err() != nil {
		t.Fatal("the query ran into the test's deadline")
	}
}

// TestNarrowerOverwriteDropsOlderShards: a small value v2 (3 replicas) is
// written over a large one (4+2) with position 2 down, so it is
// acknowledged on positions 0 and 1; positions 2-5 still hold v1's shards,
// 4 of them, enough to read v1. A read that cannot reach positions 0 and 1
// used to serve v1, the overwritten value. The writer now has positions
// 3-5 drop their older shards once v2 is acknowledged, by Put and by
// batch, and that read answers unavailable.
func TestNarrowerOverwriteDropsOlderShards(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	d := c.Client(nil)
	for _, how := range []string{"put", "batch"} {
		k := ds.NewKey("/lost/narrower-" + how)
		o := c.Owners(k.String())
		v1, v2 := bytes.Repeat([]byte("1"), 300<<10), bytes.Repeat([]byte("2"), 1000)
		if err := d.Put(ctx, k, v1); err != nil {
			t.Fatal(err)
		}
		w := c.Client(&dscluster.Options{Down: o[2:3]})
		var err error
		if how == "put" {
			err = w.Put(ctx, k, v2)
		} else {
			var b ds.Batch
			if b, err = w.Batch(ctx); err == nil {
				if err = b.Put(ctx, k, v2); err == nil {
					err = b.Commit(ctx)
				}
			}
		}
		if err != nil {
			t.Fatalf("%s v2 with position 2 down: %v", how, err)
		}
		r := c.Client(&dscluster.Options{Down: o[:2]})
		clustertest.WaitFor(t, 10*time.Second, how+": get with positions 0 and 1 down, want ErrUnavailable", func() (bool, string) {
			got, err := r.Get(ctx, k)
			return errors.Is(err, dscluster.ErrUnavailable), fmt.Sprintf("%d bytes (v1: %v), %v", len(got), bytes.Equal(got, v1), err)
		})
		if got, err := d.Get(ctx, k); err != nil || !bytes.Equal(got, v2) {
			t.Fatalf("%s: get with every node up: %d bytes, %v; want v2", how, len(got), err)
		}
	}
}

// TestAcknowledgedSmallValueUnderFailedOverwrite is the stale read of
// chaos seed 360. A delete leaves tombstones on every position; a small
// value is acknowledged on copies 0 and 1 (position 2 down); a large
// overwrite then reaches positions 0, 1, 3 and 4 and fails its quorum.
// With position 0 down, a read sees the failed write on 3 positions and
// the tombstone whole on positions 2 and 5. Reads served that tombstone
// ("not found") because the failed write provably never reached its
// quorum: but position 1 keeps the acknowledged small value under it,
// which only the versions it lists show.
func TestAcknowledgedSmallValueUnderFailedOverwrite(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)
	k := ds.NewKey("/lost/small-under-failed")
	o := c.Owners(k.String())
	if err := d.Put(ctx, k, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	small := bytes.Repeat([]byte("s"), 1677)
	if err := c.Client(&dscluster.Options{Down: []int{o[2]}}).Put(ctx, k, small); err != nil {
		t.Fatalf("small put with position 2 down: %v", err)
	}
	if err := c.Client(&dscluster.Options{Down: []int{o[2], o[5]}}).Put(ctx, k, bytes.Repeat([]byte("L"), 300<<10)); !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("large overwrite with positions 2 and 5 down: %v, want a quorum error", err)
	}
	r := c.Client(&dscluster.Options{Down: []int{o[0]}})
	if got, err := r.Get(ctx, k); err != nil || !bytes.Equal(got, small) {
		t.Fatalf("get with position 0 down: %d bytes, %v; want the acknowledged %d bytes", len(got), err, len(small))
	}
	if n, err := r.GetSize(ctx, k); err != nil || n != len(small) {
		t.Fatalf("getsize with position 0 down: %d, %v; want %d", n, err, len(small))
	}
	if has, err := r.Has(ctx, k); !has || err != nil {
		t.Fatalf("has with position 0 down: %v, %v; want true", has, err)
	}
}

// A read that serves a delete makes it durable first (a write-back): a
// delete that failed after reaching one position, once a read has served
// it, is served by every later read, whichever positions it asks. Without
// the write-back a read that asks other positions serves the value again
// (multi-writer runs of the fault run found it: docs/fault-run.md).
func TestReadCompletesTheDeleteItServes(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)
	k := ds.NewKey("/lost/delete-on-one")
	o := c.Owners(k.String())
	failedDelete(t, c, d, k, bytes.Repeat([]byte("v"), 300<<10)) // erasure coded
	if _, err := d.Get(ctx, k); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("get that asks position 0 first: %v, want the delete (ds.ErrNotFound)", err)
	}
	r := c.Client(&dscluster.Options{Down: []int{o[0]}})
	if got, err := r.Get(ctx, k); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("get with position 0 down, after a get served the delete: %d bytes, %v; want ds.ErrNotFound", len(got), err)
	}
	if has, err := r.Has(ctx, k); has || err != nil {
		t.Fatalf("has with position 0 down: %v, %v; want false", has, err)
	}
}

// Has serves a delete as Get does: it makes it durable first.
func TestHasCompletesTheDeleteItServes(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)
	k := ds.NewKey("/lost/delete-on-one-has")
	o := c.Owners(k.String())
	failedDelete(t, c, d, k, bytes.Repeat([]byte("h"), 300<<10))
	if has, err := d.Has(ctx, k); has || err != nil {
		t.Fatalf("has that asks position 0 first: %v, %v; want false", has, err)
	}
	r := c.Client(&dscluster.Options{Down: []int{o[0]}})
	if has, err := r.Has(ctx, k); has || err != nil {
		t.Fatalf("has with position 0 down, after a has served the delete: %v, %v; want false", has, err)
	}
}

// Delete over a failed delete writes its own tombstone alone: its probe
// does not first write back the failed one's, as a read's would.
func TestDeleteOverAFailedDeleteWritesOnce(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	reg := prometheus.NewRegistry()
	d := c.Client(&dscluster.Options{Metrics: reg})
	k := ds.NewKey("/lost/delete-twice")
	failedDelete(t, c, d, k, bytes.Repeat([]byte("d"), 300<<10))
	if err := d.Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	if n := gathered(t, reg, "dscluster_client_read_write_backs_total", nil); n != 0 {
		t.Fatalf("delete over a failed delete wrote back %v tombstones before its own, want none", n)
	}
	r := c.Client(&dscluster.Options{Down: []int{c.Owners(k.String())[0]}})
	if has, err := r.Has(ctx, k); has || err != nil {
		t.Fatalf("has with position 0 down, after the delete: %v, %v; want false", has, err)
	}
}

// A read that serves a value of a write that failed after storing k
// shards, and whose answers show it short of its quorum, writes it back
// first: a later read that sees one of its shards fewer would otherwise
// prove it failed and serve the older value.
func TestReadCompletesTheFailedWriteItServes(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)
	k := ds.NewKey("/lost/failed-on-k")
	o := c.Owners(k.String())
	v2 := bytes.Repeat([]byte("2"), 300<<10)
	failedOverwrite(t, c, d, k, bytes.Repeat([]byte("1"), 300<<10), len(v2), 3, 5)
	if got, err := d.Get(ctx, k); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("get: %.1q…, %v; want the failed overwrite, readable from 4 shards", got[:min(len(got), 1)], err)
	}
	r := c.Client(&dscluster.Options{Down: []int{o[0]}})
	if got, err := r.Get(ctx, k); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("get with position 0 down, after a get served the overwrite: %.1q…, %v; want it again", got[:min(len(got), 1)], err)
	}
}

// TestAcknowledgedValueUnderFailedDeleteAndPut: a small value A is
// acknowledged on copies 0 and 1 (position 2, down, keeps the value Z
// before it); a delete then fails after reaching positions 0 and 1 only,
// and so does a large put. Positions 0 and 1 used to keep nothing under
// the delete's tombstone, and the put dropped the tombstone: they held
// the failed put alone, and a read served Z from position 2, though A was
// acknowledged after it. A delete now keeps what it replaces, as a put
// does, and the put keeps the tombstone: a read may serve the failed
// delete (a failed write may have taken effect) or A, never Z.
func TestAcknowledgedValueUnderFailedDeleteAndPut(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	d := c.Client(nil)
	k := ds.NewKey("/lost/under-failed-delete-and-put")
	o := c.Owners(k.String())
	z, a := bytes.Repeat([]byte("z"), 1000), bytes.Repeat([]byte("a"), 1200)
	if err := d.Put(ctx, k, z); err != nil {
		t.Fatal(err)
	}
	if err := c.Client(&dscluster.Options{Down: []int{o[2]}}).Put(ctx, k, a); err != nil {
		t.Fatalf("small put with position 2 down: %v", err)
	}
	rest := c.Client(&dscluster.Options{Down: []int{o[2], o[3], o[4], o[5]}})
	if err := rest.Delete(ctx, k); !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("delete reaching positions 0 and 1 only: %v, want a quorum error", err)
	}
	if err := rest.Put(ctx, k, bytes.Repeat([]byte("L"), 300<<10)); !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("large put reaching positions 0 and 1 only: %v, want a quorum error", err)
	}
	got, err := d.Get(ctx, k)
	if !errors.Is(err, ds.ErrNotFound) && (err != nil || !bytes.Equal(got, a)) {
		t.Fatalf("get with every node up: %d bytes (the older value Z: %v), %v; want the acknowledged A or the failed delete", len(got), bytes.Equal(got, z), err)
	}
	// Whichever it served, later reads serve it too.
	again, err2 := c.Client(&dscluster.Options{Down: []int{o[0]}}).Get(ctx, k)
	if !errors.Is(err2, ds.ErrNotFound) && (err2 != nil || !bytes.Equal(again, a)) || errors.Is(err, ds.ErrNotFound) != errors.Is(err2, ds.ErrNotFound) {
		t.Fatalf("get with position 0 down, after a read served %d bytes, %v: %d bytes, %v", len(got), err, len(again), err2)
	}
}

// TestSmallPutRightAfterDelete: as TestAcknowledgedSmallValueUnderFailedOverwrite,
// but the small put follows the delete before the delete's writer has the
// value under the tombstone dropped. The small put keeps it, so its writer
// tells the positions past its width to drop older shards (OpSupersede).
// When they dropped the tombstone too, position 5 held nothing, could no
// longer show that the later large put never reached it, and the read
// with position 0 down was unavailable (found by review). Supersede now
// leaves tombstones.
func TestSmallPutRightAfterDelete(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)
	k := ds.NewKey("/lost/small-right-after-delete")
	o := c.Owners(k.String())
	small, large := c.Client(&dscluster.Options{Down: []int{o[2]}}), c.Client(&dscluster.Options{Down: []int{o[2], o[5]}})
	if err := d.Put(ctx, k, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	s := bytes.Repeat([]byte("s"), 1677)
	if err := small.Put(ctx, k, s); err != nil {
		t.Fatalf("small put with position 2 down: %v", err)
	}
	if err := large.Put(ctx, k, bytes.Repeat([]byte("L"), 300<<10)); !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("large overwrite with positions 2 and 5 down: %v, want a quorum error", err)
	}
	if got, err := c.Client(&dscluster.Options{Down: []int{o[0]}}).Get(ctx, k); err != nil || !bytes.Equal(got, s) {
		t.Fatalf("get with position 0 down: %d bytes, %v; want the acknowledged %d bytes", len(got), err, len(s))
	}
}

// TestFailedDeleteServedOnceStaysServed: a delete fails after reaching
// position 0 only, and a large put fails after reaching positions 0 and
// 1. Position 0 keeps the tombstone under the put, so a read with every
// node up passes over the failed put and serves the delete, from older
// versions. It did not write the delete back, and a read with position 0
// down served the value again (found by review). It writes it back now,
// as a read does a tombstone among the newest shards.
func TestFailedDeleteServedOnceStaysServed(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	d := c.Client(nil)
	k := ds.NewKey("/lost/failed-delete-served")
	o := c.Owners(k.String())
	v0 := bytes.Repeat([]byte("0"), 300<<10)
	if err := d.Put(ctx, k, v0); err != nil {
		t.Fatal(err)
	}
	if err := c.Client(&dscluster.Options{Down: o[1:]}).Delete(ctx, k); !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("delete reaching position 0 only: %v, want a quorum error", err)
	}
	if err := c.Client(&dscluster.Options{Down: o[2:]}).Put(ctx, k, bytes.Repeat([]byte("L"), 300<<10)); !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("large put reaching positions 0 and 1 only: %v, want a quorum error", err)
	}
	got, err := d.Get(ctx, k)
	servedDelete := errors.Is(err, ds.ErrNotFound)
	if !servedDelete && (err != nil || !bytes.Equal(got, v0)) {
		t.Fatalf("get with every node up: %d bytes, %v; want v0 or the failed delete", len(got), err)
	}
	for _, down := range [][]int{{o[0]}, {o[0], o[1]}} {
		r := c.Client(&dscluster.Options{Down: down})
		got, err := r.Get(ctx, k)
		if servedDelete && !errors.Is(err, ds.ErrNotFound) || !servedDelete && (err != nil || !bytes.Equal(got, v0)) {
			t.Fatalf("get with nodes %v down, after a read served the delete %v: %d bytes, %v", down, servedDelete, len(got), err)
		}
		if has, err := r.Has(ctx, k); err != nil || has == servedDelete {
			t.Fatalf("has with nodes %v down, after a read served the delete %v: %v, %v", down, servedDelete, has, err)
		}
	}
}
