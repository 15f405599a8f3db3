package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	ds "github.com/ipfs/go-datastore"
	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/node/raftmap"
	"github.com/filedrive-team/go-ds-cluster/repair"
	"github.com/filedrive-team/go-ds-cluster/transport"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

var log = logging.Logger("dscluster/node")

const (
	idleTimeout  = 10 * time.Minute // closes a stream that sends no request for this long
	listLimit    = 1000             // caps the entries of one list response
	batchWorkers = 8                // bounds the shards of one batch written at once
)

// Options configure a node.
type Options struct {
	// Dir holds the node's data: volume/ (shards and index), or index.db
	// and, with flatfs, shards/.
	Dir string
	// Config is the node's validated config.
	Config *config.Node
	// Host, when set, is used instead of a host built from Config (tests
	// build hosts first to learn their ports). The node closes it.
	Host host.Host
	// Store, when set, replaces the flatfs shard store (fault injection).
	// The node closes it.
	Store ds.Datastore
	// NoSync skips fsync in the shard store and the index. Tests only: an
	// acknowledged write is then not durable.
	NoSync bool
	// CompactEvery is how often the volume store rewrites volumes that are
	// at least half garbage (default 10 minutes; negative: never).
	CompactEvery time.Duration
	// VolumeSize is the volume store's file size limit (0: its default).
	VolumeSize int64
	// MongoDB is the URI of the database that keeps the shards when the
	// config's store is "mongodb" (dscluster --mongodb).
	MongoDB string

	// HeartbeatInterval is how often the raft leader pings every member
	// (default 1s). A member that misses one ping is down.
	HeartbeatInterval time.Duration
	// OutAfter is how long a member stays down before it is out and its
	// shards are rebuilt elsewhere (default 10 minutes).
	OutAfter time.Duration
	// RepairInterval is how often the leader runs a repair pass (default 30s).
	RepairInterval time.Duration
	// RepairRate limits the shard bytes repair moves per second (0: none).
	RepairRate float64
	// GarbageGrace is how old a failed write must be before repair drops
	// its shards (0: repair.DefaultGarbageGrace; negative: none).
	GarbageGrace time.Duration
	// ScrubInterval is how often the node reads and verifies every shard it
	// holds (default 24h; negative: never).
	ScrubInterval time.Duration
	// RaftTiming overrides raft's timeouts (tests).
	RaftTiming raftmap.Timing
}

// Option defaults.
const (
	DefaultHeartbeatInterval = time.Second
	DefaultOutAfter          = 10 * time.Minute
	DefaultRepairInterval    = 30 * time.Second
	DefaultScrubInterval     = 24 * time.Hour
	DefaultCompactEvery      = 10 * time.Minute
)

func (o *Options) setDefaults() {
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if o.OutAfter <= 0 {
		o.OutAfter = DefaultOutAfter
	}
	if o.RepairInterval <= 0 {
		o.RepairInterval = DefaultRepairInterval
	}
	if o.ScrubInterval == 0 {
		o.ScrubInterval = DefaultScrubInterval
	}
	if o.CompactEvery == 0 {
		o.CompactEvery = DefaultCompactEvery
	}
}

// compactor is a shard store that reclaims dead space (the volume store).
type compactor interface {
	Compact(ctx context.Context, minGarbage float64) (int64, error)
}

// Node is a running dscluster server.
type Node struct {
	cfg    *config.Node
	dir    string
	host   host.Host
	store  ds.Datastore
	idx    *index.DB
	shards shardStore // store and idx, committed together

	cluster atomic.Pointer[config.Cluster]
	members atomic.Pointer[members] // of the newest description isMember was asked about
	initial *config.Cluster         // the config's cluster with its members: raft's first entry
	selfID  string                  // this node's peer ID string

	locks [256]sync.Mutex // per-key stripes: read-compare-write of one key

	// mayRaft's peers vouched for, and when each was asked about.
	vouchMu     sync.Mutex
	vouched     map[peer.ID]bool
	vouchAsked  map[peer.ID]time.Time
	vouchGen    uint64 // bumped by each cluster change
	vouching    int    // checks in flight
	vouchClosed bool
	vouchWG     sync.WaitGroup

	raft    *raftmap.Raft
	driver  *repair.Driver
	client  *transport.Client // to other nodes: heartbeats, repair, forwarding
	scrub   scrubber
	metrics *metrics

	fwdMu     sync.Mutex
	fwdFailed map[peer.ID]time.Time // rebalance target owners by their last failed forward

	leaderReady    atomic.Bool   // leading, and the FSM has applied all committed entries
	lastDecideWarn time.Time     // control loop only
	announce       announceState // announceAddrs only
	passEpoch      atomic.Uint64 // map epoch of the running repair pass

	closeOnce sync.Once
	closed    chan struct{}
	bgCtx     context.Context // cancelled at Close
	bgCancel  context.CancelFunc
	wg        sync.WaitGroup // stream handlers
	bgWG      sync.WaitGroup // background loops, stopped before the stores close
	// streamMu orders handlers' wg.Add before Close's Wait: WaitGroup
	// forbids an Add racing a Wait at zero.
	streamMu      sync.Mutex
	streamsClosed bool
}

// Start opens the node's stores, starts its host and serves the protocol.
func Start(ctx context.Context, opts Options) (_ *Node, err error) {
	if opts.Config == nil {
		return nil, errors.New("node: no config")
	}
	cfg := opts.Config
	opts.setDefaults()
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	n := &Node{cfg: cfg, dir: opts.Dir, closed: make(chan struct{}), vouched: map[peer.ID]bool{}, vouchAsked: map[peer.ID]time.Time{}, fwdFailed: map[peer.ID]time.Time{}}
	n.bgCtx, n.bgCancel = context.WithCancel(context.Background())
	n.initial = membership.Init(&cfg.Cluster)
	c := n.initial
	if saved := loadCluster(opts.Dir, c); saved != nil {
		c = saved
	}
	n.cluster.Store(c)

	defer func() {
		if err != nil {
			n.closeResources()
		}
	}()
	if n.store = opts.Store; n.store == nil {
		if n.store, err = openStore(ctx, cfg, opts); err != nil {
			return nil, err
		}
	}
	if n.idx, n.shards, err = openIndex(opts.Dir, n.store, opts.NoSync); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if n.host = opts.Host; n.host == nil {
		key, err := config.DecodePrivKey(cfg.PrivKey)
		if err != nil {
			return nil, fmt.Errorf("node: private key: %w", err)
		}
		psk, err := config.ParseSecret(cfg.Secret)
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		if n.host, err = transport.NewHost(transport.HostConfig{Key: key, Listen: cfg.Listen, Secret: psk}); err != nil {
			return nil, err
		}
	}
	n.selfID = n.host.ID().String()
	// A restarted node must reach the members at their last known
	// addresses before raft runs, to announce a move.
	n.dialMembers(nil, c)
	if _, inMap := c.Map.NodeIndex(n.selfID); !inMap && len(c.Members) == 0 {
		return nil, fmt.Errorf("node: this node's peer id %s is not in the cluster map", n.host.ID())
	}
	n.client = transport.NewClient(n.host, 30*time.Second)
	if err = n.startCluster(opts); err != nil {
		return nil, err
	}
	// Requests use raft and the repair driver: serve once they exist.
	n.metrics = newMetrics(n)
	n.host.SetStreamHandler(wire.ShardProtocol, n.handleStream)
	if c, ok := n.store.(compactor); ok && opts.CompactEvery > 0 {
		n.every(opts.CompactEvery, func() {
			freed, err := c.Compact(n.bgCtx, 0.5)
			if err != nil {
				log.Warnw("compaction", "err", err)
			} else if freed > 0 {
				log.Infow("compacted the shard store", "freed_bytes", freed)
			}
		})
	}
	log.Infow("node ready", "identity", cfg.Identity, "peer", n.host.ID().String(), "addrs", n.host.Addrs(), "policy", c.Policy.String(), "epoch", c.Map.Epoch)
	return n, nil
}

// ID is the node's peer ID.
func (n *Node) ID() peer.ID { return n.host.ID() }

// Addrs are the node's listen addresses.
func (n *Node) Addrs() []ma.Multiaddr { return n.host.Addrs() }

// Host is the node's libp2p host.
func (n *Node) Host() host.Host { return n.host }

// IsLeader reports whether this node is the raft leader.
func (n *Node) IsLeader() bool { return n.raft.IsLeader() }

// RepairStats are the repair driver's figures (meaningful on the leader).
func (n *Node) RepairStats() repair.Stats { return n.driver.Stats() }

// Cluster is the node's current view of the cluster.
func (n *Node) Cluster() *config.Cluster { return n.cluster.Load() }

// Close stops serving and closes the host and the stores.
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() { err = n.closeResources() })
	return err
}

func (n *Node) closeResources() error {
	close(n.closed)
	n.bgCancel()
	n.bgWG.Wait()
	n.vouchMu.Lock()
	n.vouchClosed = true
	n.vouchMu.Unlock()
	n.vouchWG.Wait()
	if n.host != nil {
		n.host.RemoveStreamHandler(wire.ShardProtocol)
	}
	var errs []error
	if n.raft != nil {
		errs = append(errs, n.raft.Close())
	}
	if n.client != nil {
		n.client.Close()
	}
	if n.driver != nil {
		errs = append(errs, n.driver.Close())
	}
	if n.host != nil {
		errs = append(errs, n.host.Close())
	}
	// Running handlers finish before the stores close under them.
	n.streamMu.Lock()
	n.streamsClosed = true
	n.streamMu.Unlock()
	n.wg.Wait()
	if n.idx != nil {
		errs = append(errs, n.idx.Close())
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	return errors.Join(errs...)
}

// FeatureRoles is the feature (Status.Features) of a node that applies
// client role commands (grant, revoke, admit): a node without it rejects
// them, and its replica parts. A leader checks features before it proposes
// a command an older replica would apply differently; shard ops need none,
// for an older wire version cannot serve them.
const FeatureRoles = "client-roles"
