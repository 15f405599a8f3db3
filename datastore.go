package dscluster

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	ds "github.com/ipfs/go-datastore"
	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/transport"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

var log = logging.Logger("dscluster")

// MaxValueSize is the largest value Put accepts.
const MaxValueSize = 64 << 20

var (
	_ ds.Batching            = (*Datastore)(nil)
	_ ds.PersistentDatastore = (*Datastore)(nil)
	_ ds.CheckedDatastore    = (*Datastore)(nil)
)

// Options tune a Datastore. The zero value is valid.
type Options struct {
	// Timeout bounds one request to one node, even under a later ctx
	// deadline. Default: the client config's timeout with Open, else 30s.
	Timeout time.Duration
	// BatchConcurrency is how many operations a Batch commits at once
	// (default 16).
	BatchConcurrency int
	// TombstoneGrace is the age a tombstone must reach before
	// CollectGarbage purges it (default DefaultTombstoneGrace; negative: 0).
	TombstoneGrace time.Duration
	// Policy, when set, replaces the cluster's erasure policy for this front
	// end (its width must fit the map). Only front ends with the same
	// policy read its values back; benchmarks use it to compare policies.
	Policy coding.Policy
	// Down lists map node indexes this front end never contacts, to
	// measure degraded reads without stopping nodes.
	Down []int
	// SkipCIDCheck turns off Get's check of a value read under a block key
	// against the multihash the key names, which costs about a hash of the
	// value (BenchmarkCIDCheck). Bytes that fail it count as a corrupt value
	// and are never served. Shard and value checksums are checked
	// regardless. Open also sets it for skip_cid_check.
	SkipCIDCheck bool
	// Metrics, when set, is where the front end registers its Prometheus
	// metrics. A second front end registered with the same registry keeps
	// its metrics unexported.
	Metrics prometheus.Registerer
	// Namespace, when set, keeps this front end's keys apart: key K is
	// stored as /ns/NAME/K, and Query and DiskUsage see the namespace's keys
	// only. Without one a front end sees every key under its stored name.
	// Default: the client config's namespace with Open.
	Namespace string
	// HedgeAfter is how long a read waits for a node before it asks the
	// next positions as well, and how long a write that has its quorum
	// waits for the remaining nodes (their shards are still sent). Default:
	// the client config's hedge_after with Open, else DefaultHedgeAfter;
	// negative: not before Timeout.
	HedgeAfter time.Duration
}

// DefaultHedgeAfter is Options.HedgeAfter's default: well above a loaded
// node's p999 on a LAN (tens of milliseconds), far below Timeout.
const DefaultHedgeAfter = 250 * time.Millisecond

func (o *Options) withDefaults() Options {
	var out Options
	if o != nil {
		out = *o
	}
	if out.Timeout <= 0 {
		out.Timeout = transport.DefaultTimeout
	}
	if out.BatchConcurrency <= 0 {
		out.BatchConcurrency = 16
	}
	switch {
	case out.HedgeAfter == 0:
		out.HedgeAfter = DefaultHedgeAfter
	case out.HedgeAfter < 0:
		out.HedgeAfter = out.Timeout
	}
	switch {
	case out.TombstoneGrace == 0:
		out.TombstoneGrace = DefaultTombstoneGrace
	case out.TombstoneGrace < 0:
		out.TombstoneGrace = 0
	}
	return out
}

// view is one immutable cluster description with resolved peer IDs.
type view struct {
	c     *config.Cluster
	peers []peer.ID // by map node index
	down  []bool    // by map node index: Options.Down
}

func (v *view) nodeName(i int) string { return nodeName(i, v.peers[i].String()) }

// nodeName names map node i with peer ID id as errors show it: the index
// and the tail of the ID.
func nodeName(i int, id string) string {
	if len(id) > 10 {
		id = "…" + id[len(id)-6:]
	}
	return fmt.Sprintf("node %d (%s)", i, id)
}

// Datastore is the cluster front end. See the package doc.
type Datastore struct {
	id      peer.ID
	opts    Options
	ns      string // "/ns/NAME" for Options.Namespace, or ""
	client  *transport.Client
	ownHost bool
	view    atomic.Pointer[view]
	clock   *coding.Clock

	refreshMu sync.Mutex
	degraded  degradedLog
	notices   notices // the writer's batched notices (notices.go)
	metrics   *clientMetrics

	lastLookup     atomic.Int64 // unix ns of lookupAddrs' last lookup
	lastFillLookup atomic.Int64 // unix ns of lookUpFilled's last lookup
	bgMu           sync.Mutex   // orders bg.Add after Close's cancel
	bgCtx          context.Context
	bgCancel       context.CancelFunc
	bg             sync.WaitGroup
}

// addrLookupEvery bounds how often failed dials refetch the description.
const addrLookupEvery = 5 * time.Second

// Open connects to the cluster that cfg describes: it starts a client host
// with the cluster secret, asks the listed nodes for the cluster map, and
// fails if none answers.
func Open(ctx context.Context, cfg *config.Client, opts *Options) (*Datastore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dscluster: client config: %w", err)
	}
	psk, err := config.ParseSecret(cfg.Secret)
	if err != nil {
		return nil, fmt.Errorf("dscluster: %w", err)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	// Validate checked that both parse.
	if o.Timeout == 0 {
		o.Timeout, _ = cfg.RequestTimeout()
	}
	if o.HedgeAfter == 0 {
		o.HedgeAfter, _ = cfg.Hedge()
	}
	o.Namespace = cmp.Or(o.Namespace, cfg.Namespace)
	o.SkipCIDCheck = o.SkipCIDCheck || cfg.SkipCIDCheck
	o = o.withDefaults()
	hc := transport.HostConfig{Secret: psk}
	if cfg.Identity != "" {
		if hc.Key, err = config.DecodePrivKey(cfg.Identity); err != nil {
			return nil, fmt.Errorf("dscluster: identity: %w", err)
		}
	}
	h, err := transport.NewHost(hc)
	if err != nil {
		return nil, fmt.Errorf("dscluster: %w", err)
	}
	d, err := newDatastore(h, o)
	if err != nil {
		_ = h.Close()
		return nil, err
	}
	d.ownHost = true
	var errs []error
	for _, a := range cfg.Nodes {
		ai, err := config.ParseAddrInfo(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		addrs, err := transport.DialAddrInfo(ai)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		h.Peerstore().AddAddrs(ai.ID, addrs, peerstore.PermanentAddrTTL)
		c, err := d.fetchCluster(ctx, ai.ID)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a, err))
			continue
		}
		if cfg.ClusterID != "" && c.ID != cfg.ClusterID {
			errs = append(errs, fmt.Errorf("%s belongs to cluster %s, the config names %s", a, c.ID, cfg.ClusterID))
			continue
		}
		if err := d.setCluster(c); err != nil {
			var oe optionsError
			if errors.As(err, &oe) {
				_ = h.Close() // every other node would say the same
				return nil, err
			}
			errs = append(errs, err)
			continue
		}
		if _, inMap := c.Map.NodeIndex(ai.ID.String()); !inMap {
			d.adoptFromMapNode(ctx)
		}
		return d, nil
	}
	_ = h.Close()
	return nil, fmt.Errorf("dscluster: cannot reach any node of the cluster: %w", errors.Join(errs...))
}

// adoptFromMapNode asks every node of the current map for the cluster
// description and adopts the newest by map epoch that a node of its own
// map serves: a removed node serves the description it had then, and one
// being drained may lag behind its own removal. Descriptions of one epoch
// are not ordered; the first is taken.
func (d *Datastore) adoptFromMapNode(ctx context.Context) {
	v := d.view.Load()
	var best *config.Cluster
	for _, p := range v.peers {
		c, err := d.fetchCluster(ctx, p)
		if err != nil || c.Map.Epoch < v.c.Map.Epoch || (best != nil && c.Map.Epoch <= best.Map.Epoch) {
			continue
		}
		if _, inMap := c.Map.NodeIndex(p.String()); inMap {
			best = c
		}
	}
	if best != nil {
		if err := d.setCluster(best); err != nil {
			log.Debugw("adopt a member's description", "err", err)
		}
	}
}

// New returns a front end that uses an existing host, which it does not
// close, and a known cluster description.
func New(h host.Host, c *config.Cluster, opts *Options) (*Datastore, error) {
	d, err := newDatastore(h, opts.withDefaults())
	if err != nil {
		return nil, err
	}
	if err := d.setCluster(c); err != nil {
		return nil, err
	}
	return d, nil
}

// newDatastore returns a front end without a cluster description.
func newDatastore(h host.Host, o Options) (*Datastore, error) {
	if err := config.CheckNamespace(o.Namespace); err != nil {
		return nil, fmt.Errorf("dscluster: %w", err)
	}
	d := &Datastore{id: h.ID(), opts: o, client: transport.NewClient(h, o.Timeout), clock: newClock()}
	if o.Namespace != "" {
		d.ns = "/ns/" + o.Namespace
	}
	var err error
	if d.metrics, err = newClientMetrics(d, o.Metrics); err != nil {
		return nil, err
	}
	d.client.SetSlowAfter(o.HedgeAfter)
	d.client.SetOnDialFailure(d.lookupAddrs)
	d.bgCtx, d.bgCancel = context.WithCancel(context.Background())
	return d, nil
}

// ID is the peer ID this front end talks as: the one a client role is
// granted to (config.Client.Identity).
func (d *Datastore) ID() peer.ID { return d.id }

// lookupAddrs fetches the cluster description again in the background,
// at most once per addrLookupEvery, after a dial to p failed: a node that
// restarted at new addresses is recorded without a new map epoch.
func (d *Datastore) lookupAddrs(p peer.ID) {
	if d.view.Load() == nil {
		return // Open is still looking for a node that answers
	}
	now, last := time.Now().UnixNano(), d.lastLookup.Load()
	if now-last < int64(addrLookupEvery) || !d.lastLookup.CompareAndSwap(last, now) {
		return
	}
	d.background(func(ctx context.Context) {
		if err := d.refreshAny(ctx); err != nil {
			log.Debugw("look up the cluster description after a failed dial", "peer", p, "err", err)
		}
	})
}

// outliving returns the context of a write's requests: cancelled with ctx
// until keep is called as the write returns, and not after, so shards left
// in flight still land when the caller then cancels ctx (ctx's deadline
// still bounds them). done releases it once every request has ended.
func outliving(ctx context.Context) (sendCtx context.Context, keep, done func()) {
	base, cancelDeadline := context.WithoutCancel(ctx), context.CancelFunc(func() {})
	if dl, ok := ctx.Deadline(); ok {
		base, cancelDeadline = context.WithDeadline(base, dl)
	}
	sendCtx, cancel := context.WithCancel(base)
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			cancel() // a deadline is base's own
		}
	})
	return sendCtx, func() { stop() }, func() { stop(); cancel(); cancelDeadline() }
}

// background runs f in a goroutine that Close waits for, with a context
// bounded by the request timeout and cancelled by Close; nothing runs once
// the front end is closed (started is false then).
func (d *Datastore) background(f func(ctx context.Context)) (started bool) {
	d.bgMu.Lock()
	defer d.bgMu.Unlock()
	if d.bgCtx.Err() != nil {
		return false // closed
	}
	d.bg.Go(func() {
		ctx, cancel := context.WithTimeout(d.bgCtx, d.opts.Timeout)
		defer cancel()
		f(ctx)
	})
	return true
}

func newClock() *coding.Clock {
	var b [8]byte
	_, _ = crand.Read(b[:])
	return coding.NewClock(binary.BigEndian.Uint64(b[:]), nil)
}

func (d *Datastore) setCluster(c *config.Cluster) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("dscluster: cluster description: %w", err)
	}
	if d.opts.Policy.Kind != 0 {
		if err := d.opts.Policy.Validate(); err != nil {
			return optionsError{fmt.Errorf("dscluster: policy option: %w", err)}
		}
		if d.opts.Policy.Width() > c.Map.Width {
			return optionsError{fmt.Errorf("dscluster: policy option %s needs %d nodes per slot, the cluster's map has %d",
				d.opts.Policy, d.opts.Policy.Width(), c.Map.Width)}
		}
		cc := *c
		cc.Policy = d.opts.Policy
		c = &cc
	}
	v := &view{c: c, peers: make([]peer.ID, len(c.Map.Nodes)), down: make([]bool, len(c.Map.Nodes))}
	for _, i := range d.opts.Down {
		if i < 0 || i >= len(v.down) {
			return optionsError{fmt.Errorf("dscluster: down node %d: the map has nodes 0..%d", i, len(v.down)-1)}
		}
		v.down[i] = true
	}
	// Addresses the previous map gave are dropped only when the epoch
	// moves on: a same-epoch description may come from a node that has not
	// applied an address change yet.
	before := map[string][]string{}
	if old := d.view.Load(); old != nil && old.c.Map.Epoch < c.Map.Epoch {
		for _, n := range old.c.Map.Nodes {
			before[n.ID] = n.Addrs
		}
	}
	ps := d.client.Host().Peerstore()
	for i, n := range c.Map.Nodes {
		id, err := peer.Decode(n.ID)
		if err != nil {
			return fmt.Errorf("dscluster: node %d id %q: %w", i, n.ID, err)
		}
		if err := transport.MoveAddrs(ps, id, before[n.ID], n.Addrs); err != nil {
			return fmt.Errorf("dscluster: node %d: %w", i, err)
		}
		v.peers[i] = id
	}
	d.view.Store(v)
	return nil
}

// Cluster returns the cluster description in use.
func (d *Datastore) Cluster() *config.Cluster { return d.view.Load().c }

// Traffic reports the frame bytes of answered requests this front end,
// background work included, has sent to nodes and received from them.
func (d *Datastore) Traffic() (sent, received uint64) { return d.client.Traffic() }

func (d *Datastore) fetchCluster(ctx context.Context, p peer.ID) (*config.Cluster, error) {
	resp, err := d.client.Do(ctx, p, &wire.Request{Op: wire.OpClusterInfo, Identity: -1})
	if err != nil {
		return nil, err
	}
	if resp.Status != wire.StatusOK {
		return nil, fmt.Errorf("cluster info: %s: %s", resp.Status, resp.Message)
	}
	var c config.Cluster
	if err := json.Unmarshal(resp.Payload, &c); err != nil {
		return nil, fmt.Errorf("cluster info does not parse: %w", err)
	}
	return &c, nil
}

// refreshFrom fetches the cluster map, asking node p first, and adopts it
// if newer: a node that answered "stale epoch" has the newer map, while
// another may not have applied it yet.
func (d *Datastore) refreshFrom(ctx context.Context, p peer.ID) error {
	return d.fetchAndSet(ctx, false, p)
}

// refreshAny adopts any node's cluster description unless its map is
// older: members' states and a rebalance target change without a new epoch.
func (d *Datastore) refreshAny(ctx context.Context) error { return d.fetchAndSet(ctx, true, "") }

func (d *Datastore) fetchAndSet(ctx context.Context, sameEpoch bool, first peer.ID) error {
	d.refreshMu.Lock()
	defer d.refreshMu.Unlock()
	var errs []error
	peers := d.view.Load().peers
	if first != "" {
		peers = append([]peer.ID{first}, peers...)
	}
	for _, p := range peers {
		c, err := d.fetchCluster(ctx, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cur := d.view.Load().c.Map.Epoch
		if c.Map.Epoch < cur || (c.Map.Epoch == cur && !sameEpoch) {
			return nil
		}
		if c.Map.Epoch > cur {
			log.Infow("cluster map refreshed", "epoch", c.Map.Epoch)
		}
		return d.setCluster(c)
	}
	return fmt.Errorf("refresh cluster map: %w", errors.Join(errs...))
}

// do sends one request to node i of v, refreshing the map once if the node
// says the map is stale. A non-OK status other than stale epoch is returned
// in the response.
func (d *Datastore) do(ctx context.Context, v *view, i int, req *wire.Request) (*wire.Response, error) {
	resp, _, err := d.doInto(ctx, v, i, req, nil)
	return resp, err
}

// doInto is do with the response read into buf (see transport's DoInto);
// it returns the buffer for reuse.
func (d *Datastore) doInto(ctx context.Context, v *view, i int, req *wire.Request, buf []byte) (*wire.Response, []byte, error) {
	if v.down[i] {
		return nil, buf, errDown
	}
	t, _ := ctx.Value(timedOutKey{}).(*timedOut)
	if err := t.failure(v.peers[i]); err != nil {
		return nil, buf, err
	}
	req.Epoch = v.c.Map.Epoch
	resp, buf, err := d.client.DoInto(ctx, v.peers[i], req, buf)
	t.record(ctx, v.peers[i], err)
	if err == nil && resp.Status == wire.StatusStaleEpoch {
		if err := d.refreshFrom(ctx, v.peers[i]); err != nil {
			return nil, buf, err
		}
		req.Epoch = d.view.Load().c.Map.Epoch
		resp, buf, err = d.client.DoInto(ctx, v.peers[i], req, buf)
	}
	return resp, buf, err
}

// timedOut holds the nodes whose requests ran out of time during one read
// (readAgain): their failure stands for the rest of it, so that a node
// that hangs holds a read up for one request timeout, not one per pass or
// per look at older versions.
type timedOut struct {
	mu    sync.Mutex
	peers map[peer.ID]error
}

type timedOutKey struct{}

func withTimedOut(ctx context.Context) context.Context {
	return context.WithValue(ctx, timedOutKey{}, &timedOut{peers: map[peer.ID]error{}})
}

// failure is p's request that ran out of time, or nil (also outside a read).
func (t *timedOut) failure(p peer.ID) error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.peers[p]
}

// record keeps err when the request to p ran out of its own time (not the
// caller's).
func (t *timedOut) record(ctx context.Context, p peer.ID, err error) {
	if t != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		t.mu.Lock()
		t.peers[p] = err
		t.mu.Unlock()
	}
}

// errDown is the error of a request to a node in Options.Down.
var errDown = errors.New("node is marked down in this front end's options")

// owners returns the map node indexes of key's slot.
func (v *view) owners(key string) []uint16 {
	return v.c.Map.Owners(placement.Slot(key))
}

// policyFor picks the policy of a value of n bytes.
func (v *view) policyFor(n int) coding.Policy {
	p := v.c.Policy
	if n < v.c.SmallThreshold {
		return coding.Replicas(p.ParityShards + 1)
	}
	return p
}

// Sync is a no-op: every acknowledged Put is already durable on its quorum.
func (d *Datastore) Sync(ctx context.Context, prefix ds.Key) error { return nil }

// Close releases the front end's streams (and its host, if Open made it).
func (d *Datastore) Close() error {
	d.closeNotices()
	d.bgMu.Lock()
	d.bgCancel()
	d.bgMu.Unlock()
	d.bg.Wait()
	d.degraded.flush()
	d.client.Close()
	if d.ownHost {
		return d.client.Host().Close()
	}
	return nil
}

// NodeStatus is one node's answer to a status request.
type NodeStatus struct {
	Index  int // position in the map's node list; -1 for a member that owns no slots
	Peer   string
	Addrs  []string
	Zone   string
	State  string          // membership state (up, down, out, joining, draining, removed)
	Err    error           // non-nil when the node did not answer
	Status json.RawMessage // the node's status JSON (node.Status)
}

// Status asks every member of the cluster (every node of the map, when the
// cluster description has no member list) for its status. Removed members
// are not asked.
func (d *Datastore) Status(ctx context.Context) []NodeStatus {
	_, out := d.StatusOf(ctx)
	return out
}

// StatusOf is Status with the cluster description its answers' indexes
// refer to; the front end may adopt a newer one meanwhile.
func (d *Datastore) StatusOf(ctx context.Context) (*config.Cluster, []NodeStatus) {
	c := d.view.Load().c
	var out []NodeStatus
	if len(c.Members) == 0 {
		for i, n := range c.Map.Nodes {
			out = append(out, NodeStatus{Index: i, Peer: n.ID, Addrs: n.Addrs, Zone: n.Zone, State: membership.Up})
		}
	}
	for _, m := range c.Members {
		if m.State == membership.Removed {
			continue
		}
		i, ok := c.Map.NodeIndex(m.ID)
		if !ok {
			i = -1
		}
		out = append(out, NodeStatus{Index: i, Peer: m.ID, Addrs: m.Addrs, Zone: m.Zone, State: m.State})
	}
	ps := d.client.Host().Peerstore()
	var wg sync.WaitGroup
	for i := range out {
		id, err := peer.Decode(out[i].Peer)
		if err != nil {
			out[i].Err = fmt.Errorf("peer id %q: %w", out[i].Peer, err)
			continue
		}
		if addrs, err := transport.DialAddrs(out[i].Addrs); err == nil {
			ps.AddAddrs(id, addrs, peerstore.PermanentAddrTTL)
		}
		wg.Go(func() {
			switch resp, err := d.client.Do(ctx, id, &wire.Request{Op: wire.OpStatus}); {
			case err != nil:
				out[i].Err = err
			case resp.Status != wire.StatusOK:
				out[i].Err = statusError(resp)
			default:
				out[i].Status = append(json.RawMessage(nil), resp.Payload...)
			}
		})
	}
	wg.Wait()
	return c, out
}

// Member sends a membership command (membership.OpDrain with an ID, or
// membership.OpJoin with a Member) to the first node of the map that
// answers, which forwards it to the raft leader. While there is no leader
// Member tries again, for up to memberRetry.
func (d *Datastore) Member(ctx context.Context, cmd membership.Command) error {
	body, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(memberRetry)
	for {
		v := d.view.Load()
		var errs []error
		for i := range v.peers {
			switch resp, err := d.do(ctx, v, i, &wire.Request{Op: wire.OpMember, Body: body}); {
			case err != nil:
				errs = append(errs, err)
			case resp.Status == wire.StatusOK:
				return nil
			case resp.Status == wire.StatusUnavailable:
				errs = append(errs, fmt.Errorf("%s: %s", v.nodeName(i), resp.Message))
			case resp.Status == wire.StatusUnauthorized:
				return fmt.Errorf("%s %s: %w", cmd.Op, cmd.ID, statusError(resp))
			default:
				return fmt.Errorf("%s %s: %s", cmd.Op, cmd.ID, resp.Message)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %s: no node could take it: %w", cmd.Op, cmd.ID, errors.Join(errs...))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// memberRetry bounds how long Member waits for a raft leader.
const memberRetry = 15 * time.Second

// DiskUsage sums the shard store usage the reachable nodes report, or,
// with a namespace, what the namespace takes (namespaceUsage).
func (d *Datastore) DiskUsage(ctx context.Context) (uint64, error) {
	if d.ns != "" {
		return d.namespaceUsage(ctx)
	}
	var total uint64
	var errs []error
	sts := d.Status(ctx)
	for _, s := range sts {
		if s.Err != nil {
			errs = append(errs, s.Err)
			continue
		}
		var st struct {
			DiskUsage  uint64 `json:"disk_usage"`
			ShardBytes uint64 `json:"shard_bytes"`
		}
		if err := json.Unmarshal(s.Status, &st); err != nil {
			errs = append(errs, err)
			continue
		}
		total += cmp.Or(st.DiskUsage, st.ShardBytes)
	}
	if len(errs) == len(sts) {
		return 0, fmt.Errorf("disk usage: no node answered: %w", errors.Join(errs...))
	}
	return total, nil
}

// namespaceUsage is the shard bytes the live keys of the front end's
// namespace take by the cluster's policy, without garbage, tombstones and
// index space. It lists every key of the namespace.
func (d *Datastore) namespaceUsage(ctx context.Context) (uint64, error) {
	v := d.view.Load()
	m, err := d.openMerger(ctx, v, d.nsPrefix())
	if err != nil {
		return 0, fmt.Errorf("disk usage of namespace %s: %w", d.ns, err)
	}
	var total uint64
	for {
		ms, err := m.nextChunk(ctx, queryPage)
		if err != nil {
			return 0, fmt.Errorf("disk usage of namespace %s: %w", d.ns, err)
		}
		if len(ms) == 0 {
			return total, nil
		}
		for _, e := range ms {
			if !e.le.Tombstone {
				p := v.policyFor(int(e.le.ValueLen))
				total += uint64(p.Width()) * uint64(coding.ShardLen(p, e.le.ValueLen))
			}
		}
	}
}

// inner is the key the cluster stores key under.
func (d *Datastore) inner(key ds.Key) string { return d.ns + key.String() }

// nsPrefix is what the keys of the front end's namespace begin with.
func (d *Datastore) nsPrefix() string {
	if d.ns == "" {
		return ""
	}
	return d.ns + "/"
}

// Check reports an error when more nodes are unreachable than the policy
// tolerates (m).
func (d *Datastore) Check(ctx context.Context) error {
	c, sts := d.StatusOf(ctx)
	var failed []NodeError
	for _, s := range sts {
		if s.Err != nil && s.Index >= 0 {
			failed = append(failed, NodeError{Node: nodeName(s.Index, s.Peer), Err: s.Err})
		}
	}
	if len(failed) > c.Policy.ParityShards {
		return fmt.Errorf("check: %d of %d nodes unreachable, the policy %s tolerates %d: %s",
			len(failed), len(c.Map.Nodes), c.Policy, c.Policy.ParityShards, joinNodeErrors(failed))
	}
	return nil
}
