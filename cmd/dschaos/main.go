// Command dschaos runs a fault run against real dscluster processes on
// loopback: a seeded workload through one front end while a nemesis kills
// and pauses nodes; then it heals, waits for the cluster to settle, reads
// every key, kills m nodes and reads every key again. It prints the
// nemesis timeline as it goes and ends with one summary line; a failing run
// prints its seed and the history of each key that failed, and exits 1.
//
//	dschaos --bin=. --seed=1 --duration=90s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	logging "github.com/ipfs/go-log/v2"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/chaos"
)

func main() {
	code, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dschaos:", err)
		os.Exit(2)
	}
	os.Exit(code)
}

func run() (int, error) {
	bin := flag.String("bin", ".", "folder holding dscfg, dscluster and dsclient")
	dir := flag.String("dir", "", "folder for the nodes' data and logs (default: a new temporary folder, removed after a passing run)")
	seed := flag.Uint64("seed", 1, "seed of the workload and the nemesis")
	duration := flag.Duration("duration", 90*time.Second, "how long the workload runs under the nemesis")
	nodes := flag.Int("nodes", 7, "dscluster processes")
	k := flag.Int("data-shards", 4, "erasure data shards k")
	m := flag.Int("parity-shards", 2, "erasure parity shards m: the nemesis impairs at most m nodes at once, and m are killed at the end")
	store := flag.String("store", "volume", "shard store: volume or flatfs")
	faults := flag.String("faults", "kill,pause,out,leader,join,drain,reboot", "the nemesis mix, comma-separated: kill, pause, out, leader, join, drain, reboot (a kill after which the node rebuilds its index, as after an OS crash), isolate (with --netns; added to the default mix there)")
	workers := flag.Int("workers", 8, "concurrent clients")
	keys := flag.Int("keys", 0, "keys per worker (shared keys with --multi-writer; 0: 16, or 8 shared)")
	multi := flag.Bool("multi-writer", false, "workers share keys; check linearizability (porcupine)")
	maxValue := flag.Int("max-value", 1<<20, "largest value in bytes")
	heartbeat := flag.Duration("heartbeat", 200*time.Millisecond, "dscluster --heartbeat")
	outAfter := flag.Duration("out-after", 5*time.Second, "dscluster --out-after")
	repairEvery := flag.Duration("repair-interval", time.Second, "dscluster --repair-interval")
	settle := flag.Duration("settle-timeout", 3*time.Minute, "how long to wait for the cluster to settle after the nemesis")
	netns := flag.Bool("netns", false, "run each node in a network namespace of its own, so that the isolate fault can cut it off (needs root and ip)")
	flag.Parse()
	if flag.NArg() != 0 {
		return 0, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	mix := *faults
	if *netns && !flagSet("faults") {
		mix += ",isolate"
	}
	fs, err := chaos.ParseFaults(mix)
	if err != nil {
		return 0, err
	}
	// The front end's own log stays quiet: a fault run makes it warn a lot.
	_ = logging.SetLogLevel("*", "error")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work := *dir
	if work == "" {
		if work, err = os.MkdirTemp("", "dschaos-"); err != nil {
			return 0, err
		}
	}
	binDir, err := filepath.Abs(*bin)
	if err != nil {
		return 0, err
	}
	p := &chaos.Procs{Bin: binDir, Dir: work, Nodes: *nodes, DataShards: *k, ParityShards: *m, Store: *store,
		Flags: []string{"--heartbeat=" + heartbeat.String(), "--out-after=" + outAfter.String(),
			"--repair-interval=" + repairEvery.String(), "--volume-size=1", "--compact-interval=2s"}}
	if *netns {
		if p.Net, err = chaos.NewNetns(); err != nil {
			return 0, err
		}
	}
	defer p.Close()
	logf := func(format string, args ...any) {
		fmt.Printf("%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
	logf("starting %d dscluster processes (%d+%d, %s store) under %s", *nodes, *k, *m, *store, work)
	if err := p.Launch(ctx); err != nil {
		return 0, err
	}
	cc, err := p.ClientConfig()
	if err != nil {
		return 0, err
	}
	d, err := dscluster.Open(ctx, cc, &dscluster.Options{Timeout: 5 * time.Second})
	if err != nil {
		return 0, err
	}
	defer d.Close()
	res, err := chaos.Run(ctx, chaos.Config{
		Seed: *seed, Duration: *duration, Parity: *m, SettleTimeout: *settle,
		Workload: chaos.Workload{Workers: *workers, Keys: *keys, MultiWriter: *multi, MaxValue: *maxValue,
			SmallThreshold: d.Cluster().SmallThreshold},
		Nemesis: chaos.Nemesis{Faults: fs, Out: chaos.Span{Min: *outAfter + 3*time.Second, Max: *outAfter + 7*time.Second}},
		Logf:    logf,
	}, p, d, cc)
	if err != nil {
		return 0, err
	}
	if !res.Passed() {
		fmt.Print(res.Report())
		fmt.Printf("nodes' data and logs kept in %s\n", work)
		fmt.Println(res.Summary())
		return 1, nil
	}
	if *dir == "" {
		p.Close()
		_ = os.RemoveAll(work)
	}
	fmt.Println(res.Summary())
	return 0, nil
}

// flagSet reports whether the named flag was given.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
