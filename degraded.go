package dscluster

import (
	"sync"
	"time"
)

const degradedLogEvery = 10 * time.Second

// degradedLog reports writes below full redundancy at most once per
// degradedLogEvery, with how many it stands for: with a node down every
// write is one, and a line each would bury everything else in the log.
type degradedLog struct {
	mu     sync.Mutex
	last   time.Time
	unsaid int // writes below full redundancy not logged since last
}

// admit counts one write below full redundancy at now and reports whether
// to log it, with how many earlier ones went unlogged.
func (l *degradedLog) admit(now time.Time) (unsaid int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < degradedLogEvery {
		l.unsaid++
		return 0, false
	}
	unsaid, l.unsaid, l.last = l.unsaid, 0, now
	return unsaid, true
}

// report logs a write of key that stored stored of width shards (sending
// more still in flight, failed the nodes that did not), if admit lets it.
func (l *degradedLog) report(op, key string, stored, width, sending int, failed []NodeError) {
	unsaid, ok := l.admit(time.Now())
	if !ok {
		return
	}
	log.Warnw("write below full redundancy (repair restores the missing shards)", "op", op, "key", key,
		"stored", stored, "width", width, "still_sending", sending, "failed", joinNodeErrors(failed),
		"unlogged_since_last", unsaid)
}

// flush logs how many writes below full redundancy went unlogged since the
// last line, if any (at Close: the count would be lost otherwise).
func (l *degradedLog) flush() {
	l.mu.Lock()
	unsaid := l.unsaid
	l.unsaid = 0
	l.mu.Unlock()
	if unsaid > 0 {
		log.Warnw("writes below full redundancy since the last report (repair restores the missing shards)", "count", unsaid)
	}
}
