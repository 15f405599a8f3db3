package dscluster

import "time"

// goAsk runs f, one request to a node, on a goroutine that stays for the
// next request, as gRPC's server workers do: a request's call chain
// (transport, libp2p, yamux, TLS) outgrows a new goroutine's stack, and
// copying it cost a front end up to 12% of its CPU (docs/benchmarks.md).
// A worker leaves after workerIdle without a request, and after workerJobs
// requests, so that a stack a rare deep call grew is not kept for ever.
func goAsk(f func()) {
	select {
	case idleWorkers <- f: // a worker waits for one
	default:
		go work(f)
	}
}

const (
	workerIdle = 5 * time.Second
	workerJobs = 1 << 14
)

// idleWorkers hands a request to a worker waiting for one.
var idleWorkers = make(chan func())

func work(f func()) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for n := 1; ; n++ {
		f()
		if n == workerJobs {
			return
		}
		t.Reset(workerIdle)
		select {
		case f = <-idleWorkers:
		case <-t.C:
			return
		}
	}
}
