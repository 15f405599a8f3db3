package raftmap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.etcd.io/bbolt"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/membership"
)

// Files and folders under Config.Dir.
const (
	LogFile     = "raft.db"   // raft-boltdb: the log and raft's stable state
	SnapshotDir = "snapshots" // raft.FileSnapshotStore
)

const (
	// rpcTimeout bounds one raft RPC on a stream (an InstallSnapshot gets
	// more in proportion to its size).
	rpcTimeout = 10 * time.Second
	// changeTimeout bounds one configuration change and a Propose without
	// a deadline in its context.
	changeTimeout = 10 * time.Second
	// maxPool is the number of idle streams kept per peer.
	maxPool = 3
	// retainSnapshots is the number of snapshots kept on disk.
	retainSnapshots = 2
	// DefaultSnapshotThreshold is the number of log entries after which a
	// snapshot is taken.
	DefaultSnapshotThreshold = 1024
)

var (
	// ErrNotLeader is returned (inside a *NotLeaderError) by Propose and
	// SyncVoters on a node that is not the raft leader. Nothing was
	// proposed; retrying on the leader is safe.
	ErrNotLeader = errors.New("raftmap: not the raft leader")
	// ErrClosed is returned after Close, and by a Propose that raft shut
	// down under.
	ErrClosed = errors.New("raftmap: closed")
	// ErrUnknownOutcome is returned by Propose when the command was handed
	// to raft but it cannot tell whether it was committed: leadership was
	// lost or ctx ended while waiting. A retry may apply the command twice.
	ErrUnknownOutcome = errors.New("raftmap: outcome unknown")
)

// NotLeaderError says which node is the leader, when this node knows it.
// It unwraps to ErrNotLeader.
type NotLeaderError struct {
	Leader peer.ID // empty when no leader is known
}

func (e *NotLeaderError) Error() string {
	if e.Leader == "" {
		return ErrNotLeader.Error() + " (no leader known)"
	}
	return ErrNotLeader.Error() + " (the leader is " + e.Leader.String() + ")"
}

// Unwrap returns ErrNotLeader.
func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// Timing holds raft's timeouts. A zero field takes its default; the
// defaults keep raft's rule lease <= heartbeat <= election.
type Timing struct {
	HeartbeatTimeout   time.Duration // default 1s
	ElectionTimeout    time.Duration // default HeartbeatTimeout
	LeaderLeaseTimeout time.Duration // default HeartbeatTimeout/2
	CommitTimeout      time.Duration // default 50ms (raft's)
}

func (t Timing) withDefaults() Timing {
	if t.HeartbeatTimeout == 0 {
		t.HeartbeatTimeout = time.Second
	}
	if t.ElectionTimeout == 0 {
		t.ElectionTimeout = t.HeartbeatTimeout
	}
	if t.LeaderLeaseTimeout == 0 {
		t.LeaderLeaseTimeout = t.HeartbeatTimeout / 2
	}
	if t.CommitTimeout == 0 {
		t.CommitTimeout = raft.DefaultConfig().CommitTimeout
	}
	return t
}

// Config configures Open.
type Config struct {
	// Host carries raft's streams. Its peer ID is this server's raft ID and
	// address. Open does not take ownership: Close leaves it open.
	Host host.Host
	// Dir holds raft.db (log and stable store) and snapshots/.
	Dir string
	// Bootstrap lists the peer IDs of the initial voters. When this node is
	// one of them and Dir holds no raft state yet, Open bootstraps the
	// cluster with them. Every initial voter does so with the same list;
	// other nodes may be given the same list and ignore it.
	Bootstrap []string
	// AddrsOf returns the multiaddrs to dial a peer at (nil: only what the
	// peerstore knows). Unspecified IPs are dialed as loopback.
	AddrsOf func(peer.ID) []ma.Multiaddr
	// Allow, when set, says whether a peer may open raft streams to this
	// server; others are reset (the node lets only members speak raft once
	// client roles are enforced).
	Allow func(peer.ID) bool
	// OnChange is called with each new cluster state (see the package doc).
	OnChange func(*config.Cluster)
	// Timing overrides raft's timeouts (tests make them short).
	Timing Timing
	// SnapshotThreshold is the number of log entries between snapshots
	// (default DefaultSnapshotThreshold).
	SnapshotThreshold uint64
	// TrailingLogs is the number of log entries kept after a snapshot, so
	// that a slow follower catches up from the log rather than a snapshot
	// (default raft's, 10240).
	TrailingLogs uint64
	// NoSync skips fsync of the raft log. Tests only: a committed command
	// is then not durable.
	NoSync bool
}

// Validate checks the config.
func (c *Config) Validate() error {
	if c.Host == nil {
		return errors.New("raftmap: no host")
	}
	if c.Dir == "" {
		return errors.New("raftmap: no data directory")
	}
	seen := make(map[string]bool, len(c.Bootstrap))
	for _, id := range c.Bootstrap {
		if _, err := peer.Decode(id); err != nil {
			return fmt.Errorf("raftmap: bootstrap voter %q is not a peer id: %w", id, err)
		}
		if seen[id] {
			return fmt.Errorf("raftmap: bootstrap voter %s is listed twice", id)
		}
		seen[id] = true
	}
	t := c.Timing.withDefaults()
	if t.LeaderLeaseTimeout > t.HeartbeatTimeout || t.ElectionTimeout < t.HeartbeatTimeout {
		return fmt.Errorf("raftmap: timing: want leader lease (%s) <= heartbeat (%s) <= election (%s)",
			t.LeaderLeaseTimeout, t.HeartbeatTimeout, t.ElectionTimeout)
	}
	return nil
}

// Raft is one server of the raft group that keeps the cluster map.
type Raft struct {
	raft  *raft.Raft
	fsm   *fsm
	store *raftboltdb.BoltStore
	layer *StreamLayer
	self  raft.ServerID

	onChange   func(*config.Cluster)
	stopNotify chan struct{}
	notifyDone chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// Open opens the raft state in cfg.Dir, bootstraps it when cfg says so,
// and joins the raft group over cfg.Host.
func Open(cfg Config) (r *Raft, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("raftmap: data dir: %w", err)
	}
	logger := newHCLogger("raft")
	store, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(cfg.Dir, LogFile),
		NoSync:      cfg.NoSync,
		BoltOptions: &bbolt.Options{Timeout: time.Second, FreelistType: bbolt.FreelistArrayType, NoSync: cfg.NoSync},
	})
	if err != nil {
		return nil, fmt.Errorf("raftmap: open %s: %w", filepath.Join(cfg.Dir, LogFile), err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, retainSnapshots, logger.Named("snapshot"))
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raftmap: snapshot store: %w", err)
	}
	layer := NewStreamLayer(cfg.Host, cfg.AddrsOf, cfg.Allow)
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  layer,
		MaxPool: maxPool,
		Timeout: rpcTimeout,
		Logger:  logger.Named("net"),
	})
	defer func() {
		if err != nil {
			trans.Close() // closes the layer
			store.Close()
		}
	}()

	t := cfg.Timing.withDefaults()
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Host.ID().String())
	rc.HeartbeatTimeout = t.HeartbeatTimeout
	rc.ElectionTimeout = t.ElectionTimeout
	rc.LeaderLeaseTimeout = t.LeaderLeaseTimeout
	rc.CommitTimeout = t.CommitTimeout
	rc.SnapshotThreshold = DefaultSnapshotThreshold
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	// A removed server stays up as a passive follower, so that it can be
	// added again without a restart; it does not start elections.
	rc.ShutdownOnRemove = false
	rc.NoLegacyTelemetry = true
	rc.Logger = logger
	if err = raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raftmap: %w", err)
	}

	if slices.Contains(cfg.Bootstrap, string(rc.LocalID)) {
		has, herr := raft.HasExistingState(store, store, snaps)
		if herr != nil {
			err = fmt.Errorf("raftmap: read raft state: %w", herr)
			return nil, err
		}
		if !has {
			var servers []raft.Server
			for _, id := range cfg.Bootstrap {
				servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(id)})
			}
			if err = raft.BootstrapCluster(rc, store, store, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
				return nil, fmt.Errorf("raftmap: bootstrap: %w", err)
			}
			log.Infow("bootstrapped the raft group", "voters", len(servers))
		}
	}

	f := newFSM()
	rr, err := raft.NewRaft(rc, f, store, store, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("raftmap: start raft: %w", err)
	}
	r = &Raft{
		raft: rr, fsm: f, store: store, layer: layer, self: rc.LocalID,
		onChange: cfg.OnChange, stopNotify: make(chan struct{}), notifyDone: make(chan struct{}),
	}
	go r.notify()
	return r, nil
}

// notify calls OnChange with the newest state whenever the FSM changed.
func (r *Raft) notify() {
	defer close(r.notifyDone)
	var last *config.Cluster
	for {
		select {
		case <-r.stopNotify:
			return
		case <-r.fsm.changed:
		}
		c := r.fsm.cluster.Load()
		if c == nil || c == last || r.onChange == nil {
			continue
		}
		last = c
		r.onChange(c)
	}
}

// ID is this server's peer ID.
func (r *Raft) ID() peer.ID { return r.layer.host.ID() }

// Cluster is the newest cluster state this server applied, nil before the
// init command. Callers must not modify it.
func (r *Raft) Cluster() *config.Cluster { return r.fsm.cluster.Load() }

// IsLeader reports whether this server is the raft leader now.
func (r *Raft) IsLeader() bool { return r.raft.State() == raft.Leader }

// Term is the raft term this server is in.
func (r *Raft) Term() uint64 { return r.raft.CurrentTerm() }

// Role is this server's raft state: Leader, Follower, Candidate or Shutdown.
func (r *Raft) Role() string { return r.raft.State().String() }

// Leader returns the leader this server knows of.
func (r *Raft) Leader() (peer.ID, bool) {
	_, id := r.raft.LeaderWithID()
	if id == "" {
		return "", false
	}
	p, err := peer.Decode(string(id))
	if err != nil {
		return "", false
	}
	return p, true
}

// LeaderCh receives true when this server becomes the leader and false
// when it stops being it. It holds only the newest value (raft's LeaderCh)
// and has a single consumer.
func (r *Raft) LeaderCh() <-chan bool { return r.raft.LeaderCh() }

// Servers returns the raft configuration: every server and its suffrage.
func (r *Raft) Servers() ([]raft.Server, error) {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, r.mapErr(err)
	}
	return f.Configuration().Servers, nil
}

func (r *Raft) notLeader() error {
	id, _ := r.Leader()
	return &NotLeaderError{Leader: id}
}

// mapErr turns raft's errors into this package's.
func (r *Raft) mapErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// Nothing was proposed: the leadership is elsewhere or on its way.
		return r.notLeader()
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
	}
	return fmt.Errorf("raftmap: %w", err)
}

// Propose commits cmd through raft and applies it. It must be called on the
// leader (otherwise a *NotLeaderError). ctx bounds the whole call; without
// a deadline the hand-over to raft is bounded by 10 s.
//
// nil means the command is committed (in the log of a majority of voters,
// fsynced unless Config.NoSync) and applied on this server: Cluster shows
// it. An error wrapping membership.ErrRejected means it is committed but
// the state machine rejected it on every server and the state is
// unchanged. ErrUnknownOutcome means it may or may not be applied.
func (r *Raft) Propose(ctx context.Context, cmd membership.Command) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("raftmap: encode command %s: %w", cmd.Op, err)
	}
	if !r.IsLeader() {
		return r.notLeader()
	}
	timeout := changeTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return context.DeadlineExceeded
		}
	}
	f := r.raft.Apply(b, timeout)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		return fmt.Errorf("%w: %s: %w", ErrUnknownOutcome, cmd.Op, ctx.Err())
	}
	if err != nil {
		if errors.Is(err, raft.ErrEnqueueTimeout) {
			return fmt.Errorf("raftmap: %s not proposed: %w", cmd.Op, err)
		}
		return r.mapErr(err)
	}
	if rerr, ok := f.Response().(error); ok {
		return rerr
	}
	return nil
}

// Voters returns the peer IDs of the voters of the newest raft
// configuration this server knows, in configuration order. It works on
// any server; a follower's may lag the leader's.
func (r *Raft) Voters() ([]string, error) {
	servers, err := r.Servers()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			ids = append(ids, string(s.ID))
		}
	}
	return ids, nil
}

// Barrier waits until this server, the leader, has applied every entry
// committed before the call, previous terms' included, so that Cluster
// is the whole committed state. A new leader calls it before it acts on
// Cluster (raft commits an old term's entries only with one of its own,
// so until then Cluster may miss some). timeout bounds the hand-over to
// raft (0: none). It must be called on the leader: otherwise, or when
// leadership is lost meanwhile, a *NotLeaderError.
func (r *Raft) Barrier(timeout time.Duration) error {
	if !r.IsLeader() {
		return r.notLeader()
	}
	if err := r.raft.Barrier(timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrLeadershipLost) {
			return r.notLeader()
		}
		return r.mapErr(err)
	}
	return nil
}

// TransferLeadership hands leadership to the most up-to-date other voter
// and returns once this server has stepped down. A leader that should
// not be a voter any more (its node is being drained) calls it, since
// SyncVoters never demotes the leader: the next leader does. It must be
// called on the leader, and fails when there is no other voter.
func (r *Raft) TransferLeadership() error {
	if !r.IsLeader() {
		return r.notLeader()
	}
	voters, err := r.Voters()
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(voters, func(id string) bool { return raft.ServerID(id) != r.self }) {
		return errors.New("raftmap: transfer leadership: no other voter")
	}
	if err := r.raft.LeadershipTransfer().Error(); err != nil {
		return fmt.Errorf("raftmap: transfer leadership: %w", r.mapErr(err))
	}
	return nil
}

// SyncVoters makes the raft configuration hold exactly voters as voters and
// others as non-voters. It changes one server at a time, in an order that
// never needs a dead server for a quorum it did not need before: first it
// removes the servers in neither list (out or removed members, dead as
// often as not: removing them lowers the quorum), then demotes the voters
// listed in others, then adds or promotes voters, and last adds
// non-voters. (Adding first would be unsafe: with voters A, B, C and C
// dead, adding a voter D that is dead too makes a configuration of 4 that
// needs 3 live voters and has 2, and no leader is ever elected again.)
// Choosing only live servers as new voters is the caller's part
// (membership.Voters).
//
// The leader itself is never demoted or removed, whatever the lists say:
// a leader that should not be a voter calls TransferLeadership, and the
// next leader's SyncVoters demotes it. It must be called on the leader.
// The changes are applied one by one; on an error, the ones before it
// stay, and a later call goes on from there.
func (r *Raft) SyncVoters(voters []string, others []string) error {
	want := make(map[raft.ServerID]raft.ServerSuffrage, len(voters)+len(others))
	for _, list := range []struct {
		ids []string
		s   raft.ServerSuffrage
	}{{voters, raft.Voter}, {others, raft.Nonvoter}} {
		for _, id := range list.ids {
			if _, err := peer.Decode(id); err != nil {
				return fmt.Errorf("raftmap: %q is not a peer id: %w", id, err)
			}
			if _, dup := want[raft.ServerID(id)]; dup {
				return fmt.Errorf("raftmap: %s is listed twice", id)
			}
			want[raft.ServerID(id)] = list.s
		}
	}
	if len(voters) == 0 {
		return errors.New("raftmap: no voters")
	}
	if !r.IsLeader() {
		return r.notLeader()
	}
	servers, err := r.Servers()
	if err != nil {
		return err
	}
	have := make(map[raft.ServerID]raft.ServerSuffrage, len(servers))
	for _, s := range servers {
		have[s.ID] = s.Suffrage
	}
	wait := func(what string, id raft.ServerID, f raft.Future) error {
		if err := f.Error(); err != nil {
			return fmt.Errorf("%s %s: %w", what, id, r.mapErr(err))
		}
		log.Infow("raft configuration changed", "op", what, "peer", string(id))
		return nil
	}
	// Remove the servers in neither list.
	for _, s := range servers {
		if _, ok := want[s.ID]; ok || s.ID == r.self {
			continue
		}
		if err := wait("remove server", s.ID, r.raft.RemoveServer(s.ID, 0, changeTimeout)); err != nil {
			return err
		}
	}
	// Demote the voters that should not be.
	for _, id := range others {
		sid := raft.ServerID(id)
		if s, ok := have[sid]; !ok || s != raft.Voter || sid == r.self {
			continue
		}
		if err := wait("demote voter", sid, r.raft.DemoteVoter(sid, 0, changeTimeout)); err != nil {
			return err
		}
	}
	// Add and promote voters, then add non-voters.
	for _, id := range voters {
		sid := raft.ServerID(id)
		if s, ok := have[sid]; ok && s == raft.Voter {
			continue
		}
		if err := wait("add voter", sid, r.raft.AddVoter(sid, raft.ServerAddress(id), 0, changeTimeout)); err != nil {
			return err
		}
	}
	for _, id := range others {
		sid := raft.ServerID(id)
		if _, ok := have[sid]; ok || sid == r.self {
			continue
		}
		if err := wait("add non-voter", sid, r.raft.AddNonvoter(sid, raft.ServerAddress(id), 0, changeTimeout)); err != nil {
			return err
		}
	}
	return nil
}

// Snapshot takes a snapshot now and compacts the log (keeping
// Config.TrailingLogs entries). Nothing new since the last snapshot is not
// an error.
func (r *Raft) Snapshot() error {
	if err := r.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return r.mapErr(err)
	}
	return nil
}

// Close stops raft, closes its streams and its store. It does not close the
// host. It is idempotent; later calls return the first call's error.
func (r *Raft) Close() error {
	r.closeOnce.Do(func() {
		var errs []error
		if err := r.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raftmap: shut down raft: %w", err))
		}
		r.layer.Close() // raft closed the transport and so the layer; idempotent
		close(r.stopNotify)
		<-r.notifyDone
		if err := r.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raftmap: close %s: %w", LogFile, err))
		}
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}
