package dscluster

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGoAskNeverWaitsForAWorker: goAsk returns at once though every
// worker is busy (a read's waves hand out their asks while earlier ones
// hang on a node), and runs each function once, in a second batch too,
// which finds the first batch's workers idle.
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

// TestIdleWorkerKeepsNothing: once a request has run, the worker waiting
// for the next keeps nothing it referred to (a write's shards) alive.
func TestIdleWorkerKeepsNothing(t *testing.T) {
	freed := make(chan struct{})
	ran := make(chan struct{})
	func() {
		big := new([1 << 20]byte)
		runtime.SetFinalizer(big, func(*[1 << 20]byte) { close(freed) })
		goAsk(func() { big[0] = 1; close(ran) })
	}()
	<-ran
	for range 100 {
		runtime.GC()
		select {
		case <-freed:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("an idle worker kept the last request's data alive")
}
