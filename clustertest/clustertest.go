// Package clustertest runs a whole go-ds-cluster inside one test process:
// N dscluster nodes on 127.0.0.1 with ports chosen by the kernel, each with
// its own flatfs shard store and bbolt index under the test's temporary
// folder, and front ends connected to them. Tests of this repository and
// of programs that embed the front end use it to inject faults: stop a
// node, restart it, corrupt a shard file.
//
// Every node started is stopped by the test's Cleanup.
package clustertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/node"
	"github.com/filedrive-team/go-ds-cluster/node/raftmap"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/transport"
)

// Options shape a test cluster. The zero value gives 6 nodes, policy 4+2.
type Options struct {
	Nodes  int           // default 6
	Policy coding.Policy // default 4+2
	// SmallThreshold is the replication threshold (default 16 KiB; -1: 0).
	SmallThreshold int
	// Sync makes nodes fsync (default off: tests do not need durability
	// across machine crashes, and fsync dominates their run time).
	Sync bool
	// Store is the nodes' shard store: "flatfs" (default) or "volume".
	Store string
	// Epoch, when set, is the cluster map's epoch (default: 1).
	Epoch uint64
	// CompactEvery and VolumeSize are passed to every node (node.Options).
	CompactEvery time.Duration
	VolumeSize   int64
	// Cluster life (node.Options): heartbeats, the out grace period, repair
	// and scrub intervals. Zero takes the node's defaults (10 minutes to
	// out, 30 s between repair passes), which keep a short test static.
	HeartbeatInterval time.Duration
	OutAfter          time.Duration
	RepairInterval    time.Duration
	ScrubInterval     time.Duration
	RepairRate        float64
	// GarbageGrace is how old a failed write must be before repair drops
	// it (node.Options; zero: 10 minutes).
	GarbageGrace time.Duration
	// FastRaft shortens raft's timeouts so that a leader change takes
	// well under a second.
	FastRaft bool
	// OpenStore, when set, opens node i's shard store under its folder
	// dir, instead of Store (fault injection).
	OpenStore func(i int, dir string) (ds.Datastore, error)
}

// Cluster is a running in-process cluster.
type Cluster struct {
	t       testing.TB
	opts    Options
	Secret  string
	Info    *config.Cluster
	Dirs    []string
	configs []*config.Node
	keys    []crypto.PrivKey
	nodes   []*node.Node
	gates   []*gate
}

// Start starts a cluster and registers its shutdown with t.Cleanup.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 6
	}
	if opts.Policy.Kind == 0 {
		opts.Policy = coding.Erasure(4, 2)
	}
	if opts.Store == "" {
		opts.Store = "flatfs"
	}
	switch {
	case opts.SmallThreshold == 0:
		opts.SmallThreshold = config.DefaultSmallThreshold
	case opts.SmallThreshold < 0:
		opts.SmallThreshold = 0
	}
	// TempDir first: cleanups run last-in first-out, and the nodes must be
	// stopped before their folders are removed.
	root := t.TempDir()
	c := &Cluster{t: t, opts: opts, Secret: config.NewSecret()}
	t.Cleanup(c.Close)
	psk, err := config.ParseSecret(c.Secret)
	if err != nil {
		t.Fatal(err)
	}
	var pnodes []placement.Node
	hosts := make([]*hostSlot, opts.Nodes)
	for i := 0; i < opts.Nodes; i++ {
		key, enc, err := config.NewPrivKey()
		if err != nil {
			t.Fatal(err)
		}
		c.gates = append(c.gates, &gate{})
		h, err := transport.NewHost(transport.HostConfig{Key: key, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Secret: psk, Gater: c.gates[i]})
		if err != nil {
			t.Fatal(err)
		}
		addrs := make([]string, 0, 1)
		for _, a := range h.Addrs() {
			addrs = append(addrs, a.String())
		}
		hosts[i] = &hostSlot{h: h, enc: enc}
		c.keys = append(c.keys, key)
		c.Dirs = append(c.Dirs, filepath.Join(root, fmt.Sprintf("node%d", i)))
		pnodes = append(pnodes, placement.Node{ID: h.ID().String(), Addrs: addrs})
	}
	m, err := placement.Assign(nil, pnodes, opts.Policy.Width())
	if err != nil {
		t.Fatal(err)
	}
	if opts.Epoch > 0 {
		m.Epoch = opts.Epoch
	}
	c.Info = &config.Cluster{ID: "test-" + c.Secret[:8], Policy: opts.Policy, SmallThreshold: opts.SmallThreshold, Map: m}
	c.nodes = make([]*node.Node, opts.Nodes)
	for i := range hosts {
		c.configs = append(c.configs, &config.Node{
			Version: config.FormatVersion, Identity: i, PrivKey: hosts[i].enc,
			Listen: pnodes[i].Addrs, Secret: c.Secret, Store: opts.Store, Cluster: *c.Info,
		})
		n, err := node.Start(context.Background(), c.nodeOptions(i, hosts[i].h))
		if err != nil {
			t.Fatal(err)
		}
		c.nodes[i] = n
	}
	return c
}

type hostSlot struct {
	h   host.Host
	enc string
}

func (c *Cluster) nodeOptions(i int, h host.Host) node.Options {
	o := node.Options{Dir: c.Dirs[i], Config: c.configs[i], Host: h, NoSync: !c.opts.Sync,
		CompactEvery: c.opts.CompactEvery, VolumeSize: c.opts.VolumeSize,
		HeartbeatInterval: c.opts.HeartbeatInterval, OutAfter: c.opts.OutAfter,
		RepairInterval: c.opts.RepairInterval, ScrubInterval: c.opts.ScrubInterval, GarbageGrace: c.opts.GarbageGrace,
		RepairRate: c.opts.RepairRate}
	if c.opts.OpenStore != nil {
		st, err := c.opts.OpenStore(i, c.Dirs[i])
		if err != nil {
			c.t.Fatalf("open node %d's store: %v", i, err)
		}
		o.Store = st
	}
	if c.opts.FastRaft {
		o.RaftTiming = raftmap.Timing{HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
			LeaderLeaseTimeout: 150 * time.Millisecond}
	}
	return o
}

// AddNode starts a new node with a fresh identity that joins the running
// cluster through a running member, as `dscluster --bootstrapper=ADDR`
// does, and returns its index. zone is its failure domain label.
func (c *Cluster) AddNode(zone string) int {
	c.t.Helper()
	i, err := c.Join(zone)
	if err != nil {
		c.t.Fatal(err)
	}
	return i
}

// Join is AddNode returning its error, for callers off the test's
// goroutine (a fault run's nemesis). A node that started but failed to
// join keeps its index, stopped.
func (c *Cluster) Join(zone string) (int, error) {
	psk, err := config.ParseSecret(c.Secret)
	if err != nil {
		return -1, err
	}
	key, enc, err := config.NewPrivKey()
	if err != nil {
		return -1, err
	}
	g := &gate{}
	h, err := transport.NewHost(transport.HostConfig{Key: key, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Secret: psk, Gater: g})
	if err != nil {
		return -1, err
	}
	var addrs []string
	for _, a := range h.Addrs() {
		addrs = append(addrs, a.String())
	}
	// Through the raft leader when there is one: the first running node
	// may have been drained and removed.
	via := c.Leader()
	if via < 0 {
		via = c.running()
	}
	cur := c.Node(via).Cluster()
	i := len(c.nodes)
	c.gates = append(c.gates, g)
	c.Dirs = append(c.Dirs, filepath.Join(filepath.Dir(c.Dirs[0]), fmt.Sprintf("node%d", i)))
	c.keys = append(c.keys, key)
	c.configs = append(c.configs, &config.Node{
		Version: config.FormatVersion, Identity: -1, PrivKey: enc, Listen: addrs,
		Secret: c.Secret, Store: c.opts.Store, Zone: zone, Cluster: *cur,
	})
	n, err := node.Start(context.Background(), c.nodeOptions(i, h))
	if err != nil {
		_ = h.Close()
		c.nodes = append(c.nodes, nil)
		return i, fmt.Errorf("start node %d: %w", i, err)
	}
	c.nodes = append(c.nodes, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	boot := c.configs[via].Listen[0] + "/p2p/" + c.nodes[via].ID().String()
	if err := node.Join(ctx, boot, n); err != nil {
		c.Stop(i)
		return i, fmt.Errorf("node %d joins through node %d: %w", i, via, err)
	}
	return i, nil
}

// running returns the index of a running node.
func (c *Cluster) running() int {
	for i, n := range c.nodes {
		if n != nil {
			return i
		}
	}
	c.t.Fatal("no node is running")
	return -1
}

// Current is the cluster description as a running node knows it now.
func (c *Cluster) Current() *config.Cluster {
	return c.nodes[c.running()].Cluster()
}

// Leader returns the index of the node that is raft leader, or -1.
func (c *Cluster) Leader() int {
	for i, n := range c.nodes {
		if n != nil && n.IsLeader() {
			return i
		}
	}
	return -1
}

// Len is the number of nodes the cluster has had (stopped ones included).
func (c *Cluster) Len() int { return len(c.nodes) }

// ClientConfig is a client config for this cluster.
func (c *Cluster) ClientConfig() *config.Client {
	cc := &config.Client{Version: config.FormatVersion, ClusterID: c.Info.ID, Secret: c.Secret}
	for _, n := range c.Info.Map.Nodes {
		cc.Nodes = append(cc.Nodes, n.Addrs[0]+"/p2p/"+n.ID)
	}
	return cc
}

// Client opens a front end with its own host, closed by t.Cleanup.
func (c *Cluster) Client(opts *dscluster.Options) *dscluster.Datastore {
	c.t.Helper()
	d, err := dscluster.Open(context.Background(), c.ClientConfig(), opts)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = d.Close() })
	return d
}

// Node returns node i, or nil if it is stopped.
func (c *Cluster) Node(i int) *node.Node { return c.nodes[i] }

// Stop stops node i, as a crash of its process would (its connections drop).
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	if c.nodes[i] == nil {
		return
	}
	if err := c.nodes[i].Close(); err != nil {
		c.t.Logf("stop node %d: %v", i, err)
	}
	c.nodes[i] = nil
}

// Restart starts a stopped node i again on its old address and data.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.nodes[i] != nil {
		return
	}
	psk, err := config.ParseSecret(c.Secret)
	if err != nil {
		c.t.Fatal(err)
	}
	h, err := transport.NewHost(transport.HostConfig{Key: c.keys[i], Listen: c.configs[i].Listen, Secret: psk, Gater: c.gates[i]})
	if err != nil {
		c.t.Fatalf("restart node %d: %v", i, err)
	}
	n, err := node.Start(context.Background(), c.nodeOptions(i, h))
	if err != nil {
		_ = h.Close()
		c.t.Fatalf("restart node %d: %v", i, err)
	}
	c.nodes[i] = n
}

// Isolate cuts node i off, as a network partition would: it refuses every
// connection, in and out, and drops those it has. Its process runs on.
func (c *Cluster) Isolate(i int) {
	c.gates[i].closed.Store(true)
	if n := c.nodes[i]; n != nil {
		for _, conn := range n.Host().Network().Conns() {
			_ = conn.Close()
		}
	}
}

// Rejoin ends Isolate: node i takes connections again.
func (c *Cluster) Rejoin(i int) { c.gates[i].closed.Store(false) }

// gate is a node's connection gater: while closed, it refuses every
// connection (Isolate).
type gate struct{ closed atomic.Bool }

func (g *gate) InterceptPeerDial(peer.ID) bool               { return !g.closed.Load() }
func (g *gate) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return !g.closed.Load() }
func (g *gate) InterceptAccept(network.ConnMultiaddrs) bool  { return !g.closed.Load() }
func (g *gate) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return !g.closed.Load(), 0
}
func (g *gate) InterceptSecured(_ network.Direction, _ peer.ID, _ network.ConnMultiaddrs) bool {
	return !g.closed.Load()
}

// Move starts a stopped node i again on its data and identity at a new
// address (a fresh port), as a node restarted on another machine would
// be. It returns the node's new listen addresses.
func (c *Cluster) Move(i int) []string {
	c.t.Helper()
	if c.nodes[i] != nil {
		c.t.Fatalf("move node %d: it is running", i)
	}
	psk, err := config.ParseSecret(c.Secret)
	if err != nil {
		c.t.Fatal(err)
	}
	h, err := transport.NewHost(transport.HostConfig{Key: c.keys[i], Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Secret: psk, Gater: c.gates[i]})
	if err != nil {
		c.t.Fatal(err)
	}
	var addrs []string
	for _, a := range h.Addrs() {
		addrs = append(addrs, a.String())
	}
	cfg := *c.configs[i]
	cfg.Listen = addrs
	c.configs[i] = &cfg
	n, err := node.Start(context.Background(), c.nodeOptions(i, h))
	if err != nil {
		_ = h.Close()
		c.t.Fatalf("move node %d: %v", i, err)
	}
	c.nodes[i] = n
	return addrs
}

// Close stops every node.
func (c *Cluster) Close() {
	for i := range c.nodes {
		if c.nodes[i] != nil {
			_ = c.nodes[i].Close()
			c.nodes[i] = nil
		}
	}
}

// ShardFile returns the path of the file of key's newest shard on node i
// (flatfs store): each version has a file of its own, named after it, so
// the newest sorts last.
func (c *Cluster) ShardFile(i int, key string) (string, error) {
	matches, err := filepath.Glob(filepath.Join(c.Dirs[i], "shards", "*", node.ShardNamePrefix(key)+"*.data"))
	if err != nil {
		return "", err
	}
	if len(matches) == 0 {
		return "", fmt.Errorf("node %d: shard file of %q: %w", i, key, os.ErrNotExist)
	}
	// flatfs puts the versions in directories of their own: by file name.
	slices.SortFunc(matches, func(a, b string) int { return strings.Compare(filepath.Base(a), filepath.Base(b)) })
	return matches[len(matches)-1], nil
}

// CorruptShard flips the last byte of the shard file of key on node i (a
// flatfs store), as a rotting disk would: the shard no longer verifies.
func (c *Cluster) CorruptShard(i int, key string) error {
	path, err := c.ShardFile(i, key)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b[len(b)-1] ^= 0xff
	return os.WriteFile(path, b, 0o644)
}

// Owners returns the node indexes holding key's shards, position order.
func (c *Cluster) Owners(key string) []int {
	o := c.Info.Map.Owners(placement.Slot(key))
	out := make([]int, len(o))
	for i, v := range o {
		out[i] = int(v)
	}
	return out
}

// WaitFor polls cond every 100 ms until it holds or d passes, and fails t
// with what and cond's last description then.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s; last: %s", what, d, last)
}

// Settled reports whether the leader's last complete repair pass planned
// for the current map, found every key whole and left no backlog, with a
// description of where the cluster stands.
func (c *Cluster) Settled() (bool, string) {
	l := c.Leader()
	if l < 0 {
		return false, "no leader"
	}
	cur := c.Current()
	st := c.Node(l).RepairStats()
	desc := fmt.Sprintf("leader %d epoch %d target %v; pass epoch %d keys %d degraded %d lost %d backlog %d",
		l, cur.Map.Epoch, cur.Target != nil, st.Epoch, st.Keys, st.Degraded, st.Lost, st.Backlog)
	return cur.Target == nil && st.Settled(cur.Map.Epoch) && st.Keys > 0, desc
}
