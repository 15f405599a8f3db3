// Command dscluster runs a go-ds-cluster storage node.
//
//	dscluster --conf=DIR                                   # config in DIR
//	dscluster --conf=DIR --bootstrapper=ADDR --identity=I  # fetch it first
//	dscluster --conf=DIR --bootstrapper=ADDR --listen=MA   # join a running cluster
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux for --pprof
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/node"
	"github.com/filedrive-team/go-ds-cluster/placement"
)

var log = logging.Logger("dscluster")

func main() {
	if err := newRoot(run).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "dscluster:", err)
		os.Exit(1)
	}
}

// options are dscluster's flags.
type options struct {
	conf, boot, data, logLevel string
	identity                   int
	listen, zone, store        string
	mongodb                    string
	weight                     int
	heartbeat, outAfter        time.Duration
	repairRate                 float64
	repairEvery, scrubEvery    time.Duration
	compactEvery               time.Duration
	volumeMiB                  int64
	pprofAddr, metricsAddr     string
}

// newRoot returns the dscluster command, which calls run with the flags.
func newRoot(run func(options) error) *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "dscluster --conf=DIR [--bootstrapper=MULTIADDR (--identity=I | --listen=MULTIADDR)]",
		Short: "dscluster runs a go-ds-cluster storage node",
		Long: `dscluster runs a go-ds-cluster storage node, with its config in DIR; with
--bootstrapper and --identity it fetches that config first, with
--bootstrapper alone it joins a running cluster as a new node.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 0 {
				return fmt.Errorf("unexpected arguments %q", args)
			}
			return nil
		},
		PreRun: func(cmd *cobra.Command, _ []string) {
			// The command line parsed: from here on an error is not a
			// usage mistake, and prints no usage.
			cmd.SilenceUsage = true
		},
		RunE:          func(*cobra.Command, []string) error { return run(o) },
		SilenceErrors: true, // main prints them
	}
	fs := cmd.Flags()
	fs.StringVar(&o.conf, "conf", ".dscluster", "config and data directory of this node")
	fs.StringVar(&o.boot, "bootstrapper", "", "multiaddr of the bootstrapper node; used to fetch this node's config when DIR has none")
	fs.IntVar(&o.identity, "identity", -1, "which of the bootstrap config's node identities this node takes (with --bootstrapper)")
	fs.StringVar(&o.data, "data", "", "data directory for shards and index (default: DIR)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.listen, "listen", "/ip4/0.0.0.0/tcp/6735", "listen multiaddr of a node that joins a running cluster (--bootstrapper without --identity)")
	fs.StringVar(&o.zone, "zone", "", "failure domain label of a joining node")
	fs.IntVar(&o.weight, "weight", 0, "capacity weight of a joining node (0: 1)")
	fs.StringVar(&o.store, "store", config.DefaultStore, "shard store of a joining node: volume, flatfs or mongodb")
	fs.StringVar(&o.mongodb, "mongodb", "", "keep this node's shards in the MongoDB at this URI, e.g. mongodb://localhost:27017 (default: $DSCLUSTER_MONGODB, which keeps a password out of the process list)")
	fs.DurationVar(&o.heartbeat, "heartbeat", node.DefaultHeartbeatInterval, "how often the raft leader pings every member; one missed ping marks a member down")
	fs.DurationVar(&o.outAfter, "out-after", node.DefaultOutAfter, "how long a member stays down before it is out and its shards are rebuilt elsewhere")
	fs.Float64Var(&o.repairRate, "repair-rate", 0, "repair bandwidth limit in MB/s (0: unlimited)")
	fs.DurationVar(&o.repairEvery, "repair-interval", node.DefaultRepairInterval, "how often the raft leader runs a repair pass")
	fs.DurationVar(&o.scrubEvery, "scrub-interval", node.DefaultScrubInterval, "how often the node reads and verifies every shard it holds (0: never)")
	fs.DurationVar(&o.compactEvery, "compact-interval", node.DefaultCompactEvery, "how often the volume store rewrites the volume files that are at least half garbage (0: never)")
	fs.Int64Var(&o.volumeMiB, "volume-size", 1024, "MiB a volume file grows to before the volume store starts another")
	fs.StringVar(&o.pprofAddr, "pprof", "", "serve Go's profiling endpoints (/debug/pprof/) on this host:port, e.g. 127.0.0.1:6060 (default: off)")
	fs.StringVar(&o.metricsAddr, "metrics", "", "serve Prometheus metrics (/metrics) on this host:port, e.g. 127.0.0.1:9464 (default: off)")
	return cmd
}

func run(o options) error {
	if o.mongodb == "" {
		o.mongodb = os.Getenv("DSCLUSTER_MONGODB")
	}
	if o.weight < 0 || o.weight > placement.MaxWeight {
		return fmt.Errorf("--weight %d is outside 0..%d", o.weight, placement.MaxWeight)
	}
	if err := logging.SetLogLevel("*", o.logLevel); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	// flatfs logs a harmless error at close when its usage file is late.
	_ = logging.SetLogLevel("flatfs", "fatal")

	if o.pprofAddr != "" {
		l, err := listenHTTP("--pprof", o.pprofAddr)
		if err != nil {
			return err
		}
		log.Infow("serving profiles", "url", "http://"+l.Addr().String()+"/debug/pprof/")
		serveHTTP("pprof", l, http.DefaultServeMux)
	}
	var metricsL net.Listener
	if o.metricsAddr != "" {
		// Listen before the node starts: a taken port fails at once.
		var err error
		if metricsL, err = listenHTTP("--metrics", o.metricsAddr); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	path := filepath.Join(o.conf, config.FileName)
	cfg, err := config.LoadNode(path)
	joining := false
	switch {
	case errors.Is(err, config.ErrNoConfig) && o.boot != "" && o.identity >= 0:
		cfg, err = fetchConfig(ctx, o.conf, o.boot, o.identity, path)
	case errors.Is(err, config.ErrNoConfig) && o.boot != "":
		store := o.store
		if o.mongodb != "" {
			store = "mongodb"
		}
		cfg, err = joinConfig(ctx, o.conf, o.boot, path, o.listen, o.zone, o.weight, store)
		joining = true
	case errors.Is(err, config.ErrNoConfig):
		return fmt.Errorf("%w; generate one with `dscfg cluster`, pass --bootstrapper and --identity to fetch one, or --bootstrapper alone to join a running cluster", err)
	}
	if err != nil {
		return err
	}
	if o.repairRate < 0 {
		return fmt.Errorf("--repair-rate %v is negative", o.repairRate)
	}
	if o.volumeMiB < 1 || o.volumeMiB > 1<<20 {
		return fmt.Errorf("--volume-size %d MiB is out of range (1 MiB to 1 TiB)", o.volumeMiB)
	}
	scrub, compact := o.scrubEvery, o.compactEvery
	if scrub == 0 {
		scrub = -1
	}
	if compact == 0 {
		compact = -1
	}
	dataDir := o.data
	if dataDir == "" {
		dataDir = o.conf
	}
	if o.mongodb != "" && cfg.Store != "mongodb" {
		if err := useMongoDB(cfg, path, dataDir); err != nil {
			return err
		}
	}
	n, err := node.Start(ctx, node.Options{
		Dir: dataDir, Config: cfg, MongoDB: o.mongodb,
		HeartbeatInterval: o.heartbeat, OutAfter: o.outAfter,
		RepairRate: o.repairRate * 1e6, RepairInterval: o.repairEvery, ScrubInterval: scrub,
		CompactEvery: compact, VolumeSize: o.volumeMiB << 20,
	})
	if err != nil {
		return err
	}
	if metricsL != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(n.Metrics(), promhttp.HandlerOpts{}))
		log.Infow("serving metrics", "url", "http://"+metricsL.Addr().String()+"/metrics")
		serveHTTP("metrics", metricsL, mux)
	}
	switch {
	case joining:
		// A new member must be accepted before it reports ready.
		jctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := node.Join(jctx, o.boot, n)
		cancel()
		if err != nil {
			n.Close()
			return fmt.Errorf("join the cluster through %s: %w", o.boot, err)
		}
		log.Infow("joined the cluster; the leader moves slots here once the copies are made", "peer", n.ID().String())
	case o.boot != "" && o.identity < 0:
		// A member restarted with --bootstrapper: it is a member already
		// (raft knows it), so asking again only refreshes its addresses,
		// and must not keep it from serving while that node is away.
		go func() {
			jctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := node.Join(jctx, o.boot, n); err != nil && ctx.Err() == nil {
				log.Warnw("could not refresh membership through the bootstrapper; serving anyway", "bootstrapper", o.boot, "err", err)
			}
		}()
	}
	for _, a := range n.Addrs() {
		log.Infof("listening on %s/p2p/%s", a, n.ID())
	}
	log.Infow("dscluster ready", "identity", cfg.Identity, "peer", n.ID().String(), "cluster", cfg.Cluster.ID)
	<-ctx.Done()
	log.Infow("shutting down")
	done := make(chan error, 1)
	go func() { done <- n.Close() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
	case <-time.After(30 * time.Second):
		return errors.New("shutdown: timed out after 30s")
	}
	log.Infow("stopped")
	return nil
}

func fetchConfig(ctx context.Context, dir, boot string, identity int, path string) (*config.Node, error) {
	if identity < 0 {
		return nil, errors.New("--bootstrapper needs --identity=I: which node of the bootstrap config this is")
	}
	secret, err := config.FindSecret(dir)
	if err != nil {
		return nil, err
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg, err := node.FetchNodeConfig(fctx, boot, identity, secret)
	if err != nil {
		return nil, fmt.Errorf("fetch config for identity %d: %w", identity, err)
	}
	if err := config.Save(path, cfg); err != nil {
		return nil, err
	}
	log.Infow("fetched config from the bootstrapper", "identity", identity, "path", path)
	return cfg, nil
}

// joinConfig makes the config of a node that joins a running cluster: a new
// identity, the cluster description from the node at boot, and its flags.
func joinConfig(ctx context.Context, dir, boot, path, listen, zone string, weight int, store string) (*config.Node, error) {
	secret, err := config.FindSecret(dir)
	if err != nil {
		return nil, err
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := node.FetchCluster(fctx, boot, secret)
	if err != nil {
		return nil, fmt.Errorf("fetch the cluster description: %w", err)
	}
	_, key, err := config.NewPrivKey()
	if err != nil {
		return nil, err
	}
	cfg := &config.Node{
		Version: config.FormatVersion, Identity: -1, PrivKey: key,
		Listen: []string{listen}, Secret: secret, Store: store,
		Zone: zone, Weight: weight, Cluster: *c,
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("join config: %w", err)
	}
	if err := config.Save(path, cfg); err != nil {
		return nil, err
	}
	log.Infow("wrote the config of a new member", "path", path)
	return cfg, nil
}

// useMongoDB moves a node that holds no shards yet to the MongoDB shard
// store (the seed's `dscluster --mongodb=URI` over a config of another
// store) and records it in the config: the URI, which may carry a
// password, is given on every start and never written.
func useMongoDB(cfg *config.Node, path, dataDir string) error {
	for _, name := range []string{"volume", "shards", "index.db"} {
		if p := filepath.Join(dataDir, name); exists(p) {
			return fmt.Errorf("--mongodb: this node keeps its shards in its %s store (%s); on MongoDB it would start empty. "+
				"Switch one node at a time (at most the policy's parity count), waiting for `dsclient status --wait` between: "+
				"move %s aside (and index.db beside it), start the node with --mongodb, and repair refills it", cfg.Store, p, p)
		}
	}
	cfg.Store = "mongodb"
	if err := config.Save(path, cfg); err != nil {
		return err
	}
	log.Infow("this node keeps its shards in MongoDB from now on (config store: mongodb)", "config", path)
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// listen opens the listener of an HTTP flag's address.
func listenHTTP(flagName, addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flagName, err)
	}
	return l, nil
}

// serveHTTP serves h on l for the life of the process.
func serveHTTP(what string, l net.Listener, h http.Handler) {
	go func() {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		if err := srv.Serve(l); err != nil {
			log.Warnw(what+" server stopped", "err", err)
		}
	}()
}
