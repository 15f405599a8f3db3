package dscluster

import "time"

// goAsk runs f, one request to a node, on a goroutine that stays for the
// next request. Reads and writes ask each node on a goroutine of their
// own. A new goroutine starts with a small stack, and the call chain of
// a request (transport, libp2p, yamux, TLS) outgrows it: the runtime then
// copies the stack to a larger one, which took 7% of a front end's CPU
// in a get benchmark of 256 KiB values and 12% with 4 KiB. A goroutine
// kept between requests keeps the stack it grew. gRPC's server workers
// do the same for the same reason.
//
// A worker leaves after workerIdle without a request, and after
// workerJobs requests, so that a stack a rare deep call grew is not kept
// for ever.
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
