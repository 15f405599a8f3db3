package chaos_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/chaos"
	"github.com/filedrive-team/go-ds-cluster/clustertest"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/node"
)

// inProcess is a chaos.Target over an in-process cluster. A node cannot
// be frozen in-process: Pause is unsupported; Isolate cuts it off. The
// cluster is not safe for concurrent use: mu orders the nemesis's calls.
type inProcess struct {
	mu sync.Mutex
	c  *clustertest.Cluster
	d  *dscluster.Datastore // for drains
}

// locked runs f with the cluster to itself.
func (p *inProcess) locked(f func()) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f()
	return nil
}

func (p *inProcess) Len() (n int)      { p.locked(func() { n = p.c.Len() }); return n }
func (p *inProcess) Kill(i int) error  { return p.locked(func() { p.c.Stop(i) }) }
func (p *inProcess) Start(i int) error { return p.locked(func() { p.c.Restart(i) }) }
func (p *inProcess) Pause(int) error   { return chaos.ErrUnsupported }
func (p *inProcess) Resume(int) error  { return chaos.ErrUnsupported }
func (p *inProcess) Isolate(i int) error {
	return p.locked(func() { p.c.Isolate(i) })
}
func (p *inProcess) Rejoin(i int) error { return p.locked(func() { p.c.Rejoin(i) }) }
func (p *inProcess) Leader() (l int)    { p.locked(func() { l = p.c.Leader() }); return l }
func (p *inProcess) Join() (i int, err error) {
	p.locked(func() { i, err = p.c.Join("") })
	return i, err
}

func (p *inProcess) Drain(i int) error {
	var n *node.Node
	p.locked(func() { n = p.c.Node(i) })
	if n == nil {
		return fmt.Errorf("drain node %d: it is stopped", i)
	}
	id := n.ID().String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return p.d.Member(ctx, membership.Command{Op: membership.OpDrain, ID: id})
}

// TestFaultRun runs seeded fault runs on a 7-node 4+2 cluster in this
// process: a workload of put, get, delete, batch and query while a nemesis
// kills nodes (some past the out grace, the raft leader among them), cuts
// them off, adds nodes and drains them; then it heals, waits for the cluster to settle, reads
// every key, kills 2 nodes and reads every key again. CHAOS_SEED and
// CHAOS_DURATION replace the fixed seeds and the duration.
func TestFaultRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for a minute; skipped with -short")
	}
	runs := []struct {
		seed  uint64
		store string
		multi bool
	}{
		{1, "volume", false},
		{2, "flatfs", false},
		{3, "volume", true},
	}
	dur := 20 * time.Second
	if s := os.Getenv("CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("CHAOS_DURATION: %v", err)
		}
		dur = d
	}
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED: %v", err)
		}
		runs = runs[:1]
		runs[0].seed = seed
	}
	for _, r := range runs {
		name := "seed=" + strconv.FormatUint(r.seed, 10) + "/" + r.store
		if r.multi {
			name += "/multi-writer"
		}
		t.Run(name, func(t *testing.T) {
			if r.multi && os.Getenv("CHAOS_MULTI") == "" {
				// The multi-writer check can meet a known case
				// (docs/fault-run.md): a write that failed after storing
				// exactly its k data shards, read from those, then passed
				// over by a read that sees one fewer. CHAOS_MULTI=1 runs it.
				t.Skip("known: a failed write on exactly its k data positions can be read, then passed over; CHAOS_MULTI=1 runs it")
			}
			c := clustertest.Start(t, clustertest.Options{Nodes: 7, Store: r.store, FastRaft: true,
				HeartbeatInterval: 200 * time.Millisecond, OutAfter: 3 * time.Second, RepairInterval: time.Second,
				GarbageGrace: 5 * time.Second})
			d := c.Client(&dscluster.Options{Timeout: 5 * time.Second})
			cfg := chaos.Config{
				Seed: r.seed, Duration: dur, Parity: 2, SettleTimeout: 90 * time.Second,
				Workload: chaos.Workload{Workers: 6, MultiWriter: r.multi, MaxValue: 512 << 10, OpTimeout: 20 * time.Second},
				Nemesis: chaos.Nemesis{Faults: []chaos.Fault{chaos.FaultKill, chaos.FaultOut, chaos.FaultLeader, chaos.FaultIsolate,
					chaos.FaultJoin, chaos.FaultDrain},
					Every: chaos.Span{Min: time.Second, Max: 3 * time.Second}, Down: chaos.Span{Min: time.Second, Max: 2500 * time.Millisecond},
					Out: chaos.Span{Min: 4 * time.Second, Max: 6 * time.Second}},
				Logf: t.Logf,
			}
			res, err := chaos.Run(context.Background(), cfg, &inProcess{c: c, d: d}, d, c.ClientConfig())
			if err != nil {
				t.Fatal(err)
			}
			t.Log(res.Summary())
			if !res.Passed() {
				t.Fatalf("%s\n%s", res.Summary(), res.Report())
			}
			if res.Acked == 0 {
				t.Fatalf("no write was acknowledged: %s", res.Summary())
			}
		})
	}
}
