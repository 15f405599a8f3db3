package volume

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
)

func TestCommitDelay(t *testing.T) {
	for _, c := range []struct {
		opt, lastSync, want time.Duration
	}{
		{0, 0, 0}, // no fsync yet, or NoSync: no wait
		{0, 3 * time.Millisecond, 6 * time.Millisecond}, // twice the disk's latency
		{0, time.Second, maxAutoDelay},                  // a stalled fsync: bounded
		{5 * time.Millisecond, time.Second, 5 * time.Millisecond},
		{-1, time.Second, -1}, // none
	} {
		if got := commitDelay(c.opt, c.lastSync); got != c.want {
			t.Errorf("commitDelay(%v, %v) = %v, want %v", c.opt, c.lastSync, got, c.want)
		}
	}
}

// After a group of two, the committer waits for four: with a delay that
// the test would notice, four concurrent writes commit as one group and
// none returns before it. A lone write, after a lone write, never waits.
func TestGroupGrowsUnderLoad(t *testing.T) {
	ctx := context.Background()
	s := openT(t, t.TempDir(), &Options{NoSync: true, CommitDelay: time.Minute})
	defer s.Close()
	start := time.Now()
	for i := range 3 {
		if err := s.Put(ctx, ds.NewKey(fmt.Sprintf("/lone/%d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("three lone writes took %s: a lone writer waited out the delay", took)
	}
	// A group of two: both appended before the committer is kicked.
	subs := make([]*submission, 2)
	for i := range subs {
		k := fmt.Sprintf("/pair/%d", i)
		subs[i] = &submission{ops: []op{newOp(opPut, k, []byte("v"))}, done: make(chan error, 1)}
		if err := s.appendAll(subs[i]); err != nil {
			t.Fatal(err)
		}
	}
	s.kick <- struct{}{}
	for _, sub := range subs {
		if err := <-sub.done; err != nil {
			t.Fatal(err)
		}
	}
	before := s.Stats()
	if before.Writes != 5 || before.Groups != 4 {
		t.Fatalf("%d writes in %d groups before the four, want 5 in 4", before.Writes, before.Groups)
	}
	start = time.Now()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Put(ctx, ds.NewKey(fmt.Sprintf("/four/%d", i)), []byte("v")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if w, g := st.Writes-before.Writes, st.Groups-before.Groups; w != 4 || g != 1 {
		t.Fatalf("four concurrent writes after a group of two went in %d writes, %d groups; want 4 in 1", w, g)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("four concurrent writes took %s: the committer waited out its delay for more", took)
	}
}

// A grouper asks for twice the last group while groups fill in time. When
// asking for more runs out of time (a fixed number of writers, each
// waiting on its own commit), it asks for as many as came, for a hold of
// rounds that doubles with each failed ask and resets with one that works.
func TestGrouper(t *testing.T) {
	type round struct {
		n        int
		timedOut bool
		target   int // asked for after it
	}
	var rounds []round
	rounds = append(rounds,
		round{1, false, 1}, // a lone writer never waits
		round{2, false, 4},
		round{4, false, 8},
		round{6, true, 6}, // 8 never came: hold for minHold rounds
	)
	for range minHold {
		rounds = append(rounds, round{6, false, 6})
	}
	rounds = append(rounds,
		round{6, false, 12}, // ask for more again
		round{6, true, 6},   // in vain: hold twice as long
	)
	for range 2 * minHold {
		rounds = append(rounds, round{6, false, 6})
	}
	rounds = append(rounds,
		round{6, false, 12},
		round{12, false, 24}, // it worked: the hold is back to its least
		round{10, true, 10},
	)
	for range minHold {
		rounds = append(rounds, round{10, false, 10})
	}
	rounds = append(rounds,
		round{10, false, 20}, // a hold of minHold: the ask that worked reset it
		round{1, false, 1},
	)
	var g grouper
	for i, r := range rounds {
		g.committed(r.n, r.timedOut)
		if g.target != r.target {
			t.Fatalf("round %d (%d committed, timed out %v): target %d, want %d", i, r.n, r.timedOut, g.target, r.target)
		}
	}
	for range 20 {
		g.committed(3, true)
	}
	if g.hold != maxHold {
		t.Fatalf("hold %d after 20 failed asks, want it bounded at %d", g.hold, maxHold)
	}
}
