package node

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/node/raftmap"
	"github.com/filedrive-team/go-ds-cluster/repair"
	"github.com/filedrive-team/go-ds-cluster/transport"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// clusterFile keeps the last cluster description the node applied, so a
// restarted node serves with its latest map before raft catches it up.
const clusterFile = "cluster.json"

// startCluster opens raft and the repair driver and starts the loops.
func (n *Node) startCluster(opts Options) error {
	var boot []string
	if len(n.cfg.Cluster.Members) == 0 {
		// A config from dscfg: the initial voters bootstrap raft, all with
		// the same list.
		if v := membership.Voters(n.initial, nil); slices.Contains(v, n.selfID) {
			boot = v
		}
	}
	if err := os.MkdirAll(filepath.Join(n.dir, "raft"), 0o755); err != nil {
		return fmt.Errorf("node: raft dir: %w", err)
	}
	r, err := raftmap.Open(raftmap.Config{
		Host:      n.host,
		Dir:       filepath.Join(n.dir, "raft"),
		Bootstrap: boot,
		AddrsOf:   n.addrsOf,
		Allow:     n.mayRaft,
		OnChange:  n.setCluster,
		Timing:    opts.RaftTiming,
		NoSync:    opts.NoSync,
	})
	if err != nil {
		return fmt.Errorf("node: raft: %w", err)
	}
	n.raft = r
	n.driver, err = repair.OpenDriver(repair.DriverConfig{
		Peers:     peers{n},
		StatePath: filepath.Join(n.dir, "repair.db"),
		Rate:      opts.RepairRate,
		NoSync:    opts.NoSync,
		// Repair rolls a key back only from a version that provably never
		// reached its quorum on an unchanged map. Both are read from raft
		// (n.cluster may lag): a later map time only holds roll-backs back.
		Quorum: func(p coding.Policy) int {
			if c := n.raft.Cluster(); c != nil {
				return c.Quorum(p)
			}
			return 0 // unknown: any version may have been acknowledged
		},
		MapSince: func() int64 {
			if c := n.raft.Cluster(); c != nil {
				return c.MapSince
			}
			return 0
		},
		GarbageGrace: opts.GarbageGrace,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.every(opts.HeartbeatInterval, func() { n.controlTick(opts.HeartbeatInterval, opts.OutAfter) })
	n.every(opts.RepairInterval, func() {
		if n.raft.IsLeader() {
			if err := n.RepairPass(n.bgCtx); err != nil && n.bgCtx.Err() == nil {
				log.Warnw("repair pass", "err", err)
			}
		}
	})
	n.every(opts.HeartbeatInterval, n.announceAddrs)
	if opts.ScrubInterval > 0 {
		n.every(opts.ScrubInterval, func() {
			if _, err := n.Scrub(n.bgCtx); err != nil && n.bgCtx.Err() == nil {
				log.Warnw("scrub", "err", err)
			}
		})
	}
	return nil
}

// loadCluster returns the cluster a previous run saved, if newer than cfg.
func loadCluster(dir string, cfg *config.Cluster) *config.Cluster {
	b, err := os.ReadFile(filepath.Join(dir, clusterFile))
	if err != nil {
		return nil
	}
	var c config.Cluster
	if err := json.Unmarshal(b, &c); err != nil || c.Validate() != nil || c.ID != cfg.ID || c.Map.Epoch < cfg.Map.Epoch {
		log.Warnw("ignoring the saved cluster description", "file", filepath.Join(dir, clusterFile))
		return nil
	}
	return &c
}

// setCluster is raft's change callback: it installs c, teaches the
// peerstore the members' addresses and saves c.
func (n *Node) setCluster(c *config.Cluster) {
	if c == nil {
		return
	}
	// Raft restores its last snapshot first, which may be older than the
	// saved description: a map never goes back.
	cur := n.cluster.Load()
	if cur != nil && c.Map.Epoch < cur.Map.Epoch {
		return
	}
	n.cluster.Store(c)
	n.dialMembers(cur, c)
	// Peers vouched for are members here now, or were removed since.
	n.vouchMu.Lock()
	clear(n.vouched)
	n.vouchGen++
	n.vouchMu.Unlock()
	b, err := json.Marshal(c)
	if err == nil {
		err = writeFileAtomic(filepath.Join(n.dir, clusterFile), b)
	}
	if err != nil {
		log.Warnw("save cluster description", "err", err)
	}
}

// mayRaft reports whether peer p may open raft streams to this node. Once
// client roles are enforced only members may, so that a client cannot pose
// as a raft leader. A member that joined while this node was down is taken
// once a known member lists it (vouch); its streams are refused meanwhile,
// and raft sends again.
func (n *Node) mayRaft(p peer.ID) bool {
	c := n.cluster.Load()
	if len(c.Clients) == 0 || n.isMember(c, p) {
		return true
	}
	if m, ok := c.Member(p.String()); ok && m.State == membership.Removed {
		return false
	}
	n.vouchMu.Lock()
	defer n.vouchMu.Unlock()
	if n.vouched[p] {
		return true
	}
	// Peers with the secret can make up IDs: a few checks at a time, and
	// each peer asked about at most once a second.
	if n.vouchClosed || n.vouching >= maxVouching || time.Since(n.vouchAsked[p]) < time.Second {
		return false
	}
	if len(n.vouchAsked) >= 1024 {
		maps.DeleteFunc(n.vouchAsked, func(_ peer.ID, at time.Time) bool { return time.Since(at) >= time.Second })
	}
	n.vouchAsked[p] = time.Now()
	n.vouching++
	gen := n.vouchGen
	n.vouchWG.Go(func() {
		ok, by := n.vouch(p, c)
		n.vouchMu.Lock()
		defer n.vouchMu.Unlock()
		n.vouching--
		// A cluster change since the asking may have removed p.
		if ok && gen == n.vouchGen {
			n.vouched[p] = true
			log.Infow("raft peer unknown here is a member for another member", "peer", p.String(), "vouched_by", by)
		} else if !ok {
			log.Warnw("raft stream refused: the peer is not a member here nor for the members asked", "peer", p.String())
		}
	})
	return false
}

// maxVouching bounds the vouch checks in flight.
const maxVouching = 4

// vouch reports whether a member of c that may be up lists p as a member
// in its cluster description, and which.
func (n *Node) vouch(p peer.ID, c *config.Cluster) (bool, string) {
	ctx, cancel := context.WithTimeout(n.bgCtx, 5*time.Second)
	defer cancel()
	found := make(chan string, len(c.Members))
	var wg sync.WaitGroup
	for _, m := range c.Members {
		id, err := peer.Decode(m.ID)
		if err != nil || m.State == membership.Removed || m.State == membership.Out || id == n.host.ID() {
			continue
		}
		wg.Go(func() {
			resp, err := n.client.Do(ctx, id, &wire.Request{Op: wire.OpClusterInfo, Identity: ClientIdentity})
			if err != nil || resp.Status != wire.StatusOK {
				return
			}
			var theirs config.Cluster
			if json.Unmarshal(resp.Payload, &theirs) != nil {
				return
			}
			if tm, ok := theirs.Member(p.String()); ok && tm.State != membership.Removed {
				found <- m.ID
				cancel()
			}
		})
	}
	wg.Wait()
	select {
	case by := <-found:
		return true, by
	default:
		return false, ""
	}
}

// dialMembers records the members' addresses in the peerstore, dropping
// those that before (the previous description, or nil) gave and c does not.
func (n *Node) dialMembers(before, c *config.Cluster) {
	ps := n.host.Peerstore()
	for _, m := range c.Members {
		id, err := peer.Decode(m.ID)
		if err != nil || id == n.host.ID() {
			continue
		}
		var old []string
		if before != nil {
			if o, ok := before.Member(m.ID); ok {
				old = o.Addrs
			}
		}
		if err := transport.MoveAddrs(ps, id, old, m.Addrs); err != nil {
			log.Warnw("member addresses", "id", m.ID, "err", err)
		}
	}
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// addrsOf gives raft the addresses of a member.
func (n *Node) addrsOf(id peer.ID) []ma.Multiaddr {
	if m, ok := n.cluster.Load().Member(id.String()); ok {
		addrs, _ := transport.DialAddrs(m.Addrs)
		return addrs
	}
	return nil
}

// announceRetry spaces the attempts to announce new addresses.
const announceRetry = 2 * time.Second

// announceState is announceAddrs' memory; only its loop touches it.
type announceState struct {
	done   []string // the addresses announced (accepted or refused)
	warned bool     // the record differs from done, and that was logged
	next   time.Time
}
