package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/node"
)

// Config is one fault run.
type Config struct {
	Seed     uint64
	Duration time.Duration // of the workload under the nemesis (default 30 s)
	Workload Workload      // its Seed is set from Seed
	Nemesis  Nemesis       // its Seed is set from Seed
	// Parity is how many nodes are killed after the cluster settles, to
	// show that repair restored full redundancy (the policy's m).
	Parity int
	// SettleTimeout bounds the wait for the cluster to settle after the
	// nemesis (default 3 minutes).
	SettleTimeout time.Duration
	// Logf, when set, prints progress: the nemesis timeline and the phases.
	Logf func(format string, args ...any)
}

// Result is what a fault run found.
type Result struct {
	Seed     uint64
	Ops      int // operations, a batch's keys and a query's entries counted apart
	Acked    int // writes acknowledged
	Failed   int // operations that returned an error (not ErrNotFound)
	Reads    int // reads (gets) that ran with at most Parity nodes impaired
	ReadsBad int // of those, reads that failed
	// Violations are reads the model does not allow: the single-writer
	// model, or (multi-writer) one per key whose history is not
	// linearizable.
	Violations    []Violation
	CheckTimedOut bool
	Settle        time.Duration // from the end of the nemesis until settled
	Settled       bool
	NotSettled    string // why, when not Settled: the last check's finding
	// Unreadable are keys that could not be read after settling, and
	// UnreadableDegraded those that could not be read with Parity nodes
	// killed after that.
	Unreadable         []string
	UnreadableDegraded []string
	Timeline           []Event
	History            []*Op
}

// Passed reports whether the run found nothing wrong.
func (r *Result) Passed() bool {
	return len(r.Violations) == 0 && !r.CheckTimedOut && r.Settled &&
		len(r.Unreadable) == 0 && len(r.UnreadableDegraded) == 0
}

// Summary is the run's one-line summary.
func (r *Result) Summary() string {
	violations := fmt.Sprint(len(r.Violations))
	if r.CheckTimedOut {
		violations += "+unchecked" // the linearizability check ran out of time
	}
	return fmt.Sprintf("chaos seed=%d ops=%d acknowledged=%d failed=%d reads_unavailable=%d/%d violations=%s settle=%s settled=%v unreadable=%d unreadable_with_%s_killed=%d",
		r.Seed, r.Ops, r.Acked, r.Failed, r.ReadsBad, r.Reads, violations,
		r.Settle.Round(100*time.Millisecond), r.Settled, len(r.Unreadable), "m", len(r.UnreadableDegraded))
}

// Report describes what failed, with the history of each key involved, so
// that a failing run can be read and replayed with its seed.
func (r *Result) Report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d\n", r.Seed)
	keys := map[string]bool{}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "violation: %s\n", v)
		keys[v.Op.Key] = true
	}
	if !r.Settled {
		fmt.Fprintf(&b, "the cluster did not settle: %s\n", r.NotSettled)
	}
	if r.CheckTimedOut {
		fmt.Fprintf(&b, "the linearizability check ran out of time (%s): some keys are unchecked\n", checkBudget)
	}
	for _, k := range r.Unreadable {
		fmt.Fprintf(&b, "unreadable after settling: %s\n", k)
		keys[k] = true
	}
	for _, k := range r.UnreadableDegraded {
		fmt.Fprintf(&b, "unreadable with m nodes killed: %s\n", k)
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	const most = 5
	for i, k := range sorted {
		if i == most {
			fmt.Fprintf(&b, "(%d more keys)\n", len(sorted)-most)
			break
		}
		fmt.Fprintf(&b, "history of %s:\n", k)
		for _, o := range OfKey(r.History, k) {
			fmt.Fprintf(&b, "  %s\n", o)
		}
	}
	fmt.Fprintf(&b, "nemesis timeline:\n")
	for _, e := range r.Timeline {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	return b.String()
}

// Run runs the workload through d while the nemesis acts on t; then heals
// every fault, waits for the cluster to settle, reads every key; then
// kills Parity nodes and reads every key again. It leaves those nodes
// killed. The error is for a run that could not be carried out; what the
// run found is in the Result.
// cc is a client config of the cluster, for the status checks.
func Run(ctx context.Context, cfg Config, t Target, d *dscluster.Datastore, cc *config.Client) (*Result, error) {
	if cfg.Duration <= 0 {
		cfg.Duration = 30 * time.Second
	}
	if cfg.SettleTimeout <= 0 {
		cfg.SettleTimeout = 3 * time.Minute
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	cfg.Workload.Seed, cfg.Nemesis.Seed = cfg.Seed, cfg.Seed
	if cfg.Nemesis.MaxImpaired == 0 {
		cfg.Nemesis.MaxImpaired = cfg.Parity
	}
	if cfg.Nemesis.Log == nil {
		cfg.Nemesis.Log = func(e Event) { logf("nemesis %s", e) }
	}
	res := &Result{Seed: cfg.Seed}
	h := NewHistory()

	logf("workload and nemesis for %s", cfg.Duration)
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		res.Timeline = cfg.Nemesis.Run(runCtx, t, h)
	}()
	cfg.Workload.Run(runCtx, d, h)
	cancel()
	wg.Wait()
	healed := time.Now()
	h.Impaired(0)

	logf("every fault healed; waiting for the cluster to settle (at most %s)", cfg.SettleTimeout)
	res.NotSettled = WaitSettled(ctx, cc, healed, cfg.SettleTimeout)
	res.Settled = res.NotSettled == ""
	res.Settle = time.Since(healed)
	if res.Settled {
		logf("settled after %s", res.Settle.Round(100*time.Millisecond))
	} else {
		logf("not settled after %s: %s", res.Settle.Round(100*time.Millisecond), res.NotSettled)
	}

	reader := cfg.Workload.withDefaults().Workers // a worker number of its own
	// Keys no write of which was acknowledged may read as unavailable: with
	// nodes down, nothing proves them absent.
	var keys []string
	acked := map[string]bool{}
	for _, o := range h.Ops() {
		if o.Kind.write() && o.Outcome == OK {
			acked[o.Key] = true
		}
	}
	for _, k := range cfg.Workload.AllKeys() {
		if acked[k] {
			keys = append(keys, k)
		}
	}
	res.Unreadable = readAll(ctx, d, h, reader, keys)
	logf("read every key written: %d of %d unreadable", len(res.Unreadable), len(keys))

	rnd := rand.New(rand.NewPCG(cfg.Seed, 0x6b696c6c))
	drained := Drained(res.Timeline)
	var killed []int
	for _, i := range rnd.Perm(t.Len()) {
		if !drained[i] && len(killed) < cfg.Parity {
			killed = append(killed, i)
		}
	}
	sort.Ints(killed)
	for _, i := range killed {
		if err := t.Kill(i); err != nil {
			return nil, fmt.Errorf("chaos: kill node %d after settling: %w", i, err)
		}
	}
	res.UnreadableDegraded = readAll(ctx, d, h, reader, keys)
	logf("nodes %v killed; read every key written: %d of %d unreadable", killed, len(res.UnreadableDegraded), len(keys))

	ops := h.Ops()
	res.History = ops
	for _, o := range ops {
		if o.Kind == KindList {
			continue
		}
		res.Ops++
		switch {
		case o.Outcome == Failed:
			res.Failed++
		case o.Kind.write():
			res.Acked++
		}
		if o.Kind == KindGet && o.Impaired <= cfg.Parity && o.Worker != reader {
			res.Reads++
			if o.Outcome == Failed {
				res.ReadsBad++
			}
		}
	}
	logFailures(logf, "failed", ops, func(o *Op) bool { return true })
	logFailures(logf, "read unavailable", ops, func(o *Op) bool {
		return o.Kind == KindGet && o.Impaired <= cfg.Parity && o.Worker != reader
	})
	checkStart := time.Now()
	if cfg.Workload.MultiWriter {
		res.Violations, res.CheckTimedOut = CheckLinearizable(ops, checkBudget)
	} else {
		res.Violations = CheckSingleWriter(ops)
	}
	logf("history of %d operations checked in %s", len(ops), time.Since(checkStart).Round(time.Millisecond))
	return res, nil
}

// checkBudget bounds the linearizability check of a run, all keys together.
const checkBudget = 2 * time.Minute

// readAll gets every key and returns those that failed.
func readAll(ctx context.Context, d *dscluster.Datastore, h *History, worker int, keys []string) []string {
	var bad []string
	for _, k := range keys {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		o := Get(rctx, d, h, worker, k)
		cancel()
		if o.Outcome == Failed {
			bad = append(bad, k)
		}
	}
	return bad
}

// WaitSettled waits until every member is up and reachable and the raft
// leader's repair pass, started after since, found nothing degraded and
// left no backlog for the current map (as `dsclient status --wait`). It
// returns "", or when timeout passes first what the last check found
// unsettled. Each check opens a front end with cc, so it judges the
// newest cluster description.
func WaitSettled(ctx context.Context, cc *config.Client, since time.Time, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		why := unsettled(ctx, cc, since)
		if why == "" {
			return ""
		}
		select {
		case <-ctx.Done():
			return why
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// unsettled returns why the cluster is not settled, or "".
func unsettled(ctx context.Context, cc *config.Client, since time.Time) string {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, sts, err := statusOf(sctx, cc)
	if err != nil {
		return err.Error()
	}
	// The first node that answers may be a drained one, removed and still
	// running with the description it had then: ask the raft leader's.
	for _, s := range sts {
		var st node.Status
		if s.Err == nil && json.Unmarshal(s.Status, &st) == nil && st.IsLeader && len(s.Addrs) > 0 {
			lc := *cc
			lc.Nodes = append([]string{s.Addrs[0] + "/p2p/" + s.Peer}, cc.Nodes...)
			if c, sts, err = statusOf(sctx, &lc); err != nil {
				return err.Error()
			}
			break
		}
	}
	if c.Target != nil {
		return fmt.Sprintf("a rebalance to epoch %d is under way", c.Target.Epoch)
	}
	if c.Unfilled != nil {
		return "repair has not filled every new owner yet"
	}
	why := "no raft leader reported a repair pass"
	for _, s := range sts {
		if s.Err != nil {
			return fmt.Sprintf("node %d (%s) does not answer: %v", s.Index, s.State, s.Err)
		}
		if s.State != membership.Up {
			return fmt.Sprintf("node %d (%s) is %s", s.Index, s.Peer, s.State)
		}
		var st node.Status
		if err := json.Unmarshal(s.Status, &st); err != nil {
			return fmt.Sprintf("node %d's status: %v", s.Index, err)
		}
		if st.IsLeader && st.Repair != nil {
			r := st.Repair
			switch {
			case !r.Started.After(since):
				why = "no repair pass started since the faults were healed"
			case !r.Settled(c.Map.Epoch):
				why = fmt.Sprintf("the last repair pass (epoch %d, map %d) found %d degraded keys, %d lost, backlog %d",
					r.Epoch, c.Map.Epoch, r.Degraded, r.Lost, r.Backlog)
			default:
				why = ""
			}
		}
	}
	return why
}

// statusOf opens a front end with cc and asks every member its status.
func statusOf(ctx context.Context, cc *config.Client) (*config.Cluster, []dscluster.NodeStatus, error) {
	d, err := dscluster.Open(ctx, cc, nil)
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	c, sts := d.StatusOf(ctx)
	return c, sts, nil
}

// peerName matches what an error says of a node besides its number.
var peerName = regexp.MustCompile(` \(…\w+\)|12D3KooW\w+`)

// logFailures prints how many of the operations that keep picks failed,
// by kind, impaired nodes and error, the most frequent first.
func logFailures(logf func(string, ...any), what string, ops []*Op, keep func(*Op) bool) {
	counts := map[string]int{}
	for _, o := range ops {
		if o.Outcome != Failed || !keep(o) {
			continue
		}
		msg := strings.ReplaceAll(o.Err, o.Key, "KEY")
		msg = peerName.ReplaceAllString(msg, "")
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		counts[fmt.Sprintf("%s with %d impaired: %s", o.Kind, o.Impaired, msg)]++
	}
	lines := make([]string, 0, len(counts))
	for l := range counts {
		lines = append(lines, l)
	}
	sort.Slice(lines, func(i, j int) bool { return counts[lines[i]] > counts[lines[j]] })
	for i, l := range lines {
		if i == 10 {
			logf("%s: %d more kinds", what, len(lines)-i)
			break
		}
		logf("%s %dx: %s", what, counts[l], l)
	}
}
