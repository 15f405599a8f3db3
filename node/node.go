package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	ds "github.com/ipfs/go-datastore"
	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	bolt "go.etcd.io/bbolt"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/node/raftmap"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/repair"
	"github.com/filedrive-team/go-ds-cluster/transport"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

var log = logging.Logger("dscluster/node")

// idleTimeout closes a stream that sends no request for this long.
const idleTimeout = 10 * time.Minute

// listLimit caps the entries of one list response.
const listLimit = 1000

// batchWorkers bounds the shards of one batch written at once.
const batchWorkers = 8

// Options configure a node.
type Options struct {
	// Dir holds the node's data: volume/ (shards and index), or shards/
	// and index.db with flatfs.
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
	// CompactEvery is how often a store that supports it (the volume store)
	// rewrites volumes that are at least half garbage (default 10 minutes;
	// negative: never).
	CompactEvery time.Duration
	// VolumeSize is the volume store's file size limit (0: its default, 1
	// GiB). Tests make it small so that volumes seal and can be compacted.
	VolumeSize int64

	// HeartbeatInterval is how often the raft leader pings every member
	// (default 1s). A member that misses one ping is down.
	HeartbeatInterval time.Duration
	// OutAfter is how long a member stays down before it is out and its
	// shards are rebuilt elsewhere (default 10 minutes).
	OutAfter time.Duration
	// RepairInterval is how often the leader runs a repair pass (default
	// 30s).
	RepairInterval time.Duration
	// RepairRate limits the shard bytes a repair moves per second (0:
	// unlimited).
	RepairRate float64
	// GarbageGrace is how old a failed write must be before repair drops
	// its shards (0: repair.DefaultGarbageGrace; negative: none). Tests
	// shorten it.
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

// compactor is a shard store that reclaims the space of deleted and
// overwritten shards.
type compactor interface {
	Compact(ctx context.Context, minGarbage float64) (int64, error)
}

// compactLoop compacts the store every interval until the node closes.
func (n *Node) compactLoop(c compactor, every time.Duration) {
	n.every(every, func() {
		freed, err := c.Compact(n.bgCtx, 0.5)
		if err != nil {
			log.Warnw("compaction", "err", err)
			return
		}
		if freed > 0 {
			log.Infow("compacted the shard store", "freed_bytes", freed)
		}
	})
}

// Node is a running dscluster server.
type Node struct {
	cfg   *config.Node
	dir   string
	host  host.Host
	store ds.Datastore
	idx   *index.DB
	shards shardStore   // store and idx, committed together

	cluster atomic.Pointer[config.Cluster]
	initial *config.Cluster // the config's cluster with its members: raft's first entry
	selfID  string          // this node's peer ID string

	locks [256]sync.Mutex // per-key stripes: read-compare-write of one key

	// Raft peers that members vouched for (mayRaft), and when each
	// unknown peer was last asked about.
	vouchMu     sync.Mutex
	vouched     map[peer.ID]bool
	vouchAsked  map[peer.ID]time.Time
	vouchGen    uint64 // bumped by each cluster change
	vouching    int    // checks in flight
	vouchClosed bool
	vouchWG     sync.WaitGroup

	raft   *raftmap.Raft
	driver *repair.Driver
	client *transport.Client // to other nodes: heartbeats, repair, forwarding
	scrub  scrubber

	fwdMu     sync.Mutex
	fwdFailed map[peer.ID]time.Time // rebalance target owners by their last failed forward

	leaderReady    atomic.Bool   // leading, and the FSM has applied all committed entries
	lastDecideWarn time.Time     // control loop only
	announce       announceState // announceAddrs only
	passEpoch      atomic.Uint64 // map epoch of the running repair pass
	featureCache   sync.Map      // peer ID string -> cachedFeatures (featuresOf)

	closeOnce sync.Once
	closed    chan struct{}
	bgCtx     context.Context // cancelled at Close
	bgCancel  context.CancelFunc
	wg        sync.WaitGroup // stream handlers
	bgWG      sync.WaitGroup // background loops, stopped before the stores close
	// streamMu orders handlers joining wg before Close waits on it: an
	// Add racing a Wait from a zero count is a misuse of WaitGroup.
	streamMu      sync.Mutex
	streamsClosed bool
}

// Start opens the node's stores, starts its host and serves the protocol.
func Start(ctx context.Context, opts Options) (*Node, error) {
	if opts.Config == nil {
		return nil, errors.New("node: no config")
	}
	cfg := opts.Config
	opts.setDefaults()
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	n := &Node{cfg: cfg, dir: opts.Dir, closed: make(chan struct{}), vouched: map[peer.ID]bool{}, vouchAsked: map[peer.ID]time.Time{}}
	n.bgCtx, n.bgCancel = context.WithCancel(context.Background())
	n.initial = membership.Init(&cfg.Cluster)
	c := n.initial
	if saved := loadCluster(opts.Dir, c); saved != nil {
		c = saved
	}
	n.cluster.Store(c)

	var err error
	defer func() {
		if err != nil {
			n.closeResources()
		}
	}()
	n.store = opts.Store
	if n.store == nil {
		if n.store, err = openStore(opts.Dir, cfg.Store, !opts.NoSync, opts.VolumeSize); err != nil {
			return nil, err
		}
	}
	if n.idx, n.shards, err = openIndex(opts.Dir, n.store, opts.NoSync); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.host = opts.Host
	if n.host == nil {
		key, kerr := config.DecodePrivKey(cfg.PrivKey)
		if kerr != nil {
			err = fmt.Errorf("node: private key: %w", kerr)
			return nil, err
		}
		psk, perr := config.ParseSecret(cfg.Secret)
		if perr != nil {
			err = fmt.Errorf("node: %w", perr)
			return nil, err
		}
		if n.host, err = transport.NewHost(transport.HostConfig{Key: key, Listen: cfg.Listen, PSK: psk}); err != nil {
			return nil, err
		}
	}
	n.selfID = n.host.ID().String()
	// A restarted node dials the members at their last known addresses
	// before raft tells it more (it must reach them to announce a move).
	n.dialMembers(nil, c)
	if _, inMap := c.Map.NodeIndex(n.selfID); !inMap && len(c.Members) == 0 {
		err = fmt.Errorf("node: this node's peer id %s is not in the cluster map", n.host.ID())
		return nil, err
	}
	n.client = transport.NewClient(n.host, 30*time.Second)
	n.fwdFailed = make(map[peer.ID]time.Time)
	if err = n.startCluster(opts); err != nil {
		return nil, err
	}
	// Requests are served once raft and the repair driver exist: status
	// and membership requests use them.
	n.host.SetStreamHandler(wire.ShardProtocol, n.handleStream)
	if c, ok := n.store.(compactor); ok && opts.CompactEvery > 0 {
		n.bgWG.Add(1)
		go n.compactLoop(c, opts.CompactEvery)
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
	n.closeOnce.Do(func() {
		err = n.closeResources()
		n.wg.Wait()
	})
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
	// The handlers still running finish before the index and the store
	// close under them: a flatfs put stopped between its shard file and
	// its index entry would leave them disagreeing.
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

func (n *Node) handleStream(s network.Stream) {
	n.streamMu.Lock()
	if n.streamsClosed {
		n.streamMu.Unlock()
		_ = s.Reset() // a stream dispatched as the node closed
		return
	}
	n.wg.Add(1)
	n.streamMu.Unlock()
	defer n.wg.Done()
	defer s.Close()
	var buf []byte
	var scratch []byte // shard reads; a response is written before the next read
	out := make([]byte, 0, 256)
	for {
		select {
		case <-n.closed:
			_ = s.Reset()
			return
		default:
		}
		_ = s.SetReadDeadline(time.Now().Add(idleTimeout))
		frame, err := wire.ReadFrame(s, buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, network.ErrReset) {
				log.Debugw("bad frame", "peer", s.Conn().RemotePeer().String(), "err", err)
				if errors.Is(err, wire.ErrMalformed) {
					// Tell the peer why, then close the stream (framing is
					// lost); a close, unlike a reset, lets the answer arrive.
					resp := &wire.Response{Status: wire.StatusBadRequest, Message: err.Error()}
					_ = s.SetWriteDeadline(time.Now().Add(5 * time.Second))
					if _, err := wire.WriteResponse(s, out, resp); err == nil {
						_ = s.CloseWrite()
						return
					}
				}
			}
			_ = s.Reset()
			return
		}
		buf = frame[:0]
		resp := n.serve(context.Background(), s.Conn().RemotePeer(), frame, &scratch)
		_ = s.SetWriteDeadline(time.Now().Add(time.Minute))
		if out, err = wire.WriteResponse(s, out, resp); err != nil {
			_ = s.Reset()
			return
		}
		// Large request frames are not kept around between requests.
		if cap(buf) > 8<<20 {
			buf = nil
		}
	}
}

// serve answers one request frame. It never panics on any input.
// scratch, when not nil, is a buffer a shard read may use for the response
// payload; the caller writes the response before it reuses the buffer.
func (n *Node) serve(ctx context.Context, from peer.ID, frame []byte, scratch *[]byte) (resp *wire.Response) {
	c := n.cluster.Load()
	req, err := wire.DecodeRequest(frame)
	if err != nil {
		op := wire.Op(0)
		if len(frame) > 1 {
			op = wire.Op(frame[1])
		}
		return &wire.Response{Op: op, Status: wire.StatusBadRequest, Message: err.Error(), Epoch: c.Map.Epoch}
	}
	defer func() {
		resp.Op = req.Op
		resp.Epoch = c.Map.Epoch
	}()
	if resp := n.authorize(c, from, req.Op); resp != nil {
		return resp
	}
	if req.Epoch != 0 && req.Epoch < c.Map.Epoch {
		return &wire.Response{Status: wire.StatusStaleEpoch,
			Message: fmt.Sprintf("request made with cluster map epoch %d, this node is at epoch %d: refresh the map", req.Epoch, c.Map.Epoch)}
	}
	switch req.Op {
	case wire.OpPut:
		st, msg, f := n.putShard(ctx, req.Shard, !n.isMember(c, from))
		n.sendForwards(f)
		return &wire.Response{Status: st, Message: msg}
	case wire.OpBatchPut:
		// Shards of a batch are written in parallel: concurrent flatfs
		// writes with fsync go about twice as fast (PERF-LIMITS), and the
		// index commits them as one group.
		rs := make([]wire.BatchResult, len(req.Shards))
		fs := make([]*forward, len(req.Shards))
		keep := !n.isMember(c, from)
		sem := make(chan struct{}, batchWorkers)
		var wg sync.WaitGroup
		for i, sh := range req.Shards {
			sem <- struct{}{}
			wg.Add(1)
			go func(i int, sh []byte) {
				defer func() { <-sem; wg.Done() }()
				rs[i].Status, rs[i].Message, fs[i] = n.putShard(ctx, sh, keep)
			}(i, sh)
		}
		wg.Wait()
		n.sendForwards(fs...)
		return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendBatchPayload(nil, rs)}
	case wire.OpGet:
		if req.Prev {
			return n.getPrev(ctx, req.Key, req.HeaderOnly)
		}
		return n.getShard(ctx, req.Key, req.HeaderOnly, scratch)
	case wire.OpList:
		return n.list(req)
	case wire.OpStatus:
		return n.status(ctx)
	case wire.OpPurge:
		rs := make([]wire.BatchResult, len(req.Purge))
		hold := membership.GCHold(c)
		for i, le := range req.Purge {
			if hold != "" {
				// The front end's description lags this node's.
				rs[i].Status, rs[i].Message = wire.StatusUnavailable, "tombstone kept: "+hold
				continue
			}
			rs[i].Status, rs[i].Message = n.purge(ctx, le)
		}
		return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendBatchPayload(nil, rs)}
	case wire.OpClusterInfo:
		return n.clusterInfo(ctx, from, req.Identity)
	case wire.OpInventory, wire.OpSlotInventory:
		if !n.isMember(c, from) {
			return unauthorized(req.Op, from)
		}
		return n.inventory(req)
	case wire.OpSums:
		if !n.isMember(c, from) {
			return unauthorized(req.Op, from)
		}
		return n.sums()
	case wire.OpDrop:
		if !n.isMember(c, from) {
			return unauthorized(req.Op, from)
		}
		if req.Epoch != 0 && req.Epoch != c.Map.Epoch {
			return &wire.Response{Status: wire.StatusStaleEpoch,
				Message: fmt.Sprintf("drop planned at map epoch %d, this node is at epoch %d", req.Epoch, c.Map.Epoch)}
		}
		rs := make([]wire.BatchResult, len(req.Drop))
		for i, sr := range req.Drop {
			rs[i].Status, rs[i].Message = n.drop(ctx, sr)
		}
		return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendBatchPayload(nil, rs)}
	case wire.OpRepair:
		if !n.isMember(c, from) {
			return unauthorized(req.Op, from)
		}
		st, msg := n.repairOrder(ctx, req.Repair)
		return &wire.Response{Status: st, Message: msg}
	case wire.OpDropPrev, wire.OpUndo, wire.OpSupersede:
		act := n.dropPrev
		switch req.Op {
		case wire.OpUndo:
			act = n.undo
		case wire.OpSupersede:
			act = n.supersede
		}
		rs := make([]wire.BatchResult, len(req.Drop))
		for i, sr := range req.Drop {
			rs[i].Status, rs[i].Message = act(ctx, sr)
		}
		return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendBatchPayload(nil, rs)}
	case wire.OpPing:
		// A node whose shard store failed (an fsync error: the disk is not
		// trusted) stops answering heartbeats, so the cluster marks it
		// down, then out, and rebuilds its shards elsewhere.
		if err := n.storeErr(); err != nil {
			return &wire.Response{Status: wire.StatusUnavailable, Message: fmt.Sprintf("shard store failed, this node takes no writes: %v", err)}
		}
		return &wire.Response{Status: wire.StatusOK}
	case wire.OpMember:
		return n.member(ctx, from, req.Body)
	}
	return &wire.Response{Status: wire.StatusBadRequest, Message: fmt.Sprintf("unsupported op %s", req.Op)}
}

// isMember reports whether peer p is a member of the cluster (a server
// node): only members may list a node's shards or drop them.
func (n *Node) isMember(c *config.Cluster, p peer.ID) bool {
	if p == n.host.ID() {
		return true
	}
	m, ok := c.Member(p.String())
	return ok && m.State != membership.Removed
}

// authorize applies the client roles (DESIGN §6, config.Cluster.Clients)
// to a request of op: nil when from may make it. Reads need a role, writes
// a read-write one (checkRole). Other ops are open to every peer with the
// cluster secret (the cluster description, which dsclient init needs, and
// ping) or checked where they are served (members-only ops, membership
// and role commands).
func (n *Node) authorize(c *config.Cluster, from peer.ID, op wire.Op) *wire.Response {
	var write bool
	switch op {
	case wire.OpGet, wire.OpList, wire.OpStatus:
	case wire.OpPut, wire.OpBatchPut, wire.OpPurge, wire.OpDropPrev, wire.OpUndo, wire.OpSupersede:
		write = true
	default:
		return nil
	}
	return n.checkRole(c, from, op.String(), write)
}

// checkRole returns nil when from may do what (a write when write is set):
// members may do anything; while no client has a role, so may anyone with
// the cluster secret; once one has, a read-only client may only read, and
// a peer without a role nothing.
func (n *Node) checkRole(c *config.Cluster, from peer.ID, what string, write bool) *wire.Response {
	if len(c.Clients) == 0 || n.isMember(c, from) {
		return nil
	}
	id := from.String()
	role, ok := c.ClientRole(id)
	switch {
	case !ok:
		return &wire.Response{Status: wire.StatusUnauthorized, Message: fmt.Sprintf(
			"%s: peer %s has no role in cluster %s; a read-write client grants one with `dsclient client grant %s --role=read-only|read-write`",
			what, id, c.ID, id)}
	case write && role != config.RoleReadWrite:
		return &wire.Response{Status: wire.StatusUnauthorized, Message: fmt.Sprintf("%s: peer %s is a %s client", what, id, role)}
	}
	return nil
}

func unauthorized(op wire.Op, p peer.ID) *wire.Response {
	return &wire.Response{Status: wire.StatusUnauthorized, Message: fmt.Sprintf("%s: peer %s is not a member of the cluster", op, p)}
}

func (n *Node) lock(key string) *sync.Mutex {
	return &n.locks[placement.CRC16([]byte(key))%uint16(len(n.locks))]
}

func toIndexVersion(v coding.Version) index.Version {
	return index.Version{HLC: v.HLC, Writer: v.Writer}
}

// putShard stores a shard. keep says whether to keep the shard of a value
// it replaces (keepPrev): for writers, whose write may fail, not for the
// members' repair copies and forwards, which carry readable versions. For a
// writer's shard that this node holds once the put is done, at a position
// a rebalance moves to another node, it returns the copy to send there
// (sendForwards) before the request is answered; members' copies are the
// repair worker's, which plans the new owners' own, so two nodes whose
// views of the target differ never copy a shard back and forth.
func (n *Node) putShard(ctx context.Context, raw []byte, keep bool) (wire.Status, string, *forward) {
	if len(raw) > wire.MaxShard {
		// Stored, it could never be served: its get response would not fit.
		return wire.StatusTooLarge, fmt.Sprintf("put: shard of %d bytes exceeds the limit of %d", len(raw), wire.MaxShard), nil
	}
	sh, err := coding.ParseShard(raw)
	if err != nil {
		return wire.StatusCorrupt, fmt.Sprintf("put: %v", err), nil
	}
	h := &sh.Header
	c := n.cluster.Load()
	slot := placement.Slot(h.Key)
	if !c.Owns(n.selfID, slot, int(h.Index)) {
		return wire.StatusBadRequest, fmt.Sprintf("put %q: shard %d of slot %d does not belong to this node at epoch %d", h.Key, h.Index, slot, c.Map.Epoch), nil
	}
	st, msg, holds := n.putShardLocked(ctx, raw, sh, keep)
	if holds && keep {
		return st, msg, n.targetCopy(c, slot, int(h.Index), raw)
	}
	return st, msg, nil
}

// putShardLocked is putShard's store of the parsed shard sh, under its
// key's lock. holds reports that the node holds sh's version at sh's
// position once it is done: it stored sh, or held it already (a retry).
func (n *Node) putShardLocked(ctx context.Context, raw []byte, sh *coding.Shard, keep bool) (st wire.Status, msg string, holds bool) {
	h := &sh.Header
	mu := n.lock(h.Key)
	mu.Lock()
	defer mu.Unlock()
	old, err := n.idx.Get(h.Key)
	if errors.Is(err, index.ErrCorrupt) {
		n.purgeCorrupt()
		old, err = n.idx.Get(h.Key)
	}
	e := entryOf(sh)
	var drop []index.Version // shards that go with this change
	switch {
	case err == nil:
		if st, msg, held := heldAnswer(old, h); held {
			same := st == wire.StatusOK && old.Version == e.Version
			if keep && same && !old.Prev.IsZero() {
				// The writer's put again (a retry after a lost answer):
				// it must still learn that the node kept the replaced
				// value's shard, to have it dropped once the write is
				// acknowledged or put back if it fails.
				return wire.StatusOK, wire.PrevKept, true
			}
			return st, msg, same
		}
		drop = append(drop, old.Prev) // one previous version is kept, no more
		if keep && !old.Tombstone && !h.Tombstone {
			e.Prev = old.Version
		} else if !old.Tombstone {
			drop = append(drop, old.Version)
		}
	case errors.Is(err, index.ErrNotFound):
	default:
		return wire.StatusInternal, fmt.Sprintf("put %q: index: %v", h.Key, err), false
	}
	if err := n.storeShard(ctx, raw, e, drop); err != nil {
		return wire.StatusInternal, fmt.Sprintf("put %q: %v", h.Key, err), false
	}
	if !e.Prev.IsZero() {
		return wire.StatusOK, wire.PrevKept, true
	}
	return wire.StatusOK, "", true
}

// entryOf is the index entry of shard sh.
func entryOf(sh *coding.Shard) index.Entry {
	h := &sh.Header
	return index.Entry{
		Key:       h.Key,
		Slot:      placement.Slot(h.Key),
		Index:     h.Index,
		Kind:      uint8(h.Policy.Kind),
		K:         uint8(h.Policy.DataShards),
		M:         uint8(h.Policy.ParityShards),
		Tombstone: h.Tombstone,
		ValueLen:  h.ValueLen,
		ShardLen:  uint32(len(sh.Data)),
		ShardSum:  h.ShardSum,
		Version:   toIndexVersion(h.Version),
	}
}

// dropPrev drops key's previous shard once the version that replaced it
// (sr's) was acknowledged, if the node still holds that version.
func (n *Node) dropPrev(ctx context.Context, sr wire.ShardRef) (wire.Status, string) {
	mu := n.lock(sr.Key)
	mu.Lock()
	defer mu.Unlock()
	e, err := n.idx.Get(sr.Key)
	if err != nil || e.Version != (index.Version{HLC: sr.HLC, Writer: sr.Writer}) {
		return wire.StatusOK, "kept: not that version"
	}
	if e.Prev.IsZero() {
		return wire.StatusOK, ""
	}
	prev := e.Prev
	e.Prev = index.Version{}
	if err := n.change(ctx, e.Key, []index.Version{prev}, func(tx *bolt.Tx) error { return n.idx.ReplaceTx(tx, e) }); err != nil {
		return wire.StatusInternal, fmt.Sprintf("drop-prev %q: %v", sr.Key, err)
	}
	return wire.StatusOK, ""
}

// errBadPrev marks a previous shard that does not parse or holds another
// key or version than its entry names.
var errBadPrev = errors.New("bad previous shard")

// readPrev reads and parses key's previous shard (index.Entry.Prev):
// ds.ErrNotFound when the node keeps none, an error wrapping errBadPrev
// when it is not that shard, any other error from the index or the store.
func (n *Node) readPrev(ctx context.Context, key string) ([]byte, *coding.Shard, error) {
	e, err := n.idx.Get(key)
	switch {
	case errors.Is(err, index.ErrNotFound) || (err == nil && e.Prev.IsZero()):
		return nil, nil, ds.ErrNotFound
	case err != nil:
		return nil, nil, err
	}
	raw, _, err := n.shards.get(ctx, shardName(key, e.Prev), nil)
	if err != nil {
		return nil, nil, err
	}
	sh, err := coding.ParseShard(raw)
	switch {
	case err != nil:
	case sh.Header.Key != key:
		err = fmt.Errorf("shard holds key %q", sh.Header.Key)
	case toIndexVersion(sh.Header.Version) != e.Prev:
		err = fmt.Errorf("shard of version %s, the index names %d.%d", sh.Header.Version, e.Prev.HLC, e.Prev.Writer)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errBadPrev, err)
	}
	return raw, sh, nil
}

// getPrev answers a read of key's previous shard (keepPrev).
func (n *Node) getPrev(ctx context.Context, key string, headerOnly bool) *wire.Response {
	raw, sh, err := n.readPrev(ctx, key)
	switch {
	case errors.Is(err, ds.ErrNotFound):
		return &wire.Response{Status: wire.StatusNotFound}
	case errors.Is(err, errBadPrev):
		return &wire.Response{Status: wire.StatusCorrupt, Message: fmt.Sprintf("get previous %q: %v", key, err)}
	case err != nil:
		return &wire.Response{Status: wire.StatusInternal, Message: fmt.Sprintf("get previous %q: shard store: %v", key, err)}
	}
	if !headerOnly {
		return &wire.Response{Status: wire.StatusOK, Payload: raw}
	}
	h := &sh.Header
	he := wire.HeaderEntry{
		ListEntry: wire.ListEntry{Key: key, HLC: h.Version.HLC, Writer: h.Version.Writer, ValueLen: h.ValueLen},
		Index:     h.Index, Kind: uint8(h.Policy.Kind), K: uint8(h.Policy.DataShards), M: uint8(h.Policy.ParityShards),
	}
	return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendHeaderPayload(nil, he)}
}

// heldAnswer is the answer to a put of shard h when the node already holds
// old for the key, and held is true, or held is false when h is newer and
// must be stored. An equal version is stored already, which a retried put
// is told with OK, but only at the same position: a node keeps one shard
// per key, and during a rebalance it may own one position of the slot in
// the map and another in the target. Holding shard q of a version does not
// store shard p of it, so that put is refused (the writer must not count it
// toward its quorum).
func heldAnswer(old index.Entry, h *coding.Header) (st wire.Status, msg string, held bool) {
	in := toIndexVersion(h.Version)
	switch {
	case old.Version.Less(in):
		return 0, "", false
	case old.Version == in && old.Index != h.Index:
		return wire.StatusBadRequest, fmt.Sprintf("put %q: this node holds shard %d of version %s, not shard %d (it keeps one shard per key)",
			h.Key, old.Index, h.Version, h.Index), true
	default:
		return wire.StatusOK, wire.Superseded(old.Version.HLC, old.Version.Writer), true
	}
}

// errNewerHeld refuses to store a shard whose index entry would not be
// stored because the index holds a newer or equal version.
var errNewerHeld = errors.New("the index holds a newer version")

// storeShard makes shard raw and its index entry e durable, and drops the
// shards of the versions in drop, as one change (see change). A tombstone
// lives in the index alone (its shard is rebuilt from the entry on read),
// so a delete stores no shard.
func (n *Node) storeShard(ctx context.Context, raw []byte, e index.Entry, drop []index.Version) error {
	indexTx := func(tx *bolt.Tx) error {
		stored, err := n.idx.PutTx(tx, e)
		if err == nil && !stored {
			// The key's lock makes this impossible today; should it
			// happen, the older shard must not replace the newer one.
			err = errNewerHeld
		}
		return err
	}
	if e.Tombstone {
		raw = nil
	}
	return n.commit(ctx, e.Key, shardName(e.Key, e.Version), raw, drop, indexTx)
}

// change is commit with no shard to store: index entries change and the
// shards of the versions in drop go.
func (n *Node) change(ctx context.Context, key string, drop []index.Version, indexTx func(*bolt.Tx) error) error {
	return n.commit(ctx, key, ds.Key{}, nil, drop, indexTx)
}

// commit is the shard store's commit of raw under name, with the shards
// of key's versions in drop (zero versions are skipped).
func (n *Node) commit(ctx context.Context, key string, name ds.Key, raw []byte, drop []index.Version, indexTx func(*bolt.Tx) error) error {
	var names []ds.Key
	for _, v := range drop {
		if !v.IsZero() {
			names = append(names, shardName(key, v))
		}
	}
	if err := n.shards.commit(ctx, name, raw, names, indexTx); err != nil {
		return fmt.Errorf("shard store: %w", err)
	}
	return nil
}

// maxScratch keeps the buffers of huge shards from staying with a stream.
const maxScratch = 4 << 20

func (n *Node) getShard(ctx context.Context, key string, headerOnly bool, scratch *[]byte) *wire.Response {
	resp := n.readShard(ctx, key, headerOnly, scratch)
	if resp.Status != wire.StatusCorrupt {
		return resp
	}
	// Reads take no lock, so an overwrite or delete of key may have run
	// between reading its index entry and its shard. Look again under the
	// key's lock, which writes hold, before calling the shard corrupt.
	mu := n.lock(key)
	mu.Lock()
	defer mu.Unlock()
	if resp = n.readShard(ctx, key, headerOnly, scratch); resp.Status == wire.StatusCorrupt {
		log.Warnw("corrupt shard", "key", key, "err", resp.Message)
	}
	return resp
}

// readShard reads key's index entry, then its shard, and checks that they
// agree.
func (n *Node) readShard(ctx context.Context, key string, headerOnly bool, scratch *[]byte) *wire.Response {
	e, err := n.idx.Get(key)
	if errors.Is(err, index.ErrNotFound) {
		return &wire.Response{Status: wire.StatusNotFound}
	}
	if err != nil {
		return &wire.Response{Status: wire.StatusInternal, Message: fmt.Sprintf("get %q: index: %v", key, err)}
	}
	if headerOnly {
		h := wire.HeaderEntry{ListEntry: listEntry(e), Index: e.Index, Kind: e.Kind, K: e.K, M: e.M}
		return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendHeaderPayload(nil, h)}
	}
	if e.Tombstone {
		return &wire.Response{Status: wire.StatusOK, Payload: tombstoneShard(e)}
	}
	var buf []byte
	if scratch != nil {
		buf = *scratch
	}
	raw, grown, err := n.shards.get(ctx, shardName(key, e.Version), buf)
	if scratch != nil && cap(grown) <= maxScratch {
		*scratch = grown[:0]
	}
	if errors.Is(err, ds.ErrNotFound) {
		return &wire.Response{Status: wire.StatusCorrupt, Message: fmt.Sprintf("get %q: shard file missing", key)}
	}
	if err != nil {
		return &wire.Response{Status: wire.StatusInternal, Message: fmt.Sprintf("get %q: shard store: %v", key, err)}
	}
	sh, err := coding.ParseShard(raw)
	if err == nil && sh.Header.Key != key {
		err = fmt.Errorf("shard holds key %q", sh.Header.Key)
	}
	if err == nil && sh.Header.Version != (coding.Version{HLC: e.Version.HLC, Writer: e.Version.Writer}) {
		err = fmt.Errorf("shard version %s does not match the index", sh.Header.Version)
	}
	if err != nil {
		return &wire.Response{Status: wire.StatusCorrupt, Message: fmt.Sprintf("get %q: %v", key, err)}
	}
	return &wire.Response{Status: wire.StatusOK, Payload: raw}
}

// purge drops key's index entry if it is still the tombstone of version
// (le.HLC, le.Writer): a newer write that arrived meanwhile is kept.
func (n *Node) purge(ctx context.Context, le wire.ListEntry) (wire.Status, string) {
	return n.removeIf(ctx, "purge", le.Key, func(e index.Entry) string {
		if !e.Tombstone || e.Version != (index.Version{HLC: le.HLC, Writer: le.Writer}) {
			return "not that tombstone"
		}
		return ""
	})
}

// policyOf is the policy an index entry or a wire message gives as bytes.
func policyOf(kind, k, m uint8) coding.Policy {
	return coding.Policy{Kind: coding.Kind(kind), DataShards: int(k), ParityShards: int(m)}
}

// tombstoneShard rebuilds the shard of a tombstone from its index entry.
func tombstoneShard(e index.Entry) []byte {
	p := policyOf(e.Kind, e.K, e.M)
	v := coding.Version{HLC: e.Version.HLC, Writer: e.Version.Writer}
	shards := coding.Tombstone(e.Key, p, v)
	if int(e.Index) >= len(shards) {
		return nil
	}
	return shards[e.Index].AppendBinary(nil)
}

func listEntry(e index.Entry) wire.ListEntry {
	return wire.ListEntry{Key: e.Key, HLC: e.Version.HLC, Writer: e.Version.Writer, Tombstone: e.Tombstone, ValueLen: e.ValueLen}
}

func (n *Node) list(req *wire.Request) *wire.Response {
	limit := int(req.Limit)
	if limit <= 0 || limit > listLimit {
		limit = listLimit
	}
	es, err := n.idx.ListPrefix(req.Prefix, req.After, limit+1)
	if err != nil {
		return &wire.Response{Status: wire.StatusInternal, Message: fmt.Sprintf("list: %v", err)}
	}
	more := len(es) > limit
	if more {
		es = es[:limit]
	}
	out := make([]wire.ListEntry, len(es))
	for i, e := range es {
		out[i] = listEntry(e)
	}
	return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendListPayload(nil, out, more)}
}

// Status is what a node reports about itself (OpStatus payload, JSON).
type Status struct {
	Peer       string `json:"peer"`
	Identity   int    `json:"identity"`
	Epoch      uint64 `json:"epoch"`
	Keys       int    `json:"keys"`
	Tombstones int    `json:"tombstones"`
	ShardBytes uint64 `json:"shard_bytes"`
	DiskUsage  uint64 `json:"disk_usage"`
	Store      string `json:"store"`
	// State is this node's membership state as its raft replica knows it.
	State string `json:"state"`
	// Leader is the raft leader's peer ID, as this node knows it.
	Leader   string `json:"leader,omitempty"`
	IsLeader bool   `json:"is_leader"`
	// Repair is this node's repair driver's figures. Only the leader runs
	// passes; the totals are kept across restarts and leaderships.
	Repair *repair.Stats `json:"repair,omitempty"`
	Scrub  ScrubStats    `json:"scrub"`
	// StoreError is why the shard store takes no more writes (a failed
	// fsync); empty while it works. Such a node answers no heartbeat.
	StoreError string `json:"store_error,omitempty"`
	// Clients is the number of client roles this node applies (a grant
	// reaches each node through the raft log).
	Clients int `json:"clients"`
	// Features are what this node's version does that older ones do not
	// (see Features).
	Features []string `json:"features"`
}

// Features this version has, as Status reports them: a leader checks
// them before it proposes a command that a replica of an older version
// would apply differently, and a repair leader before it sends repair
// orders or roll-backs (featuresOf).
const (
	// FeatureRoles: the node applies client role commands (grant, revoke,
	// admit). A node without it rejects them as unknown, so its replica of
	// the cluster description would part from the others'.
	FeatureRoles = "client-roles"
	// FeatureRepairOrders: the node takes wire.OpRepair.
	FeatureRepairOrders = "repair-orders"
	// FeatureRestoreDrops: on a drop with Restore the node puts its
	// previous shard back. A node without it deletes both, so repair
	// sends it no roll-back.
	FeatureRestoreDrops = "restore-drops"
)

var features = []string{FeatureRoles, FeatureRepairOrders, FeatureRestoreDrops}

// Stat gathers the node's Status.
func (n *Node) Stat(ctx context.Context) (*Status, error) {
	st, err := n.idx.Stats()
	if err != nil {
		return nil, err
	}
	c := n.cluster.Load()
	s := &Status{
		Peer: n.host.ID().String(), Identity: n.cfg.Identity, Epoch: c.Map.Epoch,
		Keys: st.Keys, Tombstones: st.Tombstones, ShardBytes: st.ShardBytes, Store: n.cfg.Store,
		Clients: len(c.Clients), Features: features,
	}
	if pd, ok := n.store.(ds.PersistentDatastore); ok {
		if du, err := pd.DiskUsage(ctx); err == nil {
			s.DiskUsage = du
		}
	}
	if m, ok := c.Member(n.selfID); ok {
		s.State = m.State
	}
	if l, ok := n.raft.Leader(); ok {
		s.Leader = l.String()
	}
	s.IsLeader = n.raft.IsLeader()
	rs := n.driver.Stats()
	s.Repair = &rs
	n.scrub.mu.Lock()
	s.Scrub = n.scrub.last
	n.scrub.mu.Unlock()
	if err := n.storeErr(); err != nil {
		s.StoreError = err.Error()
	}
	return s, nil
}

// storeErr reports why the shard store takes no more writes, or nil. Only
// the volume store knows (volume.Store.Err): a failed fsync stops it.
func (n *Node) storeErr() error {
	if e, ok := n.store.(interface{ Err() error }); ok {
		return e.Err()
	}
	return nil
}

func (n *Node) status(ctx context.Context) *wire.Response {
	s, err := n.Stat(ctx)
	if err != nil {
		return &wire.Response{Status: wire.StatusInternal, Message: fmt.Sprintf("status: %v", err)}
	}
	b, _ := json.Marshal(s)
	return &wire.Response{Status: wire.StatusOK, Payload: b}
}

// ClientIdentity asks OpClusterInfo for the cluster description only.
const ClientIdentity = -1

func (n *Node) clusterInfo(ctx context.Context, from peer.ID, identity int32) *wire.Response {
	c := n.cluster.Load()
	if identity == ClientIdentity {
		b, err := json.Marshal(c)
		if err != nil {
			return &wire.Response{Status: wire.StatusInternal, Message: err.Error()}
		}
		return &wire.Response{Status: wire.StatusOK, Payload: b}
	}
	if len(n.cfg.Identities) == 0 {
		return &wire.Response{Status: wire.StatusNotFound, Message: "this node is not the bootstrapper: it holds no identities"}
	}
	// An identity is a member's private key: once client roles are
	// enforced, the cluster secret is not enough to take one.
	if len(c.Clients) > 0 {
		return &wire.Response{Status: wire.StatusUnauthorized, Message: fmt.Sprintf(
			"identity %d: the bootstrapper hands out no node identities once client roles are enforced; "+
				"start the initial nodes before the first grant, or add a node as a new one (dsclient node admit)", identity)}
	}
	// An identity's config carries the initial cluster, as dscfg wrote it:
	// the initial raft voters bootstrap from it, all with the same list.
	// The node learns the current map from raft.
	c = &n.cfg.Cluster
	if identity < 0 || int(identity) >= len(n.cfg.Identities) || int(identity) >= len(c.Map.Nodes) {
		return &wire.Response{Status: wire.StatusNotFound, Message: fmt.Sprintf("identity %d does not exist: the cluster has identities 0..%d", identity, len(n.cfg.Identities)-1)}
	}
	// Two processes with one identity would answer as one node, each
	// holding some of its shards: an identity that runs is not handed out.
	id := c.Map.Nodes[identity].ID
	if id == n.selfID {
		return &wire.Response{Status: wire.StatusBadRequest, Message: fmt.Sprintf("identity %d is this bootstrapper's own", identity)}
	}
	if pid, err := peer.Decode(id); err == nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := n.client.Do(pctx, pid, &wire.Request{Op: wire.OpPing})
		cancel()
		if err == nil && resp.Status == wire.StatusOK {
			return &wire.Response{Status: wire.StatusBadRequest, Message: fmt.Sprintf(
				"identity %d (%s) answers at its addresses: another process runs it", identity, id)}
		}
	}
	nc := config.Node{
		Version:  config.FormatVersion,
		Identity: int(identity),
		PrivKey:  n.cfg.Identities[identity],
		Listen:   c.Map.Nodes[identity].Addrs,
		Secret:   n.cfg.Secret,
		Store:    n.cfg.Store,
		Cluster:  *c,
	}
	b, err := json.Marshal(&nc)
	if err != nil {
		return &wire.Response{Status: wire.StatusInternal, Message: err.Error()}
	}
	log.Infow("handed out identity", "identity", identity, "to", from.String())
	return &wire.Response{Status: wire.StatusOK, Payload: b}
}
