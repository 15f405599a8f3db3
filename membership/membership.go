package membership

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/placement"
)

// Member states.
const (
	Joining  = "joining"
	Up       = "up"
	Down     = "down"
	Out      = "out"
	Draining = "draining"
	Removed  = "removed"
)

// Command ops.
const (
	OpInit      = "init"      // Cluster: the initial cluster (first log entry)
	OpJoin      = "join"      // Member: add (or re-add) a node as joining
	OpState     = "state"     // ID, State, At: a heartbeat-driven state change
	OpDrain     = "drain"     // ID, At: start moving a node's data away
	OpRebalance = "rebalance" // recompute the assignment from the members
	OpCommit    = "commit"    // Epoch: the target of that epoch becomes the map
	OpRemove    = "remove"    // ID, At: a drained node that holds nothing leaves
	OpGrant     = "grant"     // ID, Role: give a client peer a role (config.Cluster.Clients)
	OpRevoke    = "revoke"    // ID: take a client peer's role away
	OpAdmit     = "admit"     // ID: let a new node join while client roles are enforced
	OpFilled    = "filled"    // Epoch, Slots: repair found those slots of the map of that epoch at full redundancy
)

// ErrRejected wraps every error of Apply: the command was not applied and
// the cluster is unchanged.
var ErrRejected = errors.New("membership: command rejected")

// Command is one change to the cluster, as the raft log carries it (JSON).
type Command struct {
	Op      string          `json:"op"`
	Cluster *config.Cluster `json:"cluster,omitempty"`
	Member  *config.Member  `json:"member,omitempty"`
	ID      string          `json:"id,omitempty"`
	State   string          `json:"state,omitempty"`
	At      int64           `json:"at,omitempty"` // Unix nanoseconds
	Epoch   uint64          `json:"epoch,omitempty"`
	Role    string          `json:"role,omitempty"`
	// Slots is a bitset of slots (OpFilled; nil: every slot).
	Slots []byte `json:"slots,omitempty"`
	// By is the peer that asked for the command, set by the node that
	// took it from that peer (a member forwarding it keeps it); empty only
	// for the raft leader's own proposals. Once client roles are enforced,
	// Apply takes commands only from members and read-write clients,
	// judged by the cluster as the command applies, so a role revoked (or
	// a member removed) just before cannot slip through a node that had
	// not applied the change yet.
	By string `json:"by,omitempty"`
}

// Init returns c with Members filled from the map's nodes (all up) when it
// has none, as a config written by dscfg has.
func Init(c *config.Cluster) *config.Cluster {
	d := c.Clone()
	if len(d.Members) == 0 {
		for _, n := range d.Map.Nodes {
			d.Members = append(d.Members, config.Member{Node: n, State: Up})
		}
	}
	return d
}

// Apply returns the cluster after cmd. c is not modified (nil before the
// init command). An error wraps ErrRejected and says why; it is the same on
// every replica, since Apply depends on nothing but its arguments.
func Apply(c *config.Cluster, cmd Command) (*config.Cluster, error) {
	reject := func(format string, args ...any) (*config.Cluster, error) {
		return nil, fmt.Errorf("%w: %s: %s", ErrRejected, cmd.Op, fmt.Sprintf(format, args...))
	}
	if cmd.Op == OpInit {
		if c != nil {
			return reject("the cluster is already initialised")
		}
		if cmd.Cluster == nil {
			return reject("no cluster")
		}
		if err := cmd.Cluster.Validate(); err != nil {
			return reject("%v", err)
		}
		d := Init(cmd.Cluster)
		d.MapSince = cmd.At
		return d, nil
	}
	if c == nil {
		return reject("the cluster is not initialised yet")
	}
	d := c.Clone()
	if cmd.Op != OpJoin && !mayChange(d, cmd.By) {
		return reject("peer %s is not a member or a read-write client of a cluster that enforces client roles", cmd.By)
	}
	switch cmd.Op {
	case OpJoin:
		if cmd.Member == nil {
			return reject("no member")
		}
		nm := *cmd.Member
		_, known := d.Member(nm.ID)
		if err := checkJoin(&nm.Node, known); err != nil {
			return reject("member %q: %v", nm.ID, err)
		}
		if _, client := d.ClientRole(nm.ID); client {
			return reject("member %q: it is a client with a role; revoke the role first", nm.ID)
		}
		// Once roles are enforced, a new node (or a removed one) needs a
		// member or a read-write client to have admitted it; the cluster
		// secret is not enough. Members rejoin (a restart) as before.
		if i := slices.Index(d.Admitted, nm.ID); i >= 0 {
			d.Admitted = slices.Delete(d.Admitted, i, i+1)
		} else if m, _ := d.Member(nm.ID); len(d.Clients) > 0 && (m == nil || m.State == Removed) {
			return reject("node %s is not admitted: the cluster enforces client roles, so a read-write client first runs `dsclient node admit %s`", nm.ID, nm.ID)
		}
		nm.Addrs = slices.Clone(nm.Addrs)
		nm.State, nm.Since, nm.Leaving = Joining, cmd.At, false
		if m, ok := d.Member(nm.ID); ok {
			switch m.State {
			case Out:
				// A member that went out while draining comes back
				// draining: its data is misplaced by now and gets dropped,
				// then it is removed. The drain is never cancelled.
				leaving := m.Leaving
				*m = nm
				if leaving {
					m.State, m.Leaving = Draining, true
				}
			case Removed:
				if m.Stale {
					return reject("member %s was removed while out: its folder may hold shards of values deleted since, "+
						"which would come back; wipe it and join with a new identity", nm.ID)
				}
				*m = nm
			default:
				// Already a member: a restarted node may have new addresses.
				m.Addrs = nm.Addrs
			}
			// Front ends dial the nodes of the maps: a node that moved
			// is found at its new addresses without a new map epoch
			// (placement does not depend on addresses).
			for _, pm := range []*placement.Map{d.Map, d.Target} {
				if pm == nil {
					continue
				}
				if i, ok := pm.NodeIndex(nm.ID); ok {
					pm.Nodes[i].Addrs = slices.Clone(nm.Addrs)
				}
			}
			return d, nil
		}
		if len(d.Members) >= placement.MaxNodes {
			return reject("the cluster has %d members already", len(d.Members))
		}
		d.Members = append(d.Members, nm)
		return d, nil
	case OpState:
		m, ok := d.Member(cmd.ID)
		if !ok {
			return reject("no member %s", cmd.ID)
		}
		if !allowed(m.State, cmd.State) {
			return reject("member %s cannot go from %s to %s", cmd.ID, m.State, cmd.State)
		}
		// A drained member that was down comes back draining, never up.
		if m.Leaving != (cmd.State == Draining) && m.State == Down && cmd.State != Out {
			return reject("member %s (leaving %v) cannot go from down to %s", cmd.ID, m.Leaving, cmd.State)
		}
		m.State, m.Since = cmd.State, cmd.At
		return d, nil
	case OpDrain:
		m, ok := d.Member(cmd.ID)
		if !ok {
			return reject("no member %s", cmd.ID)
		}
		if m.Leaving || (m.State != Up && m.State != Joining && m.State != Down) {
			return reject("member %s is %s, only an up, joining or down member can be drained", cmd.ID, m.State)
		}
		if eligibleCount(d)-1 < d.Map.Width {
			return reject("draining %s would leave fewer than %d members to hold the slots", cmd.ID, d.Map.Width)
		}
		m.State, m.Since, m.Leaving = Draining, cmd.At, true
		return d, nil
	case OpRebalance:
		want, direct, err := Desired(d)
		if err != nil {
			return reject("%v", err)
		}
		// Every new map or target gets an epoch above all before it, so a
		// commit meant for a replaced target cannot commit its successor.
		if want != nil && d.Target != nil {
			if !direct && sameTable(want, d.Target) {
				return d, nil // under way
			}
			want.Epoch = max(want.Epoch, d.Target.Epoch+1)
		}
		switch {
		case want == nil:
			d.Target = nil
		case direct:
			d.MarkUnfilled(d.Map, want)
			d.Map, d.Target, d.MapSince = want, nil, cmd.At
			promote(d)
		default:
			d.Target = want
		}
		return d, nil
	case OpFilled:
		if d.Map.Epoch != cmd.Epoch {
			return reject("the map is of epoch %d, not %d", d.Map.Epoch, cmd.Epoch)
		}
		d.MarkFilled(cmd.Slots)
		return d, nil
	case OpCommit:
		if d.Target == nil || d.Target.Epoch != cmd.Epoch {
			return reject("no rebalance target of epoch %d", cmd.Epoch)
		}
		d.MarkUnfilled(d.Map, d.Target)
		d.Map, d.Target, d.MapSince = d.Target, nil, cmd.At
		promote(d)
		return d, nil
	case OpRemove:
		m, ok := d.Member(cmd.ID)
		if !ok {
			return reject("no member %s", cmd.ID)
		}
		if m.State != Draining && m.State != Out {
			return reject("member %s is %s, not draining or out", cmd.ID, m.State)
		}
		if inMap(d.Map, cmd.ID) || inMap(d.Target, cmd.ID) {
			return reject("member %s still owns slots", cmd.ID)
		}
		m.State, m.Since, m.Stale = Removed, cmd.At, m.State == Out
		return d, nil
	case OpGrant:
		id, err := canonical(cmd.ID)
		if err != nil {
			return reject("%v", err)
		}
		cmd.ID = id
		if err := config.CheckRole(cmd.Role); err != nil {
			return reject("%v", err)
		}
		if _, ok := d.Member(cmd.ID); ok {
			return reject("%s is a member of the cluster: members need no role", cmd.ID)
		}
		i := slices.IndexFunc(d.Clients, func(r config.ClientRole) bool { return r.ID == cmd.ID })
		if i < 0 {
			d.Clients = append(d.Clients, config.ClientRole{ID: cmd.ID, Role: cmd.Role})
		} else {
			d.Clients[i].Role = cmd.Role
		}
		if !hasWriter(d) {
			return reject("%s would leave no read-write client: grant read-write to another one first", cmd.ID)
		}
		return d, nil
	case OpRevoke:
		if id, err := canonical(cmd.ID); err == nil {
			cmd.ID = id
		}
		i := slices.IndexFunc(d.Clients, func(r config.ClientRole) bool { return r.ID == cmd.ID })
		if i < 0 {
			return reject("%s has no role", cmd.ID)
		}
		d.Clients = slices.Delete(d.Clients, i, i+1)
		if !hasWriter(d) {
			return reject("%s is the last read-write client: grant read-write to another one first "+
				"(once a role is granted, roles stay enforced)", cmd.ID)
		}
		return d, nil
	case OpAdmit:
		id, err := canonical(cmd.ID)
		if err != nil {
			return reject("%v", err)
		}
		if m, ok := d.Member(id); ok && m.State != Removed {
			return reject("%s is a member already", id)
		}
		if _, ok := d.ClientRole(id); ok {
			return reject("%s is a client with a role; revoke the role first", id)
		}
		if !slices.Contains(d.Admitted, id) {
			d.Admitted = append(d.Admitted, id)
		}
		return d, nil
	}
	return reject("unknown op")
}

// canonical returns peer ID id in its usual (base58) form: peer.Decode
// also takes a peer ID written as a CID, which would never match the form
// nodes compare (peer.ID.String).
func canonical(id string) (string, error) {
	p, err := peer.Decode(id)
	if err != nil {
		return "", fmt.Errorf("%q is not a libp2p peer id: %v", id, err)
	}
	return p.String(), nil
}

// mayChange reports whether peer by (empty: a member or the leader) may
// change the cluster: anyone while client roles are not enforced, then
// members and read-write clients.
func mayChange(c *config.Cluster, by string) bool {
	if by == "" || len(c.Clients) == 0 {
		return true
	}
	if m, ok := c.Member(by); ok && m.State != Removed {
		return true
	}
	role, _ := c.ClientRole(by)
	return role == config.RoleReadWrite
}

// hasWriter reports whether a read-write client is left among c's clients,
// so that roles, once enforced, always have a client that may change them.
func hasWriter(c *config.Cluster) bool {
	return slices.ContainsFunc(c.Clients, func(r config.ClientRole) bool { return r.Role == config.RoleReadWrite })
}

// checkJoin checks the node of a join command, so that a bad join cannot
// poison the cluster: a weight out of range would make every later
// Assign fail (no rebalance ever again), a peer ID that does not parse
// would make every raft configuration change fail, and an address that
// does not parse would leave the member unreachable. The peer ID of a
// known member (known) is not checked again: it was accepted by the init
// command or by an earlier join, and the join only refreshes it.
func checkJoin(n *placement.Node, known bool) error {
	if n.ID == "" {
		return errors.New("id is empty")
	}
	if !known {
		if _, err := peer.Decode(n.ID); err != nil {
			return fmt.Errorf("id is not a libp2p peer id: %v", err)
		}
	}
	if n.Weight < 0 || n.Weight > placement.MaxWeight {
		return fmt.Errorf("weight %d is outside 0..%d", n.Weight, placement.MaxWeight)
	}
	if len(n.Addrs) == 0 {
		return errors.New("addrs is empty: a member needs an address to be reached at")
	}
	for _, a := range n.Addrs {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return fmt.Errorf("addrs: %q is not a multiaddr: %v", a, err)
		}
	}
	return nil
}

// allowed lists the heartbeat-driven transitions.
func allowed(from, to string) bool {
	switch to {
	case Draining:
		return from == Down // a draining member that was down answers again
	case Down:
		return from == Up || from == Joining || from == Draining
	case Up:
		return from == Down || from == Joining
	case Joining:
		return from == Down
	case Out:
		return from == Down
	}
	return false
}

// promote marks joining members that own slots in the map as up.
func promote(c *config.Cluster) {
	for i := range c.Members {
		if c.Members[i].State == Joining && inMap(c.Map, c.Members[i].ID) {
			c.Members[i].State = Up
		}
	}
}

func inMap(m *placement.Map, id string) bool {
	if m == nil {
		return false
	}
	_, ok := m.NodeIndex(id)
	return ok
}

// eligible says whether a member should own slots.
func eligible(m *config.Member) bool {
	return !m.Leaving && (m.State == Up || m.State == Joining || m.State == Down)
}

func eligibleCount(c *config.Cluster) int {
	n := 0
	for i := range c.Members {
		if eligible(&c.Members[i]) {
			n++
		}
	}
	return n
}

// Desired computes the assignment the members call for, starting from the
// map so that few slots move. It returns nil when the map already holds
// exactly the eligible members (same IDs, zones and weights): rebalancing
// follows membership, not the assignment's own second thoughts (Assign
// run again on its own output may still improve zone spread a little, and
// each round would cost a full copy). direct is true when the map must
// change at once because a node of the map is out or removed: its shards
// cannot be copied, only rebuilt. Such a map moves that node's positions
// and, but for zone spread, no other: it is assigned over the map's other
// nodes, draining ones included, and joiners only as many as the width
// needs; the rest of the joins and drains wait for the next rebalance,
// which copies. A position that changes owner at once reads as unfilled
// until repair fills it, and one whose old owner still held its shards
// would hide them: a value acknowledged on its write quorum only could
// then read as its older version (chaos seed 345).
func Desired(c *config.Cluster) (want *placement.Map, direct bool, err error) {
	var nodes, kept []placement.Node
	for i := range c.Members {
		if eligible(&c.Members[i]) {
			nodes = append(nodes, c.Members[i].Node)
		}
	}
	// Draining members get no slots in the end; down ones keep theirs
	// until out.
	for _, n := range c.Map.Nodes {
		m, ok := c.Member(n.ID)
		switch {
		case ok && (m.State == Out || m.State == Removed):
			direct = true
		case ok:
			kept = append(kept, m.Node)
		}
	}
	if direct {
		for _, n := range nodes {
			if len(kept) >= c.Map.Width {
				break
			}
			if !slices.ContainsFunc(kept, func(k placement.Node) bool { return k.ID == n.ID }) {
				kept = append(kept, n)
			}
		}
		nodes = kept
	}
	if sameNodes(nodes, c.Map.Nodes) {
		return nil, false, nil
	}
	want, err = placement.Assign(c.Map, nodes, c.Map.Width)
	if err != nil {
		return nil, false, fmt.Errorf("assign %d members: %w", len(nodes), err)
	}
	if sameTable(want, c.Map) {
		return nil, false, nil
	}
	return want, direct, nil
}

// sameNodes reports whether a and b hold the same nodes (ID, zone and
// weight), in any order.
func sameNodes(a, b []placement.Node) bool {
	if len(a) != len(b) {
		return false
	}
	type shape struct {
		zone   string
		weight int
	}
	m := make(map[string]shape, len(a))
	for _, n := range a {
		m[n.ID] = shape{n.Zone, n.Weight}
	}
	for _, n := range b {
		if s, ok := m[n.ID]; !ok || s != (shape{n.Zone, n.Weight}) {
			return false
		}
	}
	return true
}

// sameTable reports whether a and b put the same node IDs at every position.
func sameTable(a, b *placement.Map) bool {
	if a.Width != b.Width || len(a.Table) != len(b.Table) {
		return false
	}
	for i := range a.Table {
		if a.Nodes[a.Table[i]].ID != b.Nodes[b.Table[i]].ID {
			return false
		}
	}
	return true
}

// Decide returns what the raft leader should propose now, given the
// cluster, which members answered their last heartbeat, the time and the
// grace period after which a down member is out. It returns nothing when
// all is as it should be, so a leader can call it on every tick.
//
// Heartbeat-driven changes (state changes, rejoins of out members) come
// first; only when there are none does Decide consult Desired for a
// rebalance. The error is Desired's: the members call for a map that
// cannot be computed (too few eligible members for the width, say). It
// changes nothing but should be logged, since no rebalance happens until
// the members change. Commands returned with it are still to be proposed.
func Decide(c *config.Cluster, answered map[string]bool, now time.Time, outAfter time.Duration) ([]Command, error) {
	if c == nil {
		return nil, nil
	}
	at := now.UnixNano()
	var cmds []Command
	for _, m := range c.Members {
		ok := answered[m.ID]
		switch {
		case !ok && (m.State == Up || m.State == Joining || m.State == Draining):
			cmds = append(cmds, Command{Op: OpState, ID: m.ID, State: Down, At: at})
		case ok && m.State == Down && m.Leaving:
			cmds = append(cmds, Command{Op: OpState, ID: m.ID, State: Draining, At: at})
		case ok && m.State == Down && inMap(c.Map, m.ID):
			cmds = append(cmds, Command{Op: OpState, ID: m.ID, State: Up, At: at})
		case ok && m.State == Down:
			cmds = append(cmds, Command{Op: OpState, ID: m.ID, State: Joining, At: at})
		case !ok && m.State == Down && now.Sub(time.Unix(0, m.Since)) >= outAfter:
			cmds = append(cmds, Command{Op: OpState, ID: m.ID, State: Out, At: at})
		case ok && m.State == Out:
			mm := m
			mm.Addrs = slices.Clone(m.Addrs)
			cmds = append(cmds, Command{Op: OpJoin, Member: &mm, At: at})
		}
	}
	if len(cmds) > 0 {
		// Rebalance on the next tick, from the states these set.
		return cmds, nil
	}
	want, direct, err := Desired(c)
	if err != nil {
		return nil, err
	}
	switch {
	case want == nil && c.Target != nil:
		return []Command{{Op: OpRebalance, At: at}}, nil // the target is moot now
	case want == nil:
		return nil, nil
	case !direct && c.Target != nil && sameTable(want, c.Target):
		return nil, nil // under way
	}
	return []Command{{Op: OpRebalance, At: at}}, nil
}

// Voter counts: VotersLarge voters once LargeCluster members are neither
// out nor removed, VotersSmall before.
const (
	VotersSmall  = 3
	VotersLarge  = 5
	LargeCluster = 7
)

// Voters returns the members that should be the raft voters, given the
// current voters (nil when there are none yet, as at bootstrap). The
// target count is VotersSmall, or VotersLarge when at least LargeCluster
// members are neither out nor removed. The result is in member order and:
//
//   - keeps every current voter that is still a member and is not out,
//     removed or leaving (draining). A down voter stays a voter until it is
//     out, so a restart costs no configuration change;
//   - never adds a member that is not up, or that is leaving: a voter that
//     cannot answer raises the quorum without adding to it (with voters
//     A, B, C and a down D, C going out must not make D a voter: 4 voters
//     with 2 dead have no quorum, and raft would never elect a leader);
//   - when more current voters are kept than the target (the cluster
//     shrank below LargeCluster), drops the extra ones, keeping up members
//     first, then the others, each in member order;
//   - fills up to the target with up, non-leaving members in member order.
//
// A leaving member is never a voter; when the raft leader itself is one,
// it should hand over leadership (raftmap's TransferLeadership) so that
// the next leader demotes it.
func Voters(c *config.Cluster, current []string) []string {
	if c == nil {
		return nil
	}
	live := 0
	for i := range c.Members {
		if s := c.Members[i].State; s != Out && s != Removed {
			live++
		}
	}
	n := VotersSmall
	if live >= LargeCluster {
		n = VotersLarge
	}
	isCurrent := make(map[string]bool, len(current))
	for _, id := range current {
		isCurrent[id] = true
	}
	// Member indexes of the current voters that stay, up ones first.
	var up, other []int
	for i := range c.Members {
		m := &c.Members[i]
		if !isCurrent[m.ID] || m.Leaving {
			continue
		}
		switch m.State {
		case Out, Removed, Draining:
		case Up:
			up = append(up, i)
		default:
			other = append(other, i)
		}
	}
	keep := append(up, other...)
	if len(keep) > n {
		keep = keep[:n]
	}
	chosen := make(map[int]bool, n)
	for _, i := range keep {
		chosen[i] = true
	}
	for i := range c.Members {
		if len(chosen) >= n {
			break
		}
		if m := &c.Members[i]; !chosen[i] && m.State == Up && !m.Leaving {
			chosen[i] = true
		}
	}
	var out []string
	for i := range c.Members {
		if chosen[i] {
			out = append(out, c.Members[i].ID)
		}
	}
	return out
}

// GCHold says why tombstones must be kept now, from description c, or ""
// when nothing in it holds garbage collection back. While a rebalance is
// under way the new owners of a slot may hold an older copy that only the
// tombstone hides; a member outside the map (out, joining or draining) may
// hold old shards no listing of the map's nodes shows. Front ends check it
// before they collect garbage, and nodes before they purge, so a front end
// whose description lags the cluster's purges nothing where a node knows
// better.
func GCHold(c *config.Cluster) string {
	if c.Target != nil {
		return fmt.Sprintf("a rebalance to map epoch %d is under way", c.Target.Epoch)
	}
	if m, ok := memberOutsideMap(c); ok {
		s := fmt.Sprintf("member %s is %s, outside the map, and may hold old shards", m.ID, m.State)
		if m.State == Out {
			s += " (dsclient node remove it if it is gone for good)"
		}
		return s
	}
	return ""
}

// memberOutsideMap returns a member that is not removed and not in c's
// map: it may hold shards that no listing of the map's nodes shows.
func memberOutsideMap(c *config.Cluster) (config.Member, bool) {
	for _, m := range c.Members {
		if m.State == Removed {
			continue
		}
		if _, in := c.Map.NodeIndex(m.ID); !in {
			return m, true
		}
	}
	return config.Member{}, false
}
