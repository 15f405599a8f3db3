package dscluster

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestGoAskNeverWaitsForAWorker: goAsk returns at once though every
// worker is busy (a read's waves hand out their asks while earlier ones
// hang on a node), runs each function once, and workers freed by the
// first batch run the second.
func TestGoAskNeverWaitsForAWorker(t *testing.T) {
	const n = 200
	var ran atomic.Int64
	var wg sync.WaitGroup
	release := make(chan struct{})
	started := make(chan struct{}, n)
	for range n {
		wg.Add(1)
		goAsk(func() {
			defer wg.Done()
			started <- struct{}{}
			<-release
			ran.Add(1)
		})
	}
	// All n run at once: none waits for another to finish.
	for range n {
		<-started
	}
	close(release)
	wg.Wait()
	for range n {
		wg.Add(1)
		goAsk(func() { defer wg.Done(); ran.Add(1) })
	}
	wg.Wait()
	if got := ran.Load(); got != 2*n {
		t.Fatalf("%d functions ran, want %d", got, 2*n)
	}
}
