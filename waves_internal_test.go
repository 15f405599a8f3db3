package dscluster

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// waveRun records what askInWaves asked and what settle saw.
type waveRun struct {
	mu      sync.Mutex
	asked   []int
	got     []int
	finals  int
	release chan struct{} // positions in hang block on it
	hang    map[int]bool
}

func (w *waveRun) ask(pos int) int {
	w.mu.Lock()
	w.asked = append(w.asked, pos)
	w.mu.Unlock()
	if w.hang[pos] {
		<-w.release
	}
	return pos * 10
}

func (w *waveRun) take(pos, a int) {
	if a != pos*10 {
		panic("answer of another position")
	}
	w.got = append(w.got, pos)
}

func (w *waveRun) askedSorted() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := slices.Clone(w.asked)
	slices.Sort(s)
	return s
}

func TestAskInWaves(t *testing.T) {
	// Settled by 3 answers: the third wave is never asked.
	w := &waveRun{release: make(chan struct{})}
	if n := askInWaves([]int{0, 1, 2, 3, 4, 5}, []int{2, 4, 6}, time.Hour, w.ask, w.take, func(final bool) bool { return len(w.got) >= 3 }, nil); n != 4 || len(w.got) != 3 {
		t.Fatalf("settled after 3 answers: asked %d positions, %d answers; want 4 and 3", n, len(w.got))
	}

	// Positions go in the given order: the first wave of 2 is positions 4
	// and 1, which settle the question.
	w = &waveRun{release: make(chan struct{})}
	if n := askInWaves([]int{4, 1, 0, 2, 3, 5}, []int{2, 4, 6}, time.Hour, w.ask, w.take, func(final bool) bool { return len(w.got) >= 2 }, nil); n != 2 || !slices.Equal(w.askedSorted(), []int{1, 4}) {
		t.Fatalf("order 4, 1, ...: asked %v (%d); want [1 4]", w.askedSorted(), n)
	}

	// Never settled early: every position is asked, and the last call is
	// final, once.
	w = &waveRun{release: make(chan struct{})}
	n := askInWaves([]int{0, 1, 2, 3, 4, 5}, []int{2, 4, 6}, time.Hour, w.ask, w.take, func(final bool) bool {
		if final {
			w.finals++
		}
		return final
	}, nil)
	if got := w.askedSorted(); n != 6 || !slices.Equal(got, []int{0, 1, 2, 3, 4, 5}) || w.finals != 1 {
		t.Fatalf("unsettled: asked %v (%d), %d final calls; want all 6, one final", got, n, w.finals)
	}

	// Position 1 hangs: after the hedge the next wave is asked, and the
	// question settles without it. Its answer, coming later, is dropped.
	w = &waveRun{release: make(chan struct{}), hang: map[int]bool{1: true}}
	// (A hedge long enough that the second one cannot fire before the
	// second wave, which answers at once, has answered.)
	var hedged []int
	n = askInWaves([]int{0, 1, 2, 3, 4, 5}, []int{2, 4, 6}, 200*time.Millisecond, w.ask, w.take, func(final bool) bool { return len(w.got) >= 3 },
		func(pos int) { hedged = append(hedged, pos) })
	if slices.Contains(w.got, 1) || len(w.got) != 3 || n != 4 {
		t.Fatalf("with position 1 hung: answers %v from %d asked, want 3 without 1, from 4 asked", w.got, n)
	}
	if !slices.Equal(hedged, []int{1}) {
		t.Fatalf("with position 1 hung: hedged past %v, want [1]", hedged)
	}
	close(w.release)

	// Every position hangs but the last wave's: the final call waits for
	// all of them, so it sees every answer.
	w = &waveRun{release: make(chan struct{}), hang: map[int]bool{0: true, 1: true}}
	go func() { time.Sleep(20 * time.Millisecond); close(w.release) }()
	askInWaves([]int{0, 1, 2}, []int{2, 3}, time.Millisecond, w.ask, w.take, func(final bool) bool { return final }, nil)
	if len(w.got) != 3 {
		t.Fatalf("final with stragglers: answers %v, want all 3", w.got)
	}
}
