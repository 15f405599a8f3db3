package chaos

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Kind is what an operation did.
type Kind uint8

const (
	KindPut    Kind = iota + 1 // Put, or one put of a batch
	KindDelete                 // Delete, or one delete of a batch
	KindGet                    // Get
	KindList                   // a query: its entries are KindQuery ops
	KindQuery                  // one entry a query returned
)

var kindNames = [...]string{KindPut: "put", KindDelete: "delete", KindGet: "get", KindList: "list", KindQuery: "query entry"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// write reports whether k changes the key.
func (k Kind) write() bool { return k == KindPut || k == KindDelete }

// Outcome is how an operation ended.
type Outcome uint8

const (
	// OK: a write was acknowledged, or a read returned a value.
	OK Outcome = iota + 1
	// NotFound: a read returned ds.ErrNotFound.
	NotFound
	// Failed: the operation returned another error. A failed write may or
	// may not have taken effect.
	Failed
)

var outcomeNames = [...]string{OK: "ok", NotFound: "not found", Failed: "failed"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) && outcomeNames[o] != "" {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Value identifies the bytes of a put or of a read by their length and
// hash; the workload's values are unique per write (see valueFor).
type Value struct {
	Len  int
	Hash uint64
}

func (v Value) String() string { return fmt.Sprintf("%dB#%016x", v.Len, v.Hash) }

// Op is one operation of the history. A batch is recorded as one Op per
// key it wrote, all with the batch's times and outcome.
type Op struct {
	ID      int // order of invocation
	Worker  int
	Kind    Kind
	Key     string
	Write   int   // the write's number (puts and deletes), from 1
	Value   Value // the value put, or the value a read returned
	Batch   bool  // part of a batch
	Invoke  time.Duration
	Return  time.Duration
	Outcome Outcome
	Err     string
	// Impaired is the most nodes the nemesis held impaired (killed,
	// paused, cut off) at any time while the operation ran.
	Impaired int
}

func (o *Op) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d w%d [%s, %s] %s %s", o.ID, o.Worker, o.Invoke.Round(time.Millisecond), o.Return.Round(time.Millisecond), o.Kind, o.Key)
	if o.Batch {
		b.WriteString(" (batch)")
	}
	if o.Kind.write() {
		fmt.Fprintf(&b, " write %d", o.Write)
	}
	if o.Kind == KindPut || o.Outcome == OK && !o.Kind.write() {
		fmt.Fprintf(&b, " %s", o.Value)
	}
	fmt.Fprintf(&b, " -> %s", o.Outcome)
	if o.Err != "" {
		fmt.Fprintf(&b, ": %s", o.Err)
	}
	if o.Impaired > 0 {
		fmt.Fprintf(&b, " (%d impaired)", o.Impaired)
	}
	return b.String()
}

// History records operations from any number of goroutines.
type History struct {
	start time.Time

	mu      sync.Mutex
	ops     []*Op
	running map[*Op]struct{}
	cur     int // nodes impaired now
}

// NewHistory starts a history at the current time.
func NewHistory() *History {
	return &History{start: time.Now(), running: map[*Op]struct{}{}}
}

// since is the time since the history started.
func (h *History) since() time.Duration { return time.Since(h.start) }

// Invoke records the start of op and returns it, to be completed with
// Complete.
func (h *History) Invoke(op Op) *Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	o := &op
	o.ID = len(h.ops)
	o.Invoke = h.since()
	h.ops = append(h.ops, o)
	h.running[o] = struct{}{}
	o.Impaired = h.cur
	return o
}

// Record adds an operation that has completed.
func (h *History) Record(op Op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	o := &op
	o.ID = len(h.ops)
	h.ops = append(h.ops, o)
}

// Complete records the end of o.
func (h *History) Complete(o *Op, out Outcome, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	o.Return = h.since()
	o.Outcome = out
	if err != nil {
		o.Err = err.Error()
	}
	delete(h.running, o)
}

// Impaired is called by the nemesis whenever the count of impaired nodes
// changes: every running operation remembers the most it saw.
func (h *History) Impaired(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cur = n
	for o := range h.running {
		o.Impaired = max(o.Impaired, n)
	}
}

// Ops returns the operations recorded so far, by invocation.
func (h *History) Ops() []*Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*Op(nil), h.ops...)
}

// OfKey returns the operations on key, by invocation, for a report.
func OfKey(ops []*Op, key string) []*Op {
	var out []*Op
	for _, o := range ops {
		if o.Key == key {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Invoke < out[j].Invoke })
	return out
}
