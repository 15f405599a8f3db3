package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrUnsupported is returned by a Target for a fault it cannot inject.
var ErrUnsupported = errors.New("chaos: fault not supported by this target")

// Target is the cluster a nemesis acts on. Nodes are numbered from 0.
type Target interface {
	Len() int
	// Kill crashes node i (SIGKILL); Start starts it again on its data.
	Kill(i int) error
	Start(i int) error
	// Pause freezes node i (SIGSTOP): its connections stay open and hang;
	// Resume thaws it.
	Pause(i int) error
	Resume(i int) error
	// Isolate cuts node i off from every other node and client, both ways;
	// Rejoin ends that.
	Isolate(i int) error
	Rejoin(i int) error
	// Leader is the node that is raft leader, or -1.
	Leader() int
}

// Grower is a Target whose membership the nemesis may change under load.
type Grower interface {
	// Join starts a new node that joins the cluster, and returns its
	// number.
	Join() (int, error)
	// Drain starts moving node i's data to the others; the cluster
	// removes it once they hold it. The node is not used again.
	Drain(i int) error
}

// Fault is one kind of nemesis action.
type Fault string

const (
	FaultKill    Fault = "kill"    // SIGKILL, restart after Down
	FaultPause   Fault = "pause"   // SIGSTOP, SIGCONT after Paused
	FaultOut     Fault = "out"     // SIGKILL, restart after Out (past --out-after)
	FaultLeader  Fault = "leader"  // SIGKILL the raft leader, restart after Down
	FaultIsolate Fault = "isolate" // cut a node off, rejoin after Paused
	FaultJoin    Fault = "join"    // a new node joins (a Grower)
	FaultDrain   Fault = "drain"   // a node is drained, then removed (a Grower)
	FaultReboot  Fault = "reboot"  // SIGKILL as an OS crash would leave the node (a Rebooter), restart after Down
)

// Rebooter is a Target that can crash a node as an operating system crash
// would leave it: at its restart the node does not trust its index and
// rebuilds it from its shard log.
type Rebooter interface {
	Reboot(i int) error
}

// AllFaults are the faults a Target may support.
var AllFaults = []Fault{FaultKill, FaultPause, FaultOut, FaultLeader, FaultIsolate, FaultJoin, FaultDrain, FaultReboot}

// ParseFaults parses a comma-separated fault list ("kill,pause").
func ParseFaults(s string) ([]Fault, error) {
	var out []Fault
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(AllFaults, Fault(f)) {
			return nil, fmt.Errorf("chaos: unknown fault %q (known: %v)", f, AllFaults)
		}
		out = append(out, Fault(f))
	}
	return out, nil
}

// Span is a duration drawn at random between Min and Max.
type Span struct{ Min, Max time.Duration }

func (s Span) draw(r *rand.Rand) time.Duration {
	if s.Max <= s.Min {
		return s.Min
	}
	return s.Min + time.Duration(r.Int64N(int64(s.Max-s.Min)))
}

// Nemesis injects faults at random times. The zero value of each field
// takes its default.
type Nemesis struct {
	Seed   uint64
	Faults []Fault // default: kill, pause, out, leader
	// MaxImpaired bounds the nodes impaired at once (default 2: a 4+2
	// policy's parity).
	MaxImpaired int
	Every       Span // between actions (default 2-5 s)
	Down        Span // a killed node's downtime (default 1-10 s)
	Paused      Span // a paused or isolated node's time (default 0.5-3 s)
	Out         Span // an out node's downtime (default 8-12 s: past a 5 s --out-after)
	// MaxNodes bounds joins (default: 2 more than the nodes at the start);
	// drains leave at least the nodes there were at the start.
	MaxNodes int
	// Log, when set, is called with each action as it happens.
	Log func(e Event)
}

// Event is one nemesis action, for the timeline.
type Event struct {
	At       time.Duration
	Node     int
	What     string
	Impaired int // nodes impaired after it
	Err      error
}

func (e Event) String() string {
	s := fmt.Sprintf("%8s  node %d  %-12s impaired %d", e.At.Round(time.Millisecond), e.Node, e.What, e.Impaired)
	if e.Err != nil {
		s += "  error: " + e.Err.Error()
	}
	return s
}

func (n Nemesis) withDefaults() Nemesis {
	if len(n.Faults) == 0 {
		n.Faults = []Fault{FaultKill, FaultPause, FaultOut, FaultLeader}
	}
	if n.MaxImpaired <= 0 {
		n.MaxImpaired = 2
	}
	def := func(s *Span, lo, hi time.Duration) {
		if s.Min <= 0 && s.Max <= 0 {
			*s = Span{lo, hi}
		}
	}
	def(&n.Every, 2*time.Second, 5*time.Second)
	def(&n.Down, time.Second, 10*time.Second)
	def(&n.Paused, 500*time.Millisecond, 3*time.Second)
	def(&n.Out, 8*time.Second, 12*time.Second)
	return n
}

// nemesisRun is the state of one Run.
type nemesisRun struct {
	n     Nemesis
	t     Target
	h     *History
	start time.Time

	mu       sync.Mutex
	impaired map[int]func() error // node -> how to end its fault
	timers   map[int]*time.Timer
	drained  map[int]bool // nodes drained: never acted on again
	minNodes int
	events   []Event
}

// Run injects faults into t until ctx is done, then ends every fault (all
// nodes started, resumed, rejoined) and returns the timeline. h, when set,
// learns the count of impaired nodes as it changes.
func (n Nemesis) Run(ctx context.Context, t Target, h *History) []Event {
	n = n.withDefaults()
	r := &nemesisRun{n: n, t: t, h: h, start: time.Now(), impaired: map[int]func() error{}, timers: map[int]*time.Timer{},
		drained: map[int]bool{}, minNodes: t.Len()}
	if r.n.MaxNodes == 0 {
		r.n.MaxNodes = t.Len() + 2
	}
	if h != nil {
		r.start = h.start
	}
	rnd := rand.New(rand.NewPCG(n.Seed, 0x6e656d65))
	for {
		select {
		case <-ctx.Done():
			r.healAll()
			return r.timeline()
		case <-time.After(n.Every.draw(rnd)):
		}
		r.act(rnd)
	}
}

func (r *nemesisRun) timeline() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// record adds an event; r.mu is held.
func (r *nemesisRun) record(node int, what string, err error) {
	e := Event{At: time.Since(r.start), Node: node, What: what, Impaired: len(r.impaired), Err: err}
	r.events = append(r.events, e)
	if r.h != nil {
		r.h.Impaired(len(r.impaired))
	}
	if r.n.Log != nil {
		r.n.Log(e)
	}
}

// act injects one fault, if fewer than MaxImpaired nodes are impaired.
func (r *nemesisRun) act(rnd *rand.Rand) {
	f := r.n.Faults[rnd.IntN(len(r.n.Faults))]
	pick := rnd.IntN(1 << 30)
	// Asking for the leader, joining and draining take seconds: not under
	// r.mu, which the timers that end faults need.
	leader := -1
	if f == FaultLeader {
		leader = r.t.Leader()
	}
	r.mu.Lock()
	if len(r.impaired) >= r.n.MaxImpaired {
		r.mu.Unlock()
		return
	}
	var healthy []int
	for i := 0; i < r.t.Len(); i++ {
		if _, ok := r.impaired[i]; !ok && !r.drained[i] {
			healthy = append(healthy, i)
		}
	}
	if len(healthy) == 0 {
		r.mu.Unlock()
		return
	}
	node := healthy[pick%len(healthy)]
	if f == FaultJoin || f == FaultDrain {
		r.mu.Unlock()
		r.grow(f, node)
		return
	}
	defer r.mu.Unlock()
	var (
		err   error
		after time.Duration
		end   func() error
		how   string
	)
	switch f {
	case FaultLeader:
		if leader < 0 || !slices.Contains(healthy, leader) {
			return
		}
		node = leader
		err, after, end, how = r.t.Kill(node), r.n.Down.draw(rnd), func() error { return r.t.Start(node) }, "start"
	case FaultKill:
		err, after, end, how = r.t.Kill(node), r.n.Down.draw(rnd), func() error { return r.t.Start(node) }, "start"
	case FaultReboot:
		rb, ok := r.t.(Rebooter)
		if !ok {
			return
		}
		err, after, end, how = rb.Reboot(node), r.n.Down.draw(rnd), func() error { return r.t.Start(node) }, "start"
	case FaultOut:
		err, after, end, how = r.t.Kill(node), r.n.Out.draw(rnd), func() error { return r.t.Start(node) }, "start"
	case FaultPause:
		err, after, end, how = r.t.Pause(node), r.n.Paused.draw(rnd), func() error { return r.t.Resume(node) }, "resume"
	case FaultIsolate:
		err, after, end, how = r.t.Isolate(node), r.n.Paused.draw(rnd), func() error { return r.t.Rejoin(node) }, "rejoin"
	}
	if errors.Is(err, ErrUnsupported) {
		return
	}
	if err != nil {
		r.record(node, string(f), err)
		return
	}
	r.impaired[node] = end
	r.record(node, fmt.Sprintf("%s %s", f, after.Round(100*time.Millisecond)), nil)
	r.timers[node] = time.AfterFunc(after, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if end, ok := r.impaired[node]; ok {
			delete(r.impaired, node)
			delete(r.timers, node)
			r.record(node, how, end())
		}
	})
}

// grow joins a node, or drains node, when the target is a Grower and the
// node count allows it. It takes r.mu only to read and record.
func (r *nemesisRun) grow(f Fault, node int) {
	g, ok := r.t.(Grower)
	if !ok {
		return
	}
	r.mu.Lock()
	members := r.t.Len() - len(r.drained)
	r.mu.Unlock()
	switch {
	case f == FaultJoin && members < r.n.MaxNodes:
		i, err := g.Join()
		r.mu.Lock()
		r.record(i, "join", err)
		r.mu.Unlock()
	case f == FaultDrain && members > r.minNodes:
		err := g.Drain(node)
		r.mu.Lock()
		if err == nil {
			r.drained[node] = true
		}
		r.record(node, "drain", err)
		r.mu.Unlock()
	}
}

// Drained returns the nodes a timeline drained: no longer members.
func Drained(events []Event) map[int]bool {
	out := map[int]bool{}
	for _, e := range events {
		if e.What == "drain" && e.Err == nil {
			out[e.Node] = true
		}
	}
	return out
}

// healAll ends every fault now.
func (r *nemesisRun) healAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	nodes := make([]int, 0, len(r.impaired))
	for i := range r.impaired {
		nodes = append(nodes, i)
	}
	sort.Ints(nodes)
	for _, i := range nodes {
		r.timers[i].Stop()
		end := r.impaired[i]
		delete(r.impaired, i)
		delete(r.timers, i)
		r.record(i, "heal", end())
	}
}
