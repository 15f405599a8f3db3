package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	ds "github.com/ipfs/go-datastore"
	flatfs "github.com/ipfs/go-ds-flatfs"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/bench"
	"github.com/filedrive-team/go-ds-cluster/coding"
)

// benchFlags are the flags of bench.
type benchFlags struct {
	workloads, suite, size       string
	count, concurrency, degraded int
	duration                     time.Duration
	policy, stopPIDs             string
	baselineDir                  string
	noBaseline, asJSON           bool
	reportDir, cpuProfile        string
	ceiling                      bool
}

func newBenchCmd(g *globals) *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench [flags]",
		Short: "throughput against the cluster and a raw flatfs, same run",
		Args:  noArgs("bench"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmdBench(cmd.Context(), g.conf, f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.workloads, "workload", "put,get", "comma-separated workloads: put, get, mixed, degraded-get")
	fs.StringVar(&f.suite, "suite", "", `"standard": the make bench suite (256KiB and 4KiB put/get at concurrency 16, degraded get); overrides --workload, --size, --concurrency`)
	fs.StringVar(&f.size, "size", "256KiB", "value size (4KiB, 256KiB, 1MiB)")
	fs.IntVar(&f.count, "count", 0, "operations per workload and target (0: use --duration)")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "time per workload and target, when --count is 0")
	fs.IntVar(&f.concurrency, "concurrency", 16, "operations in flight")
	fs.StringVar(&f.policy, "policy", "", "erasure policy for this run, such as 4+2 or 2+1 (default: the cluster's)")
	fs.IntVar(&f.degraded, "degraded", -1, "nodes treated as down by degraded-get (default: the policy's parity shards)")
	fs.StringVar(&f.stopPIDs, "stop-pids", "", "comma-separated PIDs of node processes on this machine that degraded-get stops (SIGTERM) once its values are written, reading through the same front end; without it degraded-get's front end treats --degraded nodes as down")
	fs.StringVar(&f.baselineDir, "baseline-dir", "", "folder for the raw flatfs baseline (default: a temporary folder, removed afterwards)")
	fs.BoolVar(&f.noBaseline, "no-baseline", false, "skip the raw flatfs baseline")
	fs.BoolVar(&f.asJSON, "json", false, "print the report as one JSON object")
	fs.StringVar(&f.reportDir, "report", "", "also write DIR/latest.md and a chart, DIR/latest.png")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write this client's CPU profile over the whole run to FILE (read it with go tool pprof)")
	fs.BoolVar(&f.ceiling, "ceiling", false, "the nodes run on this machine (as in make bench): measure the CPU per byte of the nodes' secure channel here and show the most ops/s it leaves this machine's cores (channel ceiling)")
	return cmd
}

func cmdBench(ctx context.Context, conf string, f benchFlags) error {
	var cases []bench.Case
	if f.suite != "" {
		if f.suite != "standard" {
			return fmt.Errorf("bench: unknown suite %q (want standard)", f.suite)
		}
		cases = bench.StandardSuite
	} else {
		size, err := bench.ParseSize(f.size)
		if err != nil {
			return err
		}
		for _, w := range strings.Split(f.workloads, ",") {
			wl, err := bench.ParseWorkload(strings.TrimSpace(w))
			if err != nil {
				return err
			}
			cases = append(cases, bench.Case{Workload: wl, Size: size, Concurrency: f.concurrency})
		}
	}
	var opts dscluster.Options
	if f.policy != "" {
		p, err := coding.ParsePolicy(f.policy)
		if err != nil {
			return fmt.Errorf("bench: --policy: %w", err)
		}
		opts.Policy = p
	}
	d, err := openWith(ctx, conf, opts)
	if err != nil {
		return err
	}
	defer d.Close()
	c := d.Cluster()
	n := f.degraded
	if n < 0 {
		n = c.Policy.ParityShards
	}
	rep := &bench.Report{Started: time.Now(), Cluster: c.ID, Policy: c.Policy.String(), Nodes: len(c.Map.Nodes), Baseline: "none"}
	pids, err := parsePIDs(f.stopPIDs)
	if err != nil {
		return err
	}
	if len(pids) > c.Policy.ParityShards {
		return fmt.Errorf("bench: --stop-pids names %d nodes, more than the policy %s tolerates", len(pids), c.Policy)
	}
	// Stopped nodes stay stopped: nothing can run after that workload, and
	// its values stay behind (deleting needs a write quorum).
	if len(pids) > 0 && (len(cases) == 0 || cases[len(cases)-1].Workload != bench.DegradedGet || countWorkload(cases, bench.DegradedGet) != 1) {
		return errors.New("bench: --stop-pids needs degraded-get as the last workload, once")
	}
	var degraded *dscluster.Datastore
	for _, cs := range cases {
		if cs.Workload == bench.DegradedGet && len(pids) > 0 {
			rep.Down, rep.Stopped = len(pids), true
		} else if cs.Workload == bench.DegradedGet && degraded == nil {
			if n > c.Policy.ParityShards {
				return fmt.Errorf("bench: --degraded=%d is more than the policy %s tolerates", n, c.Policy)
			}
			o := opts
			for i := 0; i < n; i++ {
				o.Down = append(o.Down, i)
			}
			if degraded, err = openWith(ctx, conf, o); err != nil {
				return err
			}
			defer degraded.Close()
			rep.Down = n
		}
	}
	var baseline ds.Batching
	if !f.noBaseline {
		dir := f.baselineDir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "dsclient-bench-flatfs-"); err != nil {
				return err
			}
			defer os.RemoveAll(dir)
		}
		// Sync on, as the cluster's nodes fsync every shard.
		fsds, err := flatfs.CreateOrOpen(filepath.Join(dir, "flatfs"), flatfs.NextToLast(2), true)
		if err != nil {
			return fmt.Errorf("bench: baseline flatfs: %w", err)
		}
		defer fsds.Close()
		baseline = fsds
		rep.Baseline = "go-ds-flatfs (sync) in " + dir
	}
	if f.ceiling {
		// Before any workload, while the front ends are idle.
		fmt.Fprintln(os.Stderr, "measuring the secure channel's CPU per byte")
		ns, err := bench.MeasureChannel(ctx, 2*time.Second)
		if err != nil {
			return err
		}
		rep.ChannelNsPerByte, rep.Cores = ns, runtime.NumCPU()
	}
	if f.cpuProfile != "" {
		prof, err := os.Create(f.cpuProfile)
		if err != nil {
			return fmt.Errorf("bench: --cpuprofile: %w", err)
		}
		defer prof.Close()
		if err := pprof.StartCPUProfile(prof); err != nil {
			return fmt.Errorf("bench: --cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	tty := isTerminal(os.Stderr)
	prefix := "/BENCH" + strings.ToUpper(strconv.FormatInt(time.Now().UnixNano(), 36))
	for _, cs := range cases {
		cfg := bench.Config{Workload: cs.Workload, Size: cs.Size, Count: f.count, Duration: f.duration, Concurrency: cs.Concurrency, Prefix: prefix}
		var base *bench.Result
		if baseline != nil {
			bcfg := cfg
			if bcfg.Workload == bench.DegradedGet {
				bcfg.Workload = bench.Get // flatfs has no degraded mode
			}
			base, err = bench.Run(ctx, "flatfs", baseline, nil, bcfg, progressBar(tty, "flatfs "+label(cs)))
			if err != nil {
				return err
			}
		}
		var read ds.Datastore
		if cs.Workload == bench.DegradedGet && rep.Stopped {
			cfg.Prepared = func() error { return stopProcesses(pids, 30*time.Second) }
		} else if cs.Workload == bench.DegradedGet {
			read = degraded
		}
		res, err := bench.Run(ctx, "cluster", d, read, cfg, progressBar(tty, "cluster "+label(cs)))
		if err != nil {
			return err
		}
		rep.Add(res, base)
	}
	if f.asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.WriteTable(os.Stdout)
	}
	if f.reportDir != "" {
		if err := os.MkdirAll(f.reportDir, 0o755); err != nil {
			return err
		}
		path := filepath.Join(f.reportDir, "latest.md")
		md, err := os.Create(path)
		if err != nil {
			return err
		}
		rep.WriteMarkdown(md, "dsclient "+strings.Join(os.Args[1:], " "))
		if err := md.Close(); err != nil {
			return err
		}
		png := filepath.Join(f.reportDir, "latest.png")
		if err := rep.WriteChart(png); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wrote %s and %s\n", path, png)
	}
	return nil
}

func label(c bench.Case) string {
	return fmt.Sprintf("%s %s c%d", c.Workload, bench.FormatSize(c.Size), c.Concurrency)
}

// progressBar shows a workload's progress: a bar on a terminal, one line
// when it starts elsewhere.
func progressBar(tty bool, what string) bench.Progress {
	if !tty {
		fmt.Fprintf(os.Stderr, "running %s\n", what)
		return nil
	}
	var bar *progressbar.ProgressBar
	return func(done, total int) {
		if bar == nil {
			max := int64(total)
			if total <= 0 {
				max = -1 // a timed run: ops so far
			}
			bar = newBar(max, what, false)
		}
		_ = bar.Set(done)
	}
}

func parsePIDs(s string) ([]int, error) {
	var pids []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 1 {
			return nil, fmt.Errorf("bench: --stop-pids: %q is not a process ID", f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// stopProcesses sends SIGTERM to each PID and waits until none is left.
func stopProcesses(pids []int, timeout time.Duration) error {
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			return fmt.Errorf("stop node process %d: %w", pid, err)
		}
	}
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		// Signal 0 checks that the process exists. A stopped child of
		// another shell lingers as a zombie until reaped, which still
		// answers; its /proc state says so.
		for syscall.Kill(pid, 0) == nil && !zombie(pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("node process %d still runs %s after SIGTERM", pid, timeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	fmt.Fprintf(os.Stderr, "stopped node processes %v\n", pids)
	return nil
}

// zombie reports whether pid has exited but not been reaped.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'Z'
}

func countWorkload(cases []bench.Case, w bench.Workload) int {
	n := 0
	for _, c := range cases {
		if c.Workload == w {
			n++
		}
	}
	return n
}
