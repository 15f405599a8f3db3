package node

import (
	"context"
	"encoding/json"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/repair"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

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
	// Repair is the repair driver's figures: passes run on the leader
	// only; totals survive restarts and leaderships.
	Repair *repair.Stats `json:"repair,omitempty"`
	Scrub  ScrubStats    `json:"scrub"`
	// StoreError is why the shard store takes no more writes (a failed fsync).
	StoreError string `json:"store_error,omitempty"`
	// Clients is the number of client roles this node applies.
	Clients int `json:"clients"`
	// Features are what this version does that older ones do not.
	Features []string `json:"features"`
}

var features = []string{FeatureRoles}

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
		Clients: len(c.Clients), Features: features, IsLeader: n.raft.IsLeader(),
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

// storeErr reports why the shard store serves no more, or nil: the volume
// store after a failed fsync, MongoDB while it does not answer.
func (n *Node) storeErr() error {
	if e, ok := n.store.(interface{ Err() error }); ok {
		return e.Err()
	}
	return nil
}

func (n *Node) status(ctx context.Context) *wire.Response {
	s, err := n.Stat(ctx)
	if err != nil {
		return failure(wire.StatusInternal, "status: %v", err)
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
		return failure(wire.StatusUnauthorized, "identity %d: the bootstrapper hands out no node identities once client roles are enforced; "+
			"start the initial nodes before the first grant, or add a node as a new one (dsclient node admit)", identity)
	}
	// The initial cluster, as dscfg wrote it: the initial voters bootstrap
	// raft from the same list. Raft brings the current map.
	c = &n.cfg.Cluster
	if identity < 0 || int(identity) >= len(n.cfg.Identities) || int(identity) >= len(c.Map.Nodes) {
		return failure(wire.StatusNotFound, "identity %d does not exist: the cluster has identities 0..%d", identity, len(n.cfg.Identities)-1)
	}
	// An identity that runs is not handed out: two processes would answer
	// as one node, each holding some of its shards.
	id := c.Map.Nodes[identity].ID
	if id == n.selfID {
		return failure(wire.StatusBadRequest, "identity %d is this bootstrapper's own", identity)
	}
	if pid, err := peer.Decode(id); err == nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := n.client.Do(pctx, pid, &wire.Request{Op: wire.OpPing})
		cancel()
		if err == nil && resp.Status == wire.StatusOK {
			return failure(wire.StatusBadRequest, "identity %d (%s) answers at its addresses: another process runs it", identity, id)
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
