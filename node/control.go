package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/node/raftmap"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/repair"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// controlTick runs on every node and acts only on the raft leader: it
// initialises the cluster, sends heartbeats, proposes the state changes
// membership.Decide calls for, and keeps the raft voters in line.
func (n *Node) controlTick(every, outAfter time.Duration) {
	if !n.raft.IsLeader() {
		n.leaderReady.Store(false)
		return
	}
	if !n.leaderReady.Load() {
		// Apply every committed entry before acting on the description.
		if err := n.raft.Barrier(5 * time.Second); err != nil {
			log.Debugw("raft barrier", "err", err)
			return
		}
		n.leaderReady.Store(true)
		log.Infow("leading the cluster")
	}
	c := n.raft.Cluster()
	if c == nil {
		if err := n.propose(membership.Command{Op: membership.OpInit, Cluster: n.initial, At: time.Now().UnixNano()}); err != nil {
			log.Warnw("initialise the cluster under raft", "err", err)
		}
		return
	}
	answered := n.heartbeat(c, every)
	cmds, err := membership.Decide(c, answered, time.Now(), outAfter)
	if err != nil && time.Since(n.lastDecideWarn) > time.Minute {
		n.lastDecideWarn = time.Now()
		log.Warnw("the slot map cannot follow the members", "err", err)
	}
	for _, cmd := range cmds {
		if err := n.propose(cmd); err != nil {
			log.Warnw("membership", "op", cmd.Op, "id", cmd.ID, "err", err)
			break
		}
		log.Infow("membership", "op", cmd.Op, "id", cmd.ID, "state", cmd.State)
	}
	c = n.raft.Cluster()
	current, err := n.raft.Voters()
	if err != nil {
		log.Debugw("raft voters", "err", err)
		return
	}
	voters := membership.Voters(c, current)
	if !slices.Contains(voters, n.selfID) {
		// Not to vote (drained, say): hand over; the next leader demotes it.
		if err := n.raft.TransferLeadership(); err != nil {
			log.Debugw("transfer raft leadership", "err", err)
		}
		return
	}
	var others []string
	for _, m := range c.Members {
		if m.State != membership.Out && m.State != membership.Removed && !slices.Contains(voters, m.ID) {
			others = append(others, m.ID)
		}
	}
	if err := n.raft.SyncVoters(voters, others); err != nil {
		log.Debugw("raft voters", "err", err)
	}
}

// announceAddrs runs on every node: when the cluster records other
// addresses for this member than it listens at (statedAddrs), it tells the
// leader as a rejoin does, for until then nobody can dial it. A set is
// announced once, retried every announceRetry until answered: should the
// record change again, another process runs with this identity, which is
// logged rather than fought over.
func (n *Node) announceAddrs() {
	want := n.statedAddrs()
	c := n.cluster.Load()
	m, ok := c.Member(n.selfID)
	if len(want) == 0 || !ok || time.Now().Before(n.announce.next) {
		return
	}
	switch {
	case sameAddrs(m.Addrs, want):
		n.announce.done, n.announce.warned = want, false
		return
	case sameAddrs(n.announce.done, want):
		if !n.announce.warned {
			n.announce.warned = true
			log.Warnw("the cluster records other addresses for this node than it announced: is another process running with its identity?",
				"recorded", m.Addrs, "announced", want)
		}
		return
	}
	switch m.State {
	case membership.Up, membership.Down, membership.Joining, membership.Draining:
	default:
		return // out or removed: coming back is an operator's join
	}
	nm := config.Member{Node: m.Node}
	nm.Addrs = want
	body, err := json.Marshal(membership.Command{Op: membership.OpJoin, Member: &nm})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.bgCtx, 10*time.Second)
	defer cancel()
	// Through this node first; a node that moved may know no leader yet
	// (the leader dials its old addresses), so then through any member.
	resp := n.member(ctx, n.host.ID(), body)
	for _, o := range c.Members {
		id, err := peer.Decode(o.ID)
		if resp.Status == wire.StatusOK || resp.Status == wire.StatusBadRequest || o.ID == n.selfID || o.State != membership.Up || err != nil {
			continue
		}
		if r, err := n.client.Do(ctx, id, &wire.Request{Op: wire.OpMember, Body: body}); err == nil {
			resp = r
		}
	}
	switch resp.Status {
	case wire.StatusOK:
		n.announce.done = want
		log.Infow("announced new addresses", "addrs", want, "recorded", m.Addrs)
	case wire.StatusBadRequest:
		n.announce.done = want // refused for good: not asked again
		log.Warnw("the cluster refused this node's new addresses", "addrs", want, "err", resp.Message)
	default:
		n.announce.next = time.Now().Add(announceRetry)
		log.Debugw("announce new addresses: retrying", "addrs", want, "status", resp.Status, "msg", resp.Message)
	}
}

// statedAddrs are the listen addresses of the node's config that name an
// IP and a port (not 0.0.0.0, ::, or port 0 over TCP or UDP).
func (n *Node) statedAddrs() []string {
	var out []string
	for _, l := range n.cfg.Listen {
		a, err := ma.NewMultiaddr(l)
		if err != nil || manet.IsIPUnspecified(a) {
			continue
		}
		tcp, _ := a.ValueForProtocol(ma.P_TCP)
		udp, _ := a.ValueForProtocol(ma.P_UDP)
		if tcp == "0" || udp == "0" {
			continue
		}
		out = append(out, l)
	}
	return out
}

func sameAddrs(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// every runs fn every interval in a background loop until the node closes.
func (n *Node) every(interval time.Duration, fn func()) {
	n.bgWG.Add(1)
	go func() {
		defer n.bgWG.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-n.closed:
				return
			case <-t.C:
			}
			fn()
		}
	}()
}

// propose applies cmd through raft (the caller is the leader).
func (n *Node) propose(cmd membership.Command) error {
	ctx, cancel := context.WithTimeout(n.bgCtx, 10*time.Second)
	defer cancel()
	return n.raft.Propose(ctx, cmd)
}

// heartbeat pings every member that is not removed and returns who
// answered within timeout. The leader answers for itself, unless its own
// store has failed.
func (n *Node) heartbeat(c *config.Cluster, timeout time.Duration) map[string]bool {
	answered := map[string]bool{n.selfID: n.storeErr() == nil}
	var mu sync.Mutex
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(n.bgCtx, timeout)
	defer cancel()
	for _, m := range c.Members {
		id, err := peer.Decode(m.ID)
		if err != nil || m.ID == n.selfID || m.State == membership.Removed {
			continue
		}
		wg.Go(func() {
			resp, err := n.client.Do(ctx, id, &wire.Request{Op: wire.OpPing})
			if err == nil && resp.Status == wire.StatusOK {
				mu.Lock()
				answered[m.ID] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return answered
}

// RepairPass runs one repair pass now, then commits a rebalance target its
// owners hold and removes drained members that hold nothing. It returns
// raftmap.ErrNotLeader on a node that is not the ready raft leader.
func (n *Node) RepairPass(ctx context.Context) error {
	if !n.raft.IsLeader() || !n.leaderReady.Load() {
		return raftmap.ErrNotLeader
	}
	c := n.raft.Cluster()
	if c == nil {
		return errors.New("repair: the cluster is not initialised yet")
	}
	// Stop when this node stops leading: two passes must not act on
	// different maps at once.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if !n.raft.IsLeader() {
				cancel()
				return
			}
		}
	}()
	n.passEpoch.Store(c.Map.Epoch)
	// Members not listed (down, out) may hold shards of a write to an
	// earlier map's owners: repair counts them as absent. One description
	// gives both, so a member coming back meanwhile is counted once.
	var nodes []string
	absent := 0
	for _, m := range c.Members {
		switch m.State {
		case membership.Up, membership.Joining, membership.Draining:
			nodes = append(nodes, m.ID)
		case membership.Removed:
		default:
			absent++
		}
	}
	plan, err := n.driver.Pass(ctx, c.Map, c.Target, nodes, absent)
	if err != nil {
		return err
	}
	if slots := filledSlots(plan, c); slots != nil {
		// Every owner of those slots answered and they are at full
		// redundancy: their new owners hold all they should.
		if err := n.propose(membership.Command{Op: membership.OpFilled, Epoch: c.Map.Epoch, Slots: slots}); err != nil {
			log.Warnw("mark slots filled", "epoch", c.Map.Epoch, "err", err)
		}
	}
	if c.Target != nil && plan.TargetReady {
		cmd := membership.Command{Op: membership.OpCommit, Epoch: c.Target.Epoch, At: time.Now().UnixNano()}
		if err := n.propose(cmd); err != nil {
			return fmt.Errorf("commit rebalance to epoch %d: %w", c.Target.Epoch, err)
		}
		log.Infow("rebalance committed: the new owners hold every shard", "epoch", c.Target.Epoch)
	}
	for _, m := range c.Members {
		_, inMap := c.Map.NodeIndex(m.ID)
		if m.State != membership.Draining || inMap || c.Target != nil {
			continue
		}
		if held, listed := plan.Held[m.ID]; listed && held == 0 {
			if err := n.propose(membership.Command{Op: membership.OpRemove, ID: m.ID, At: time.Now().UnixNano()}); err != nil {
				return fmt.Errorf("remove drained %s: %w", m.ID, err)
			}
			log.Infow("drained node removed: it holds nothing", "id", m.ID)
		}
	}
	return nil
}

// filledSlots returns the slots (a bitset) that have unfilled positions in
// c and that plan found settled, or nil when there are none.
func filledSlots(plan *repair.Plan, c *config.Cluster) []byte {
	if c.Unfilled == nil || plan.Unsettled == nil {
		return nil
	}
	var slots []byte
	for slot := range uint16(placement.NumSlots) {
		if plan.Unsettled[slot] {
			continue
		}
		for pos := range c.Map.Width {
			if !c.Vouches(slot, pos) {
				if slots == nil {
					slots = make([]byte, placement.NumSlots/8)
				}
				slots[slot/8] |= 1 << (slot % 8)
				break
			}
		}
	}
	return slots
}
