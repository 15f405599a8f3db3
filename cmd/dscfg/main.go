// Command dscfg generates go-ds-cluster configs: a bootstrap config for the
// first N nodes of a cluster, and client configs.
//
//	dscfg cluster --cluster-node-number=N [flags] DIR
//	dscfg client [--cluster=DIR] FILE
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/placement"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "dscfg:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "dscfg",
		Short: "dscfg generates go-ds-cluster configuration",
		Long: `dscfg generates go-ds-cluster configuration: the bootstrap config of a
cluster's first nodes, and client configs.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown subcommand %q", args[0])
			}
			return nil
		},
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			// The command line parsed: from here on an error is not a
			// usage mistake, and prints no usage.
			cmd.SilenceUsage = true
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			_ = cmd.Usage()
			return errors.New("missing subcommand")
		},
		SilenceErrors: true, // main prints them
	}
	root.AddCommand(newClusterCmd(), newClientCmd())
	return root
}

// exactlyOne wants one positional argument; else the error is msg.
func exactlyOne(msg string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != 1 {
			return errors.New(msg)
		}
		return nil
	}
}

// clusterFlags are the flags of dscfg cluster.
type clusterFlags struct {
	n, k, m, basePort, small, quorum int
	host, hosts, zones, store        string
}

func newClusterCmd() *cobra.Command {
	var f clusterFlags
	cmd := &cobra.Command{
		Use:   "cluster --cluster-node-number=N [flags] DIR",
		Short: "write a cluster's bootstrap config and secret into DIR",
		Long: `Write DIR/config.json (the bootstrapper's config, holding the identities
of all N nodes) and DIR/swarm.key (the cluster secret), and print the
bootstrapper's multiaddr as the last line. Node i listens on base-port+i.`,
		Args: exactlyOne("cluster: want exactly one DIR argument"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmdCluster(f, cmd.Flags().Changed, args[0])
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&f.n, "cluster-node-number", 0, "number of nodes in the initial cluster (at least data+parity shards)")
	fs.IntVar(&f.k, "data-shards", config.DefaultDataShards, "erasure data shards k")
	fs.IntVar(&f.m, "parity-shards", config.DefaultParityShards, "erasure parity shards m (nodes that may be lost)")
	fs.IntVar(&f.basePort, "base-port", config.DefaultBasePort, "TCP port of node 0; node i listens on base-port+i (0: pick free ports now)")
	fs.StringVar(&f.host, "host", "0.0.0.0", "IPv4 address every node listens on")
	fs.StringVar(&f.hosts, "hosts", "", "comma-separated IPv4 address per node, for nodes on different machines (overrides --host)")
	fs.StringVar(&f.zones, "zones", "", "comma-separated failure-domain label per node (optional)")
	fs.IntVar(&f.small, "small-threshold", config.DefaultSmallThreshold, "values smaller than this many bytes are replicated parity+1 times instead of erasure coded")
	fs.IntVar(&f.quorum, "write-quorum", 0, "shards that must be stored before a put is acknowledged, data+1 to data+parity (0: data+1)")
	fs.StringVar(&f.store, "store", config.DefaultStore, "shard store of every node: volume (append-only volume files), flatfs (one file per shard) or mongodb (each node gives its URI: dscluster --mongodb)")
	return cmd
}

// cmdCluster writes the bootstrap config into dir; set tells which flags
// were given.
func cmdCluster(f clusterFlags, set func(string) bool, dir string) error {
	n, k, m := f.n, f.k, f.m
	if !set("data-shards") && !set("parity-shards") && n >= 1 && n < k+m {
		// The seed's `dscfg cluster --cluster-node-number=3`: the widest
		// policy that fits, keeping 2 parity shards while there are nodes
		// for one data shard beside them (3 nodes: 1+2, three copies).
		m = min(config.DefaultParityShards, n-1)
		k = n - m
		fmt.Fprintf(os.Stderr, "dscfg: %d nodes cannot hold the default policy %d+%d: using %d+%d (--data-shards and --parity-shards choose another)\n",
			n, config.DefaultDataShards, config.DefaultParityShards, k, m)
	}
	p := coding.Erasure(k, m)
	if err := p.Validate(); err != nil {
		return fmt.Errorf("cluster: policy %d+%d: %w", k, m, err)
	}
	if m <= 1 && f.quorum == 0 {
		// The write quorum is k+1: with one parity shard, every node of a
		// value's positions.
		fmt.Fprintf(os.Stderr, "dscfg: with %d parity shard(s) a write needs all %d positions: while a node is down, values cannot be written (reads go on); 2 parity shards keep writes going\n", m, p.Width())
	}
	if n < p.Width() {
		return fmt.Errorf("cluster: --cluster-node-number=%d is too small: policy %s puts each value on %d distinct nodes, so the cluster needs at least %d (for a small cluster choose a narrower policy, e.g. --data-shards=1 --parity-shards=2 for 3 nodes, or leave both flags out)", n, p, p.Width(), p.Width())
	}
	ips, err := nodeHosts(f.host, f.hosts, n)
	if err != nil {
		return err
	}
	zs, err := splitList(f.zones, n, "--zones")
	if err != nil {
		return err
	}
	ports, err := nodePorts(f.basePort, n)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, config.FileName)
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("cluster: %s already exists; refusing to overwrite a cluster's identities", path)
	}
	secret := config.NewSecret()
	var nodes []placement.Node
	var keys []string
	for i := 0; i < n; i++ {
		sk, enc, err := config.NewPrivKey()
		if err != nil {
			return err
		}
		id, err := peer.IDFromPrivateKey(sk)
		if err != nil {
			return err
		}
		keys = append(keys, enc)
		nodes = append(nodes, placement.Node{
			ID:    id.String(),
			Addrs: []string{fmt.Sprintf("/ip4/%s/tcp/%d", ips[i], ports[i])},
			Zone:  zs[i],
		})
	}
	mp, err := placement.Assign(nil, nodes, p.Width())
	if err != nil {
		return err
	}
	clusterID := config.NewSecret()[:12]
	cfg := &config.Node{
		Version:    config.FormatVersion,
		Identity:   0,
		PrivKey:    keys[0],
		Listen:     nodes[0].Addrs,
		Secret:     secret,
		Store:      f.store,
		Identities: keys,
		Cluster: config.Cluster{
			ID:             "dsc-" + clusterID,
			Policy:         p,
			SmallThreshold: f.small,
			WriteQuorum:    f.quorum,
			Map:            mp,
		},
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("cluster: generated config is invalid: %w", err)
	}
	if err := config.Save(path, cfg); err != nil {
		return err
	}
	if err := config.WritePrivate(filepath.Join(dir, config.SwarmKeyFile), config.SwarmKey(secret)); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s and %s: %d nodes, policy %s, cluster %s\n", path, filepath.Join(dir, config.SwarmKeyFile), n, p, cfg.Cluster.ID)
	fmt.Fprintf(os.Stderr, "other nodes and clients need the cluster secret: copy %s into their --conf dir, or export %s=%s\n", config.SwarmKeyFile, config.SecretEnv, secret)
	fmt.Printf("%s/p2p/%s\n", nodes[0].Addrs[0], nodes[0].ID)
	return nil
}

func nodeHosts(host, hosts string, n int) ([]string, error) {
	if hosts != "" {
		return splitList(hosts, n, "--hosts")
	}
	if ip := net.ParseIP(host); ip == nil || ip.To4() == nil {
		return nil, fmt.Errorf("--host=%q is not an IPv4 address", host)
	}
	out := make([]string, n)
	for i := range out {
		out[i] = host
	}
	return out, nil
}

func splitList(s string, n int, flagName string) ([]string, error) {
	out := make([]string, n)
	if s == "" {
		return out, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) != n {
		return nil, fmt.Errorf("%s has %d entries, want one per node (%d)", flagName, len(parts), n)
	}
	for i, p := range parts {
		out[i] = strings.TrimSpace(p)
	}
	return out, nil
}

// nodePorts returns base+i, or with base 0 ports that are free right now.
func nodePorts(base, n int) ([]int, error) {
	out := make([]int, n)
	if base != 0 {
		if base < 1 || base+n-1 > 65535 {
			return nil, fmt.Errorf("--base-port=%d: ports %d..%d are out of range", base, base, base+n-1)
		}
		for i := range out {
			out[i] = base + i
		}
		return out, nil
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := range out {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		ls = append(ls, l)
		out[i] = l.Addr().(*net.TCPAddr).Port
	}
	return out, nil
}

func newClientCmd() *cobra.Command {
	var from, ns string
	cmd := &cobra.Command{
		Use: "client [--cluster=DIR] [--namespace=NAME] FILE",
		// The use line names the flags.
		DisableFlagsInUseLine: true,
		Short:                 "write a client config (for dsclient or the clusterds kubo plugin)",
		Long: `Write a client config (for dsclient or the clusterds kubo plugin). With
--cluster, the nodes and the secret are taken from that bootstrap config.`,
		Args: exactlyOne("client: want exactly one FILE argument"),
		RunE: func(_ *cobra.Command, args []string) error {
			return cmdClient(from, ns, args[0])
		},
	}
	cmd.Flags().StringVar(&from, "cluster", "", "bootstrap config DIR (written by dscfg cluster) to take the nodes and secret from")
	cmd.Flags().StringVar(&ns, "namespace", "", "keep this client's keys apart from other namespaces' on the same cluster, e.g. one per kubo node (default: none, or the namespace FILE already has)")
	return cmd
}

func cmdClient(from, ns, file string) error {
	cc := &config.Client{Version: config.FormatVersion, Timeout: "30s"}
	// The identity a client role is granted to (dsclient --conf=FILE id):
	// a file written before keeps its own, and its request timeouts, so
	// that regenerating it does not lock its user out of the cluster.
	kept, err := config.KeepIdentity(file, cc)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if ns != "" {
		if err := config.CheckNamespace(ns); err != nil {
			return fmt.Errorf("client: %w", err)
		}
		cc.Namespace = ns
	}
	if from != "" {
		nc, err := config.LoadNode(filepath.Join(from, config.FileName))
		if err != nil {
			return err
		}
		cc.ClusterID = nc.Cluster.ID
		cc.Secret = nc.Secret
		for _, n := range nc.Cluster.Map.Nodes {
			cc.Nodes = append(cc.Nodes, n.Addrs[0]+"/p2p/"+n.ID)
		}
	} else {
		cc.Secret = strings.Repeat("0", 64)
		cc.Nodes = []string{"/ip4/127.0.0.1/tcp/6735/p2p/REPLACE-WITH-THE-BOOTSTRAPPER-PEER-ID"}
	}
	if err := config.Save(file, cc); err != nil {
		return err
	}
	if kept {
		fmt.Fprintf(os.Stderr, "kept the client identity already in %s\n", file)
	}
	if from == "" {
		fmt.Fprintf(os.Stderr, "wrote %s: replace \"nodes\" with your server multiaddrs and \"secret\" with the cluster secret (the last line of the bootstrapper's swarm.key), or run: dscfg client --cluster=BOOTSTRAP-DIR %s\n", file, file)
	} else {
		fmt.Fprintf(os.Stderr, "wrote %s for cluster %s (%d nodes)\n", file, cc.ClusterID, len(cc.Nodes))
	}
	return nil
}
