package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/node/raftmap"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/repair"
	"github.com/filedrive-team/go-ds-cluster/transport"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// clusterFile keeps the last cluster description the node applied, so a
// restarted node serves with its latest map before raft catches it up.
const clusterFile = "cluster.json"

// startCluster opens raft and starts the loops that keep the cluster: the
// leader's heartbeats and membership decisions, the repair passes, and the
// scrubber.
func (n *Node) startCluster(opts Options) error {
	var boot []string
	if len(n.cfg.Cluster.Members) == 0 {
		// A config from dscfg: the initial voters bootstrap raft, all
		// with the same list.
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
		// A lost key is rolled back from a version whose write provably
		// never reached its quorum: the quorum as the cluster defines it,
		// owners of a map that has not changed since the write.
		// Both come from the raft state a pass plans from, or a newer one
		// (n.cluster may lag it): a later map time only holds roll-backs
		// back.
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
	n.bgWG.Add(3)
	go n.controlLoop(opts.HeartbeatInterval, opts.OutAfter)
	go n.repairLoop(opts.RepairInterval)
	go n.every(opts.HeartbeatInterval, n.announceAddrs)
	if opts.ScrubInterval > 0 {
		n.bgWG.Add(1)
		go n.scrubLoop(opts.ScrubInterval)
	}
	return nil
}

// loadCluster returns the cluster saved by a previous run, if it is newer
// than the config's.
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

// setCluster is raft's change callback: it installs the new cluster
// description, teaches the peerstore the members' addresses and saves it.
func (n *Node) setCluster(c *config.Cluster) {
	if c == nil {
		return
	}
	// A restarted node's raft first restores its last snapshot, which may
	// be older than the description saved at its last change: a map never
	// goes back, so an older one waits for the log to replay.
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

// mayRaft reports whether peer p may open raft streams to this node: once
// client roles are enforced only members may, so that a client cannot
// pose as a raft leader and rewrite the cluster description. A node that
// was down while newer members joined does not know them, and the leader
// may be one of them: a peer that a member this node knows lists as a
// member is taken too (vouch). Its first streams are refused while the
// members are asked; raft sends again.
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
		for q, at := range n.vouchAsked {
			if time.Since(at) >= time.Second {
				delete(n.vouchAsked, q)
			}
		}
	}
	n.vouchAsked[p] = time.Now()
	n.vouching++
	n.vouchWG.Add(1)
	go func(gen uint64) {
		defer n.vouchWG.Done()
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
	}(n.vouchGen)
	return false
}

// maxVouching bounds the vouch checks in flight.
const maxVouching = 4

// vouch asks the members of c that may be up, all at once, for their
// cluster description, and reports whether one of them lists p as a
// member, and which.
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
		wg.Add(1)
		go func() {
			defer wg.Done()
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
		}()
	}
	wg.Wait()
	select {
	case by := <-found:
		return true, by
	default:
		return false, ""
	}
}

// dialMembers records in the peerstore where the members of c are dialled,
// dropping the addresses that before (the previous description, or nil)
// gave and c no longer does.
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
	c := n.cluster.Load()
	if m, ok := c.Member(id.String()); ok {
		addrs, _ := transport.DialAddrs(m.Addrs)
		return addrs
	}
	return nil
}

// controlLoop runs on every node and acts only on the raft leader: it
// initialises the cluster, sends heartbeats, proposes the state changes
// membership.Decide calls for, and keeps the raft voters in line.
func (n *Node) controlLoop(every, outAfter time.Duration) {
	n.every(every, func() { n.controlTick(every, outAfter) })
}

// controlTick is one round of the control loop.
func (n *Node) controlTick(every, outAfter time.Duration) {
	if !n.raft.IsLeader() {
		n.leaderReady.Store(false)
		return
	}
	if !n.leaderReady.Load() {
		// A new leader applies every committed entry before it acts on
		// the cluster description.
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
		// This leader is being drained (or is otherwise not to vote):
		// hand over; the next leader demotes it.
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

// announceAddrs runs on every node: a member that listens at addresses
// other than those the cluster records (it was restarted on another host
// or port) tells the leader, through itself or any member, as a rejoin
// does. Until then nobody can dial it: it would go down, then out, and
// its shards would be rebuilt elsewhere. Only addresses that name an IP
// and a port are announced (statedAddrs). A process announces a set of
// addresses once (retrying every announceRetry until the cluster answers):
// should the record change again, another process runs with this
// identity, which is logged rather than fought over.
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
	// Through this node first (it forwards to the leader it knows); a
	// node that moved may know no leader yet (the leader dials it at its
	// old addresses), so any other member will do.
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

// announceRetry spaces the attempts to announce new addresses.
const announceRetry = 2 * time.Second

// announceState is announceAddrs' memory; only its loop touches it.
type announceState struct {
	done   []string  // the addresses announced (accepted or refused)
	warned bool      // the record differs from done, and that was logged
	next   time.Time // no attempt before
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
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// every runs fn every interval until the node closes; it is a background
// loop (bgWG), started with n.bgWG.Add(1).
func (n *Node) every(interval time.Duration, fn func()) {
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
}

// propose applies cmd through raft (the caller is the leader).
func (n *Node) propose(cmd membership.Command) error {
	ctx, cancel := context.WithTimeout(n.bgCtx, 10*time.Second)
	defer cancel()
	return n.raft.Propose(ctx, cmd)
}

// heartbeat pings every member that is not out or removed and returns who
// answered within the interval. The leader answers for itself.
func (n *Node) heartbeat(c *config.Cluster, timeout time.Duration) map[string]bool {
	// The leader answers for itself, unless its own store has failed.
	answered := map[string]bool{n.selfID: n.storeErr() == nil}
	var mu sync.Mutex
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(n.bgCtx, timeout)
	defer cancel()
	for _, m := range c.Members {
		if m.ID == n.selfID || m.State == membership.Removed {
			continue
		}
		id, err := peer.Decode(m.ID)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := n.client.Do(ctx, id, &wire.Request{Op: wire.OpPing})
			if err == nil && resp.Status == wire.StatusOK {
				mu.Lock()
				answered[m.ID] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return answered
}

// repairLoop runs a repair pass every interval while this node leads, then
// commits a rebalance target its owners hold and removes drained members.
func (n *Node) repairLoop(every time.Duration) {
	n.every(every, func() {
		if !n.raft.IsLeader() {
			return
		}
		if err := n.RepairPass(n.bgCtx); err != nil && n.bgCtx.Err() == nil {
			log.Warnw("repair pass", "err", err)
		}
	})
}

// RepairPass runs one repair pass now (the leader's loop calls it; tests
// may too). It fails on a node that is not the raft leader.
func (n *Node) RepairPass(ctx context.Context) error {
	if !n.raft.IsLeader() || !n.leaderReady.Load() {
		return raftmap.ErrNotLeader
	}
	c := n.raft.Cluster()
	if c == nil {
		return errors.New("repair: the cluster is not initialised yet")
	}
	// A pass stops when this node stops leading: another leader plans from
	// then on, and two passes must not act on different maps at once.
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
				if !n.raft.IsLeader() {
					cancel()
					return
				}
			}
		}
	}()
	n.passEpoch.Store(c.Map.Epoch)
	// Members that are not listed (down, out) may hold shards of a write
	// made to an earlier map's owners: repair counts them, from the same
	// description as the nodes it lists, so that a member coming back
	// meanwhile is counted once, as one or the other.
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
		// Those slots are at full redundancy on the map's owners, every one
		// of which answered: their new owners hold all they should, and
		// their answers show what reached them again.
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

// member serves OpMember: a join, drain, remove, grant, revoke or admit,
// proposed by the leader (a follower forwards it there).
func (n *Node) member(ctx context.Context, from peer.ID, body []byte) *wire.Response {
	var cmd membership.Command
	if err := json.Unmarshal(body, &cmd); err != nil {
		return &wire.Response{Status: wire.StatusBadRequest, Message: fmt.Sprintf("member command does not parse: %v", err)}
	}
	switch cmd.Op {
	case membership.OpJoin, membership.OpDrain:
	case membership.OpRemove:
		// An operator gives up on an out member (its machine is gone):
		// its shards were rebuilt elsewhere, and garbage collection
		// waits for out members. Others leave by a drain.
		if m, ok := n.cluster.Load().Member(cmd.ID); !ok || m.State != membership.Out {
			state := "not a member"
			if ok {
				state = m.State
			}
			return &wire.Response{Status: wire.StatusBadRequest,
				Message: fmt.Sprintf("remove %s: it is %s; only an out member can be removed (drain a live one)", cmd.ID, state)}
		}
	case membership.OpGrant, membership.OpRevoke, membership.OpAdmit:
	default:
		return &wire.Response{Status: wire.StatusBadRequest, Message: fmt.Sprintf("member command %q: only join, drain, remove, grant, revoke and admit are accepted", cmd.Op)}
	}
	// The command names who asked, for Apply to judge under the roles as
	// they stand when it applies; a member forwarding it keeps the name.
	c := n.cluster.Load()
	if cmd.By == "" || !n.isMember(c, from) {
		cmd.By = from.String()
	}
	// A node joins as itself; a member may forward another's join. Other
	// commands change the cluster: members and, once roles are enforced,
	// read-write clients only.
	if cmd.Op == membership.OpJoin && (cmd.Member == nil || cmd.Member.ID != from.String()) && !n.isMember(c, from) {
		return &wire.Response{Status: wire.StatusUnauthorized, Message: fmt.Sprintf("join: peer %s may only ask to join as itself", from)}
	}
	if cmd.Op != membership.OpJoin {
		if resp := n.checkRole(c, from, "member "+cmd.Op, true); resp != nil {
			return resp
		}
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return &wire.Response{Status: wire.StatusInternal, Message: err.Error()}
	}
	cmd.At = time.Now().UnixNano()
	if n.raft.IsLeader() {
		if n.raft.Cluster() == nil {
			// A new group's leader has not applied the initial cluster
			// yet: moments after start, not a rejection.
			return &wire.Response{Status: wire.StatusUnavailable, Message: "the raft group is starting; retry"}
		}
		if cmd.Op == membership.OpGrant || cmd.Op == membership.OpRevoke || cmd.Op == membership.OpAdmit {
			// A revoke may be urgent (a client's key leaked): members that
			// do not answer do not hold it back. One that applied the
			// grant runs a version with roles, and one of an older version
			// never enforced them.
			if err := n.everyMemberHas(ctx, c, FeatureRoles, cmd.Op == membership.OpRevoke); err != nil {
				return &wire.Response{Status: wire.StatusBadRequest, Message: fmt.Sprintf("%s: %v", cmd.Op, err)}
			}
		}
		if cmd.Op == membership.OpJoin && len(c.Clients) > 0 && cmd.Member != nil && mayJoin(c, cmd.Member.ID) {
			if resp := n.joinerHasRoles(ctx, cmd.Member); resp != nil {
				return resp
			}
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := n.raft.Propose(pctx, cmd)
		switch {
		case err == nil:
			return &wire.Response{Status: wire.StatusOK}
		case errors.Is(err, membership.ErrRejected):
			return &wire.Response{Status: wire.StatusBadRequest, Message: err.Error()}
		case errors.Is(err, raftmap.ErrNotLeader):
			// Leadership moved (or is being transferred) since IsLeader:
			// nothing was proposed, so asking again is safe.
			return &wire.Response{Status: wire.StatusUnavailable, Message: "the raft leadership is moving; retry"}
		default:
			return &wire.Response{Status: wire.StatusInternal, Message: err.Error()}
		}
	}
	leader, ok := n.raft.Leader()
	if !ok {
		return &wire.Response{Status: wire.StatusUnavailable, Message: "no raft leader right now; retry"}
	}
	// The leader may take 5 s asking a joiner's status (joinerHasRoles),
	// then 10 s proposing: more than that, so that a command the leader
	// applies is not reported failed here.
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	resp, err := n.client.Do(fctx, leader, &wire.Request{Op: wire.OpMember, Body: body})
	if err != nil {
		return &wire.Response{Status: wire.StatusInternal, Message: fmt.Sprintf("forward to the raft leader %s: %v", leader, err)}
	}
	return &wire.Response{Status: resp.Status, Message: resp.Message}
}

// everyMemberHas checks that every member of c but the removed ones
// reports feature in its status: a command that a replica of an older
// version would reject must not be proposed, or the replicas part. A
// member that does not answer fails the check too (it may be of any
// version), unless unanswered is set: the operator brings it back or
// removes it. (A node's description always lists its members:
// membership.Init fills them in from the map.)
func (n *Node) everyMemberHas(ctx context.Context, c *config.Cluster, feature string, unanswered bool) error {
	var ids []string
	for _, m := range c.Members {
		if m.State != membership.Removed && m.ID != n.selfID {
			ids = append(ids, m.ID)
		}
	}
	problems := make([]string, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fs, err := n.featuresOf(ctx, id, 0)
			switch {
			case err != nil && !unanswered:
				problems[i] = fmt.Sprintf("%s did not answer (%v)", id, err)
			case err == nil && !slices.Contains(fs, feature):
				problems[i] = fmt.Sprintf("%s runs a version without %s", id, feature)
			}
		}()
	}
	wg.Wait()
	problems = slices.DeleteFunc(problems, func(p string) bool { return p == "" })
	if len(problems) > 0 {
		return fmt.Errorf("every member must run a version with %s first (upgrade it, or remove a member that is gone for good): %s",
			feature, strings.Join(problems, "; "))
	}
	return nil
}

// mayJoin reports whether id is admitted or a member that is not removed:
// the joins the raft log can accept once roles are enforced. The others
// are refused there, without the leader dialling what they announce.
func mayJoin(c *config.Cluster, id string) bool {
	m, ok := c.Member(id)
	return slices.Contains(c.Admitted, id) || ok && m.State != membership.Removed
}

// joinerHasRoles refuses the join of m into a cluster that enforces client
// roles unless m runs a version with them: a node of an older version
// would fail to apply the role commands in the raft log, and its replica
// of the cluster description would part from the others' and enforce no
// roles. Role commands check the members (everyMemberHas); this checks
// the node about to become one, at the addresses it announces. A node
// that does not answer may just not be reachable yet: the joiner retries.
func (n *Node) joinerHasRoles(ctx context.Context, m *config.Member) *wire.Response {
	if id, err := peer.Decode(m.ID); err == nil && id != n.host.ID() {
		if addrs, err := transport.DialAddrs(m.Addrs); err == nil {
			n.host.Peerstore().AddAddrs(id, addrs, peerstore.TempAddrTTL)
		}
	}
	fs, err := n.featuresOf(ctx, m.ID, 0)
	switch {
	case err != nil:
		return &wire.Response{Status: wire.StatusUnavailable,
			Message: fmt.Sprintf("join: the cluster enforces client roles, and %s did not answer the leader's status request at %v: %v", m.ID, m.Addrs, err)}
	case !slices.Contains(fs, FeatureRoles):
		return &wire.Response{Status: wire.StatusBadRequest,
			Message: fmt.Sprintf("join: the cluster enforces client roles, and %s runs a version without %s: upgrade it first", m.ID, FeatureRoles)}
	}
	return nil
}

// featuresOf returns the features node's status lists, as it answered at
// most maxAge ago (0: ask now). A node of a version before features lists
// none.
func (n *Node) featuresOf(ctx context.Context, node string, maxAge time.Duration) ([]string, error) {
	if node == n.selfID {
		return features, nil
	}
	if maxAge > 0 {
		if v, ok := n.featureCache.Load(node); ok {
			if f := v.(cachedFeatures); time.Since(f.at) < maxAge {
				return f.features, nil
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := peers{n}.do(ctx, node, &wire.Request{Op: wire.OpStatus})
	if resp != nil && resp.Status == wire.StatusUnauthorized {
		// Only a node that applies client roles refuses a peer for want
		// of one (its description predates this node's joining, say).
		// What else it runs is unknown: not cached.
		return []string{FeatureRoles}, nil
	}
	if err != nil {
		return nil, err
	}
	var st Status
	if err := json.Unmarshal(resp.Payload, &st); err != nil {
		return nil, fmt.Errorf("status of %s: %w", node, err)
	}
	n.featureCache.Store(node, cachedFeatures{features: st.Features, at: time.Now()})
	return st.Features, nil
}

// cachedFeatures is a node's features as it answered at a time.
type cachedFeatures struct {
	features []string
	at       time.Time
}

// featureMaxAge is how long the repair leader trusts a node's features:
// a node upgraded (or downgraded) is seen within it.
const featureMaxAge = time.Minute

// peers implements repair.SlotPeers over the node's client.
type peers struct{ n *Node }

var _ repair.SlotPeers = peers{}

func (p peers) do(ctx context.Context, node string, req *wire.Request) (*wire.Response, error) {
	id, err := peer.Decode(node)
	if err != nil {
		return nil, fmt.Errorf("peer id %q: %w", node, err)
	}
	var resp *wire.Response
	if id == p.n.host.ID() {
		// libp2p does not dial itself: serve the leader's own shards here.
		// The response may alias the request body, which is not reused.
		resp = p.n.serve(ctx, id, wire.AppendRequest(nil, req), nil)
	} else if resp, err = p.n.client.Do(ctx, id, req); err != nil {
		return nil, err
	}
	if resp.Status != wire.StatusOK {
		return resp, fmt.Errorf("%s from %s: %s: %s", req.Op, node, resp.Status, resp.Message)
	}
	return resp, nil
}

func (p peers) Inventory(ctx context.Context, node string) ([]repair.Holding, error) {
	return p.inventory(ctx, node, wire.OpInventory, 0)
}

func (p peers) InventorySlot(ctx context.Context, node string, slot uint16) ([]repair.Holding, error) {
	return p.inventory(ctx, node, wire.OpSlotInventory, slot)
}

func (p peers) Sums(ctx context.Context, node string) ([]repair.SlotSum, error) {
	resp, err := p.do(ctx, node, &wire.Request{Op: wire.OpSums})
	if err != nil {
		return nil, err
	}
	ss, err := wire.DecodeSumsPayload(resp.Payload)
	if err != nil {
		return nil, err
	}
	out := make([]repair.SlotSum, len(ss))
	for i, s := range ss {
		out[i] = repair.SlotSum{Slot: s.Slot, Pos: int(s.Pos), Count: s.Count, XOR: s.XOR,
			Policy: policyOf(s.Kind, s.K, s.M)}
	}
	return out, nil
}

// inventory pages through a node's OpInventory (slot ignored) or
// OpSlotInventory.
func (p peers) inventory(ctx context.Context, node string, op wire.Op, slot uint16) ([]repair.Holding, error) {
	var out []repair.Holding
	after := ""
	for {
		resp, err := p.do(ctx, node, &wire.Request{Op: op, Slot: slot, After: after})
		if err != nil {
			return nil, err
		}
		es, more, err := wire.DecodeInventoryPayload(resp.Payload)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			out = append(out, repair.Holding{
				Node: node, Key: e.Key, Pos: int(e.Pos),
				Policy:    policyOf(e.Kind, e.K, e.M),
				Version:   coding.Version{HLC: e.HLC, Writer: e.Writer},
				Tombstone: e.Tombstone, ValueLen: e.ValueLen, ShardLen: e.ShardLen,
			})
		}
		if !more || len(es) == 0 {
			return out, nil
		}
		after = es[len(es)-1].Key
	}
}

func (p peers) GetShard(ctx context.Context, node, key string) ([]byte, error) {
	resp, err := p.do(ctx, node, &wire.Request{Op: wire.OpGet, Key: key})
	if err != nil {
		return nil, err
	}
	return resp.Payload, nil
}

func (p peers) PutShard(ctx context.Context, node string, shard []byte) error {
	// A "superseded" answer is a success too: the node holds a newer
	// version, so there is nothing to repair.
	_, err := p.do(ctx, node, &wire.Request{Op: wire.OpPut, Shard: shard})
	return err
}

// Restores reports whether node restores its previous shard on a drop
// with Restore (repair.Restorer).
func (p peers) Restores(ctx context.Context, node string) bool {
	fs, err := p.n.featuresOf(ctx, node, featureMaxAge)
	return err == nil && slices.Contains(fs, FeatureRestoreDrops)
}

// Delegate sends a Copy or Rebuild to the node that stores its shard
// (OpRepair), which reads what it needs from the others itself.
func (p peers) Delegate(ctx context.Context, a repair.Action) error {
	if fs, err := p.n.featuresOf(ctx, a.To, featureMaxAge); err == nil && !slices.Contains(fs, FeatureRepairOrders) {
		return fmt.Errorf("%s: %w", a.To, repair.ErrNotDelegated)
	}
	o := &wire.RepairOrder{Rebuild: a.Kind == repair.Rebuild, Tombstone: a.Tombstone, Key: a.Key, Pos: uint8(a.Pos),
		Kind: uint8(a.Policy.Kind), K: uint8(a.Policy.DataShards), M: uint8(a.Policy.ParityShards),
		HLC: a.Version.HLC, Writer: a.Version.Writer, From: a.From}
	for _, src := range a.Sources {
		o.Sources = append(o.Sources, wire.RepairSource{Node: src.Node, Pos: uint8(src.Pos)})
	}
	resp, err := p.do(ctx, a.To, &wire.Request{Op: wire.OpRepair, Repair: o})
	if resp != nil && resp.Status == wire.StatusBadRequest && strings.Contains(resp.Message, "unknown op") {
		// A node of an older version: the driver does the action itself.
		return fmt.Errorf("%s: %w", resp.Message, repair.ErrNotDelegated)
	}
	return err
}

// repairOrderTimeout bounds the reads and the write of one repair order:
// less than the sender's request timeout, so that the order fails here
// before the sender gives up on it.
const repairOrderTimeout = 25 * time.Second

// repairSourceTimeout bounds the read of one source of a repair order.
const repairSourceTimeout = 8 * time.Second

// repairOrder carries out an OpRepair: it makes the shard (reading its
// sources from the other nodes) and stores it as a member's put.
func (n *Node) repairOrder(ctx context.Context, o *wire.RepairOrder) (wire.Status, string) {
	if o == nil {
		return wire.StatusBadRequest, "repair: no order"
	}
	p := policyOf(o.Kind, o.K, o.M)
	if err := p.Validate(); err != nil {
		return wire.StatusBadRequest, fmt.Sprintf("repair %q: %v", o.Key, err)
	}
	if int(o.Pos) >= p.Width() {
		return wire.StatusBadRequest, fmt.Sprintf("repair %q: position %d outside policy %s", o.Key, o.Pos, p)
	}
	a := repair.Action{Kind: repair.Copy, Key: o.Key, Pos: int(o.Pos), Policy: p,
		Version: coding.Version{HLC: o.HLC, Writer: o.Writer}, Tombstone: o.Tombstone, To: n.selfID, From: o.From}
	if o.Rebuild {
		a.Kind = repair.Rebuild
	}
	for _, src := range o.Sources {
		a.Sources = append(a.Sources, repair.Source{Node: src.Node, Pos: int(src.Pos)})
	}
	ctx, cancel := context.WithTimeout(ctx, repairOrderTimeout)
	defer cancel()
	// Each source gets its own bound, so that one that hangs leaves time
	// for the others.
	get := func(ctx context.Context, node, key string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, repairSourceTimeout)
		defer cancel()
		return peers{n}.GetShard(ctx, node, key)
	}
	shard, err := repair.MakeShard(ctx, get, a)
	if err != nil {
		return wire.StatusUnavailable, err.Error()
	}
	st, msg, _ := n.putShard(ctx, shard, false) // a member's copy: never forwarded
	return st, msg
}

func (p peers) Drop(ctx context.Context, a repair.Action) error {
	node, key := a.To, a.Key
	// The drop carries the map epoch it was planned at: a node on another
	// map refuses it (see Node.drop).
	req := &wire.Request{Op: wire.OpDrop, Epoch: p.n.passEpoch.Load(), Drop: []wire.ShardRef{{
		Key: key, Pos: uint8(a.Pos), HLC: a.Version.HLC, Writer: a.Version.Writer, Stale: a.Stale, Restore: a.Restore}}}
	resp, err := p.do(ctx, node, req)
	if err != nil {
		return err
	}
	rs, err := wire.DecodeBatchPayload(resp.Payload)
	if err != nil {
		return err
	}
	if len(rs) != 1 || (rs[0].Status != wire.StatusOK && rs[0].Status != wire.StatusNotFound) {
		return fmt.Errorf("drop %q on %s: %v", key, node, rs)
	}
	return nil
}
