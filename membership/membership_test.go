package membership_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/internal/testpeer"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/placement"
)

// The tests below tell the membership stories as the raft leader lives
// them: Decide says what to propose, Apply (through the helpers, which
// check that Apply never touches its input) is the FSM. Time is a fixed
// clock moved by hand.

const (
	width    = 6
	outAfter = 10 * time.Minute
)

var t0 = time.Unix(1_700_000_000, 0)

// testNodes returns n nodes (IDs nodeID(0)..nodeID(n-1)), each with one
// address, and zones round robin over zones when any are given.
func testNodes(n int, zones ...string) []placement.Node {
	var nodes []placement.Node
	for i := range n {
		nodes = append(nodes, testNode(i, zones...))
	}
	return nodes
}

// nodeID is the ID of test node i: n0..n6 for the members of the initial
// clusters (init accepts any ID, and short names keep the stories
// readable), and a real libp2p peer ID, the same on every call, from n7 on:
// a node that joins later has its peer ID checked.
func nodeID(i int) string {
	if i < 7 {
		return fmt.Sprintf("n%d", i)
	}
	return testpeer.ID(fmt.Sprintf("node %d", i))
}

func testNode(i int, zones ...string) placement.Node {
	nd := placement.Node{ID: nodeID(i), Addrs: []string{fmt.Sprintf("/ip4/10.0.0.%d/tcp/6735", i)}}
	if len(zones) > 0 {
		nd.Zone = zones[i%len(zones)]
	}
	return nd
}

// testConfig is a cluster as dscfg writes it: a map, no members.
func testConfig(t *testing.T, nodes []placement.Node) *config.Cluster {
	t.Helper()
	m, err := placement.Assign(nil, nodes, width)
	if err != nil {
		t.Fatalf("Assign %d nodes width %d: %v", len(nodes), width, err)
	}
	return &config.Cluster{
		ID:             "test-cluster",
		Policy:         coding.Erasure(4, 2),
		SmallThreshold: config.DefaultSmallThreshold,
		Map:            m,
	}
}

// newCluster initialises a cluster of nodes through OpInit.
func newCluster(t *testing.T, nodes []placement.Node) *config.Cluster {
	t.Helper()
	return must(t, nil, membership.Command{Op: membership.OpInit, Cluster: testConfig(t, nodes)})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

// apply runs membership.Apply and fails the test if it modified c or its
// command's cluster, or if a rejection does not wrap ErrRejected or returns
// a cluster.
func apply(t *testing.T, c *config.Cluster, cmd membership.Command) (*config.Cluster, error) {
	t.Helper()
	before, beforeCmd := mustJSON(t, c), mustJSON(t, cmd)
	d, err := membership.Apply(c, cmd)
	if !bytes.Equal(before, mustJSON(t, c)) {
		t.Fatalf("Apply(%s) modified its input cluster", describe(cmd))
	}
	if !bytes.Equal(beforeCmd, mustJSON(t, cmd)) {
		t.Fatalf("Apply(%s) modified its command", describe(cmd))
	}
	if err != nil {
		if !errors.Is(err, membership.ErrRejected) {
			t.Fatalf("Apply(%s) = %v, want an error wrapping ErrRejected", describe(cmd), err)
		}
		if d != nil {
			t.Fatalf("Apply(%s) rejected (%v) but returned a cluster", describe(cmd), err)
		}
	}
	return d, err
}

// decide runs membership.Decide and fails the test on an error.
func decide(t *testing.T, c *config.Cluster, answered map[string]bool, now time.Time, outAfter time.Duration) []membership.Command {
	t.Helper()
	cmds, err := membership.Decide(c, answered, now, outAfter)
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	return cmds
}

// must applies a command that has to be accepted.
func must(t *testing.T, c *config.Cluster, cmd membership.Command) *config.Cluster {
	t.Helper()
	d, err := apply(t, c, cmd)
	if err != nil {
		t.Fatalf("Apply(%s) = %v, want accepted", describe(cmd), err)
	}
	if d == nil {
		t.Fatalf("Apply(%s) returned a nil cluster", describe(cmd))
	}
	return d
}

// refuse applies a command that has to be rejected and returns the error.
func refuse(t *testing.T, c *config.Cluster, cmd membership.Command) error {
	t.Helper()
	_, err := apply(t, c, cmd)
	if err == nil {
		t.Fatalf("Apply(%s) accepted, want rejected", describe(cmd))
	}
	return err
}

// mustAll applies every command in order.
func mustAll(t *testing.T, c *config.Cluster, cmds []membership.Command) *config.Cluster {
	t.Helper()
	for _, cmd := range cmds {
		c = must(t, c, cmd)
	}
	return c
}

func describe(cmd membership.Command) string {
	s := cmd.Op
	if cmd.ID != "" {
		s += " " + cmd.ID
	}
	if cmd.State != "" {
		s += " -> " + cmd.State
	}
	if cmd.Member != nil {
		s += " member " + cmd.Member.ID
	}
	if cmd.Op == membership.OpCommit {
		s += fmt.Sprintf(" epoch %d", cmd.Epoch)
	}
	return s
}

func describeAll(cmds []membership.Command) string {
	var s []string
	for _, cmd := range cmds {
		s = append(s, describe(cmd))
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// answering returns the heartbeat answers of every member but the silent.
func answering(c *config.Cluster, silent ...string) map[string]bool {
	a := map[string]bool{}
	for _, m := range c.Members {
		if !slices.Contains(silent, m.ID) {
			a[m.ID] = true
		}
	}
	return a
}

func stateOf(t *testing.T, c *config.Cluster, id string) string {
	t.Helper()
	m, ok := c.Member(id)
	if !ok {
		t.Fatalf("no member %s", id)
	}
	return m.State
}

func wantState(t *testing.T, c *config.Cluster, id, want string) {
	t.Helper()
	if got := stateOf(t, c, id); got != want {
		t.Fatalf("member %s is %s, want %s", id, got, want)
	}
}

func wantNoCommands(t *testing.T, cmds []membership.Command, when string) {
	t.Helper()
	if len(cmds) != 0 {
		t.Fatalf("%s: Decide = %s, want nothing", when, describeAll(cmds))
	}
}

// wantOne checks that cmds is exactly one command of op (and, for a state
// change, of that member and state).
func wantOne(t *testing.T, cmds []membership.Command, op, id, state string) membership.Command {
	t.Helper()
	if len(cmds) != 1 || cmds[0].Op != op || cmds[0].ID != id || cmds[0].State != state {
		want := describe(membership.Command{Op: op, ID: id, State: state})
		t.Fatalf("Decide = %s, want [%s]", describeAll(cmds), want)
	}
	return cmds[0]
}

func inMap(m *placement.Map, id string) bool {
	if m == nil {
		return false
	}
	_, ok := m.NodeIndex(id)
	return ok
}

func sameMap(t *testing.T, a, b *placement.Map) bool {
	t.Helper()
	return bytes.Equal(mustJSON(t, a), mustJSON(t, b))
}

// wantBalanced checks that m is valid and every node holds within one
// position of its equal share.
func wantBalanced(t *testing.T, m *placement.Map) {
	t.Helper()
	if err := m.Validate(); err != nil {
		t.Fatalf("map of epoch %d does not validate: %v", m.Epoch, err)
	}
	ideal := float64(placement.NumSlots*m.Width) / float64(len(m.Nodes))
	for i, n := range m.Counts() {
		if math.Abs(float64(n)-ideal) > 1 {
			t.Fatalf("map of epoch %d: node %s holds %d positions, want %.1f ± 1", m.Epoch, m.Nodes[i].ID, n, ideal)
		}
	}
}

// settle runs the leader's loop rounds times with everyone but silent
// answering: apply what Decide proposes, and commit a target at once (as
// the repair worker would once the copies are done). It returns the
// cluster and the map epoch after each round.
func settle(t *testing.T, c *config.Cluster, now time.Time, rounds int, silent ...string) (*config.Cluster, []uint64) {
	t.Helper()
	var epochs []uint64
	for range rounds {
		c = mustAll(t, c, decide(t, c, answering(c, silent...), now, outAfter))
		if c.Target != nil {
			c = must(t, c, membership.Command{Op: membership.OpCommit, Epoch: c.Target.Epoch})
		}
		epochs = append(epochs, c.Map.Epoch)
	}
	return c, epochs
}

func TestInitFillsMembersFromTheMapWithoutAliasing(t *testing.T) {
	in := testConfig(t, testNodes(7))
	before := mustJSON(t, in)

	c := membership.Init(in)
	if len(c.Members) != len(in.Map.Nodes) {
		t.Fatalf("Init: %d members, want one per map node (%d)", len(c.Members), len(in.Map.Nodes))
	}
	for i, m := range c.Members {
		if m.State != membership.Up {
			t.Errorf("Init: member %s is %q, want up", m.ID, m.State)
		}
		if !bytes.Equal(mustJSON(t, m.Node), mustJSON(t, in.Map.Nodes[i])) {
			t.Errorf("Init: member %d is %+v, want map node %+v", i, m.Node, in.Map.Nodes[i])
		}
	}
	if !sameMap(t, c.Map, in.Map) || c.ID != in.ID || c.Policy != in.Policy || c.SmallThreshold != in.SmallThreshold {
		t.Fatalf("Init changed the cluster's identity, policy or map")
	}

	// Scribble over everything the result holds: the input must not see it.
	c.Members[0].Addrs[0] = "/ip4/6.6.6.6/tcp/1"
	c.Members[1].ID = "mallory"
	c.Members = append(c.Members, config.Member{Node: placement.Node{ID: "extra"}})
	c.Map.Nodes[0].Addrs[0] = "/ip4/6.6.6.6/tcp/2"
	c.Map.Nodes[2].Zone = "elsewhere"
	c.Map.Table[0], c.Map.Table[1] = c.Map.Table[1], c.Map.Table[0]
	c.Map.Epoch = 99
	if !bytes.Equal(before, mustJSON(t, in)) {
		t.Fatal("modifying Init's result modified its input")
	}
	if in.Members != nil {
		t.Fatalf("Init filled the input's members: %+v", in.Members)
	}
}

func TestInitKeepsMembersItAlreadyHas(t *testing.T) {
	c := newCluster(t, testNodes(7))
	c = must(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: testNode(7)}, At: t0.UnixNano()})
	before := mustJSON(t, c)

	d := membership.Init(c)
	if !bytes.Equal(before, mustJSON(t, d)) {
		t.Fatal("Init of a cluster with members changed it; want an equal copy")
	}
	d.Members[0].State = membership.Down
	if stateOf(t, c, "n0") != membership.Up {
		t.Fatal("Init's result aliases its input's members")
	}
}

func TestInitCommandIsAcceptedOnce(t *testing.T) {
	cfg := testConfig(t, testNodes(7))
	c := must(t, nil, membership.Command{Op: membership.OpInit, Cluster: cfg})
	if !bytes.Equal(mustJSON(t, c), mustJSON(t, membership.Init(cfg))) {
		t.Fatal("OpInit result differs from Init of its cluster")
	}
	if len(c.Members) != 7 {
		t.Fatalf("after OpInit: %d members, want 7", len(c.Members))
	}

	// A second init (a replayed first entry, or a rival leader's) is refused.
	refuse(t, c, membership.Command{Op: membership.OpInit, Cluster: cfg})
	refuse(t, c, membership.Command{Op: membership.OpInit, Cluster: testConfig(t, testNodes(8))})
}

func TestInitCommandRejectsAnInvalidCluster(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(c *config.Cluster)
	}{
		{"no cluster id", func(c *config.Cluster) { c.ID = "" }},
		{"no map", func(c *config.Cluster) { c.Map = nil }},
		{"replica policy", func(c *config.Cluster) { c.Policy = coding.Replicas(3) }},
		{"policy wider than the map", func(c *config.Cluster) { c.Policy = coding.Erasure(6, 3) }},
		{"negative small threshold", func(c *config.Cluster) { c.SmallThreshold = -1 }},
		{"short table", func(c *config.Cluster) { c.Map.Table = c.Map.Table[:10] }},
		{"repeated member", func(c *config.Cluster) {
			c.Members = []config.Member{{Node: c.Map.Nodes[0], State: membership.Up}, {Node: c.Map.Nodes[0], State: membership.Up}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, testNodes(7))
			tc.spoil(cfg)
			err := refuse(t, nil, membership.Command{Op: membership.OpInit, Cluster: cfg})
			t.Logf("rejected: %v", err)
		})
	}
	t.Run("no cluster", func(t *testing.T) {
		refuse(t, nil, membership.Command{Op: membership.OpInit})
	})
}

func TestEveryOtherOpIsRejectedBeforeInit(t *testing.T) {
	member := &config.Member{Node: testNode(0)}
	for _, cmd := range []membership.Command{
		{Op: membership.OpJoin, Member: member},
		{Op: membership.OpState, ID: "n0", State: membership.Down},
		{Op: membership.OpDrain, ID: "n0"},
		{Op: membership.OpRebalance},
		{Op: membership.OpCommit, Epoch: 1},
		{Op: membership.OpRemove, ID: "n0"},
		{Op: "frobnicate"},
		{},
	} {
		err := refuse(t, nil, cmd)
		if !strings.Contains(err.Error(), "not initialised") {
			t.Errorf("Apply(nil, %s) = %v, want it to say the cluster is not initialised", describe(cmd), err)
		}
	}
}

func TestUnknownOpIsRejected(t *testing.T) {
	c := newCluster(t, testNodes(7))
	refuse(t, c, membership.Command{Op: "frobnicate"})
	refuse(t, c, membership.Command{})
}

// TestHeartbeatStory: n3 of 7 stops answering, is down, then out, its slots
// are reassigned at once; then it comes back, joins, and gets slots again
// through a target and a commit.
func TestHeartbeatStory(t *testing.T) {
	c := newCluster(t, testNodes(7))
	epoch0 := c.Map.Epoch
	now := t0

	wantNoCommands(t, decide(t, c, answering(c), now, outAfter), "everyone answers")

	// n3 stops answering: down, and nothing else yet (the rebalance, if
	// any, waits for the next tick).
	now = now.Add(time.Second)
	down := wantOne(t, decide(t, c, answering(c, "n3"), now, outAfter), membership.OpState, "n3", membership.Down)
	if down.At != now.UnixNano() {
		t.Fatalf("down command At = %d, want now (%d)", down.At, now.UnixNano())
	}
	c = must(t, c, down)
	wantState(t, c, "n3", membership.Down)
	if m, _ := c.Member("n3"); m.Since != now.UnixNano() {
		t.Fatalf("n3 Since = %d, want %d", m.Since, now.UnixNano())
	}
	downAt := now

	// Down keeps its slots: a restart costs no repair. Nothing to do
	// until the grace period is over, up to the last nanosecond.
	for _, dt := range []time.Duration{time.Second, outAfter / 2, outAfter - time.Nanosecond} {
		wantNoCommands(t, decide(t, c, answering(c, "n3"), downAt.Add(dt), outAfter),
			fmt.Sprintf("n3 down for %v of %v", dt, outAfter))
	}

	// Grace over: out.
	now = downAt.Add(outAfter)
	c = must(t, c, wantOne(t, decide(t, c, answering(c, "n3"), now, outAfter), membership.OpState, "n3", membership.Out))
	wantState(t, c, "n3", membership.Out)

	// Next tick: rebalance, which replaces the map at once (n3's shards
	// are lost; only repair can bring them back).
	now = now.Add(time.Second)
	reb := wantOne(t, decide(t, c, answering(c, "n3"), now, outAfter), membership.OpRebalance, "", "")
	c = must(t, c, reb)
	if c.Target != nil {
		t.Fatalf("rebalance after an out node set a target (epoch %d), want the map replaced directly", c.Target.Epoch)
	}
	if c.Map.Epoch != epoch0+1 {
		t.Fatalf("map epoch %d after the direct rebalance, want %d", c.Map.Epoch, epoch0+1)
	}
	if inMap(c.Map, "n3") {
		t.Fatal("n3 is out but still in the map")
	}
	if len(c.Map.Nodes) != 6 {
		t.Fatalf("map has %d nodes, want the 6 that are up", len(c.Map.Nodes))
	}
	wantBalanced(t, c.Map)
	if err := c.Validate(); err != nil {
		t.Fatalf("cluster after rebalance does not validate: %v", err)
	}

	// No churn: the leader keeps ticking and nothing changes.
	for i := range 5 {
		now = now.Add(time.Second)
		cmds := decide(t, c, answering(c, "n3"), now, outAfter)
		wantNoCommands(t, cmds, fmt.Sprintf("tick %d after the rebalance", i))
		c = mustAll(t, c, cmds)
		if c.Map.Epoch != epoch0+1 || c.Target != nil {
			t.Fatalf("tick %d: epoch %d target %v, want epoch %d and no target", i, c.Map.Epoch, c.Target != nil, epoch0+1)
		}
	}

	// n3 answers again: it rejoins as joining (its disk may be stale).
	now = now.Add(time.Second)
	join := wantOne(t, decide(t, c, answering(c), now, outAfter), membership.OpJoin, "", "")
	if join.Member == nil || join.Member.ID != "n3" {
		t.Fatalf("Decide = %s, want a join of n3", describe(join))
	}
	c = must(t, c, join)
	wantState(t, c, "n3", membership.Joining)

	// Next tick: rebalance, through a target this time; the map stays.
	now = now.Add(time.Second)
	mapBefore := c.Map.Clone()
	c = must(t, c, wantOne(t, decide(t, c, answering(c), now, outAfter), membership.OpRebalance, "", ""))
	if c.Target == nil {
		t.Fatal("rebalance for a joining node set no target")
	}
	if !sameMap(t, c.Map, mapBefore) {
		t.Fatal("rebalance for a joining node changed the map; want only a target")
	}
	if c.Target.Epoch != mapBefore.Epoch+1 || !inMap(c.Target, "n3") {
		t.Fatalf("target epoch %d, n3 in it %v; want epoch %d with n3", c.Target.Epoch, inMap(c.Target, "n3"), mapBefore.Epoch+1)
	}
	wantBalanced(t, c.Target)
	wantState(t, c, "n3", membership.Joining)

	// While the copy is under way, Decide waits.
	wantNoCommands(t, decide(t, c, answering(c), now.Add(time.Second), outAfter), "target under way")

	// A commit of any other epoch is refused.
	for _, e := range []uint64{0, c.Map.Epoch, c.Target.Epoch + 1} {
		refuse(t, c, membership.Command{Op: membership.OpCommit, Epoch: e})
	}
	target := c.Target.Clone()
	c = must(t, c, membership.Command{Op: membership.OpCommit, Epoch: target.Epoch})
	if !sameMap(t, c.Map, target) || c.Target != nil {
		t.Fatal("after commit: want the map to be the target and no target")
	}
	wantState(t, c, "n3", membership.Up)
	for _, m := range c.Members {
		if m.State != membership.Up {
			t.Errorf("after commit: member %s is %s, want every member up", m.ID, m.State)
		}
	}
	// And a second commit of the same epoch finds no target.
	refuse(t, c, membership.Command{Op: membership.OpCommit, Epoch: target.Epoch})

	c, epochs := settle(t, c, now.Add(time.Minute), 5)
	for _, e := range epochs {
		if e != target.Epoch {
			t.Fatalf("epochs after the rejoin settled: %v, want %d throughout", epochs, target.Epoch)
		}
	}
}

func TestDownMemberAnswersBeforeGraceGoesBackUp(t *testing.T) {
	c := newCluster(t, testNodes(7))
	mapBefore := c.Map.Clone()

	c = must(t, c, wantOne(t, decide(t, c, answering(c, "n5"), t0, outAfter), membership.OpState, "n5", membership.Down))
	back := t0.Add(outAfter - time.Second)
	c = must(t, c, wantOne(t, decide(t, c, answering(c), back, outAfter), membership.OpState, "n5", membership.Up))
	wantState(t, c, "n5", membership.Up)
	if m, _ := c.Member("n5"); m.Since != back.UnixNano() {
		t.Fatalf("n5 Since = %d, want %d", m.Since, back.UnixNano())
	}
	if !sameMap(t, c.Map, mapBefore) || c.Target != nil {
		t.Fatal("a down member coming back changed the map or set a target")
	}
	wantNoCommands(t, decide(t, c, answering(c), back.Add(outAfter), outAfter), "n5 back up")
}

func TestDownJoiningMemberAnswersGoesBackToJoining(t *testing.T) {
	c := newCluster(t, testNodes(7))
	c = must(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: testNode(7)}, At: t0.UnixNano()})
	wantState(t, c, nodeID(7), membership.Joining)

	c = must(t, c, wantOne(t, decide(t, c, answering(c, nodeID(7)), t0.Add(time.Second), outAfter), membership.OpState, nodeID(7), membership.Down))
	wantState(t, c, nodeID(7), membership.Down)
	c = must(t, c, wantOne(t, decide(t, c, answering(c), t0.Add(2*time.Second), outAfter), membership.OpState, nodeID(7), membership.Joining))
	wantState(t, c, nodeID(7), membership.Joining)

	// Same with a target under way that holds n7: still joining, and
	// the target stands.
	c = must(t, c, wantOne(t, decide(t, c, answering(c), t0.Add(3*time.Second), outAfter), membership.OpRebalance, "", ""))
	target := c.Target.Clone()
	c = must(t, c, wantOne(t, decide(t, c, answering(c, nodeID(7)), t0.Add(4*time.Second), outAfter), membership.OpState, nodeID(7), membership.Down))
	wantNoCommands(t, decide(t, c, answering(c, nodeID(7)), t0.Add(5*time.Second), outAfter), "n7 down with a target under way")
	c = must(t, c, wantOne(t, decide(t, c, answering(c), t0.Add(6*time.Second), outAfter), membership.OpState, nodeID(7), membership.Joining))
	wantNoCommands(t, decide(t, c, answering(c), t0.Add(7*time.Second), outAfter), "n7 joining again")
	if !sameMap(t, c.Target, target) {
		t.Fatal("the target changed while n7 blinked")
	}
}

func TestJoinNewNodeMovesItsShare(t *testing.T) {
	c := newCluster(t, testNodes(7))
	n7 := testNode(7)
	c = must(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: n7, State: membership.Up, Since: 42}, At: t0.UnixNano()})
	m, ok := c.Member(nodeID(7))
	if !ok || m.State != membership.Joining || m.Since != t0.UnixNano() || !slices.Equal(m.Addrs, n7.Addrs) {
		t.Fatalf("after join: member n7 = %+v, want joining since %d with addrs %v (the command's state and since ignored)", m, t0.UnixNano(), n7.Addrs)
	}
	if c.Members[len(c.Members)-1].ID != nodeID(7) {
		t.Fatal("a new member is not appended after the others")
	}

	mapBefore := c.Map.Clone()
	c = must(t, c, wantOne(t, decide(t, c, answering(c), t0.Add(time.Second), outAfter), membership.OpRebalance, "", ""))
	if c.Target == nil || !inMap(c.Target, nodeID(7)) {
		t.Fatal("rebalance after a join: want a target that holds n7")
	}
	if !sameMap(t, c.Map, mapBefore) {
		t.Fatal("rebalance after a join changed the map")
	}
	wantBalanced(t, c.Target)
	moves, err := placement.Diff(c.Map, c.Target)
	if err != nil {
		t.Fatal(err)
	}
	share := placement.NumSlots * width / 8
	if len(moves) < share || float64(len(moves)) > 1.2*float64(share) {
		t.Fatalf("join of an 8th node moves %d positions, want its share %d (at most 1.2x)", len(moves), share)
	}
	for _, mv := range moves {
		if mv.To != nodeID(7) {
			t.Fatalf("move %+v goes to %s, want every move to go to the new node", mv, mv.To)
		}
	}
	t.Logf("join of n7: %d moves, share %d", len(moves), share)

	c = must(t, c, membership.Command{Op: membership.OpCommit, Epoch: c.Target.Epoch})
	wantState(t, c, nodeID(7), membership.Up)
}

func TestRepeatedJoinOnlyRefreshesAddresses(t *testing.T) {
	c := newCluster(t, testNodes(7))
	old, _ := c.Member("n2")
	oldSince := old.Since
	newAddrs := []string{"/ip4/10.9.9.9/tcp/7000", "/ip4/10.9.9.9/udp/7000/quic-v1"}
	again := placement.Node{ID: "n2", Addrs: newAddrs, Zone: "moved", Weight: 9}

	d := must(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: again}, At: t0.UnixNano()})
	m, _ := d.Member("n2")
	if m.State != membership.Up || m.Since != oldSince {
		t.Fatalf("repeated join of up n2: state %s since %d, want up since %d", m.State, m.Since, oldSince)
	}
	if !slices.Equal(m.Addrs, newAddrs) {
		t.Fatalf("repeated join: n2 addrs %v, want %v", m.Addrs, newAddrs)
	}
	if m.Zone != old.Zone || m.Weight != old.Weight {
		t.Fatalf("repeated join changed zone/weight to %q/%d; want only addresses refreshed", m.Zone, m.Weight)
	}
	// The map's entry follows (front ends dial map entries), at the same
	// epoch: placement does not depend on addresses.
	i, _ := d.Map.NodeIndex("n2")
	if !slices.Equal(d.Map.Nodes[i].Addrs, newAddrs) || d.Map.Epoch != c.Map.Epoch {
		t.Fatalf("repeated join: map entry of n2 %v at epoch %d, want %v at epoch %d", d.Map.Nodes[i].Addrs, d.Map.Epoch, newAddrs, c.Map.Epoch)
	}
	// Nothing else moved.
	m.Addrs = old.Addrs
	d.Map.Nodes[i].Addrs = c.Map.Nodes[i].Addrs
	if !bytes.Equal(mustJSON(t, d), mustJSON(t, c)) {
		t.Fatal("repeated join changed more than n2's addresses")
	}
	d.Map.Nodes[i].Addrs = newAddrs
	wantNoCommands(t, decide(t, d, answering(d), t0.Add(time.Second), outAfter), "after a repeated join")

	// A repeated join of a joining member keeps it joining.
	d = must(t, d, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: testNode(7)}, At: t0.UnixNano()})
	d = must(t, d, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: testNode(7)}, At: t0.Add(time.Hour).UnixNano()})
	wantState(t, d, nodeID(7), membership.Joining)
	if m, _ := d.Member(nodeID(7)); m.Since != t0.UnixNano() {
		t.Fatalf("repeated join of joining n7 moved Since to %d, want %d", m.Since, t0.UnixNano())
	}
	if len(d.Members) != 8 {
		t.Fatalf("%d members after joining n7 twice, want 8", len(d.Members))
	}
	// During a rebalance the target's entry follows too.
	d = must(t, d, wantOne(t, decide(t, d, answering(d), t0.Add(time.Second), outAfter), membership.OpRebalance, "", ""))
	moved := []string{"/ip4/10.8.8.8/tcp/7000"}
	d = must(t, d, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: placement.Node{ID: "n3", Addrs: moved}}, At: t0.UnixNano()})
	for name, pm := range map[string]*placement.Map{"map": d.Map, "target": d.Target} {
		j, ok := pm.NodeIndex("n3")
		if !ok {
			t.Fatalf("n3 is not in the %s", name)
		}
		if !slices.Equal(pm.Nodes[j].Addrs, moved) {
			t.Fatalf("repeated join of n3 during a rebalance: %s entry %v, want %v", name, pm.Nodes[j].Addrs, moved)
		}
	}

	// A join without a member is refused.
	refuse(t, c, membership.Command{Op: membership.OpJoin})
	refuse(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{}})
}

func TestDrainThenRemove(t *testing.T) {
	c := newCluster(t, testNodes(7))
	c = must(t, c, membership.Command{Op: membership.OpDrain, ID: "n2", At: t0.UnixNano()})
	wantState(t, c, "n2", membership.Draining)

	mapBefore := c.Map.Clone()
	c = must(t, c, wantOne(t, decide(t, c, answering(c), t0.Add(time.Second), outAfter), membership.OpRebalance, "", ""))
	if c.Target == nil || inMap(c.Target, "n2") {
		t.Fatal("rebalance after a drain: want a target without n2")
	}
	if !sameMap(t, c.Map, mapBefore) {
		t.Fatal("rebalance after a drain changed the map; want only a target (n2's shards can be copied)")
	}
	wantBalanced(t, c.Target)
	moves, err := placement.Diff(c.Map, c.Target)
	if err != nil {
		t.Fatal(err)
	}
	for _, mv := range moves {
		if mv.From != "n2" {
			t.Fatalf("move %+v comes from %s, want only n2's positions to move", mv, mv.From)
		}
	}
	wantNoCommands(t, decide(t, c, answering(c), t0.Add(2*time.Second), outAfter), "drain under way")

	// n2 still owns slots in the map: it cannot leave yet.
	refuse(t, c, membership.Command{Op: membership.OpRemove, ID: "n2"})

	c = must(t, c, membership.Command{Op: membership.OpCommit, Epoch: c.Target.Epoch})
	if inMap(c.Map, "n2") || c.Target != nil {
		t.Fatal("after commit: n2 still in the map, or a target left")
	}
	wantState(t, c, "n2", membership.Draining)
	wantNoCommands(t, decide(t, c, answering(c), t0.Add(3*time.Second), outAfter), "drained, not removed yet")

	c = must(t, c, membership.Command{Op: membership.OpRemove, ID: "n2", At: t0.Add(4 * time.Second).UnixNano()})
	wantState(t, c, "n2", membership.Removed)
	wantNoCommands(t, decide(t, c, answering(c, "n2"), t0.Add(5*time.Second), outAfter), "n2 removed and silent")
	wantNoCommands(t, decide(t, c, answering(c), t0.Add(6*time.Second), outAfter), "n2 removed and still answering")

	// Removed is final for these ops.
	refuse(t, c, membership.Command{Op: membership.OpRemove, ID: "n2"})
	refuse(t, c, membership.Command{Op: membership.OpDrain, ID: "n2"})
	refuse(t, c, membership.Command{Op: membership.OpRemove, ID: "n9"})
	// Remove of an up member is refused.
	refuse(t, c, membership.Command{Op: membership.OpRemove, ID: "n0"})
}

func TestRemoveRefusedWhileInTarget(t *testing.T) {
	c := newCluster(t, testNodes(7))
	c = must(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: testNode(7)}, At: t0.UnixNano()})
	c = must(t, c, membership.Command{Op: membership.OpRebalance})
	if !inMap(c.Target, nodeID(7)) || inMap(c.Map, nodeID(7)) {
		t.Fatal("want n7 in the target only")
	}
	// Changed its mind: drain the joining n7. It is not in the map but is
	// in the target, so it may hold shards already.
	c = must(t, c, membership.Command{Op: membership.OpDrain, ID: nodeID(7), At: t0.UnixNano()})
	wantState(t, c, nodeID(7), membership.Draining)
	refuse(t, c, membership.Command{Op: membership.OpRemove, ID: nodeID(7)})

	// The members now match the map again: the target is moot.
	c = must(t, c, wantOne(t, decide(t, c, answering(c), t0.Add(time.Second), outAfter), membership.OpRebalance, "", ""))
	if c.Target != nil {
		t.Fatal("rebalance with members matching the map left a target")
	}
	c = must(t, c, membership.Command{Op: membership.OpRemove, ID: nodeID(7)})
	wantState(t, c, nodeID(7), membership.Removed)
	// Drained, it holds nothing: it may join again.
	c = must(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: testNode(7)}, At: t0.UnixNano()})
	wantState(t, c, nodeID(7), membership.Joining)
}

func TestDrainRefused(t *testing.T) {
	c := newCluster(t, testNodes(7))

	// 7 nodes, width 6: one can go, a second would leave 5 for 6 positions.
	one := must(t, c, membership.Command{Op: membership.OpDrain, ID: "n1"})
	err := refuse(t, one, membership.Command{Op: membership.OpDrain, ID: "n4"})
	if !strings.Contains(err.Error(), "fewer than 6") {
		t.Errorf("second drain: %v, want it to say fewer than 6 members would be left", err)
	}
	// Draining the draining one again is refused too.
	refuse(t, one, membership.Command{Op: membership.OpDrain, ID: "n1"})

	// A down member counts as one that will hold slots; a down one may be
	// drained.
	downed := must(t, c, membership.Command{Op: membership.OpState, ID: "n4", State: membership.Down})
	downed = must(t, downed, membership.Command{Op: membership.OpDrain, ID: "n4"})
	wantState(t, downed, "n4", membership.Draining)

	// Out members cannot be drained (they are being replaced anyway), nor
	// removed ones, nor unknown ones.
	out := must(t, c, membership.Command{Op: membership.OpState, ID: "n5", State: membership.Down})
	out = must(t, out, membership.Command{Op: membership.OpState, ID: "n5", State: membership.Out})
	refuse(t, out, membership.Command{Op: membership.OpDrain, ID: "n5"})
	out = must(t, out, membership.Command{Op: membership.OpRebalance})
	refuse(t, out, membership.Command{Op: membership.OpDrain, ID: "n5"})
	// With n5 out, 6 eligible are left: no drain at all.
	refuse(t, out, membership.Command{Op: membership.OpDrain, ID: "n0"})
	removed := must(t, out, membership.Command{Op: membership.OpRemove, ID: "n5"})
	wantState(t, removed, "n5", membership.Removed)
	refuse(t, removed, membership.Command{Op: membership.OpDrain, ID: "n5"})
	// Removed while out, n5 may hold shards of values deleted since: it
	// cannot join again under its identity.
	rejoin := membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: testNode(5)}, At: t0.UnixNano()}
	if err := refuse(t, removed, rejoin); !strings.Contains(err.Error(), "removed while out") {
		t.Errorf("join of a member removed while out: %v, want it refused as removed while out", err)
	}
	refuse(t, c, membership.Command{Op: membership.OpDrain, ID: "n9"})
}

func TestStateTransitions(t *testing.T) {
	states := []string{membership.Joining, membership.Up, membership.Down, membership.Out, membership.Draining, membership.Removed}
	// The heartbeat-driven transitions, as the package doc describes them.
	allowed := map[[2]string]bool{
		{membership.Up, membership.Down}:       true,
		{membership.Joining, membership.Down}:  true,
		{membership.Draining, membership.Down}: true,
		{membership.Down, membership.Up}:       true,
		{membership.Joining, membership.Up}:    true,
		{membership.Down, membership.Joining}:  true,
		{membership.Down, membership.Out}:      true,
	}
	base := newCluster(t, testNodes(7))
	for _, from := range states {
		for _, to := range append(slices.Clone(states), "", "bogus") {
			c := base.Clone()
			m, _ := c.Member("n3")
			m.State = from
			cmd := membership.Command{Op: membership.OpState, ID: "n3", State: to, At: t0.UnixNano()}
			d, err := apply(t, c, cmd)
			switch {
			case allowed[[2]string{from, to}] && err != nil:
				t.Errorf("%s -> %s rejected (%v), want accepted", from, to, err)
			case allowed[[2]string{from, to}]:
				if got, _ := d.Member("n3"); got.State != to || got.Since != t0.UnixNano() {
					t.Errorf("%s -> %s: member is %s since %d", from, to, got.State, got.Since)
				}
			case err == nil:
				t.Errorf("%s -> %q accepted, want rejected", from, to)
			}
		}
	}
	refuse(t, base, membership.Command{Op: membership.OpState, ID: "n9", State: membership.Down})

	// A drained member that was down comes back draining, never up.
	c := must(t, base, membership.Command{Op: membership.OpDrain, ID: "n3"})
	c = must(t, c, membership.Command{Op: membership.OpState, ID: "n3", State: membership.Down})
	refuse(t, c, membership.Command{Op: membership.OpState, ID: "n3", State: membership.Up})
	refuse(t, c, membership.Command{Op: membership.OpState, ID: "n3", State: membership.Joining})
	wantState(t, must(t, c, membership.Command{Op: membership.OpState, ID: "n3", State: membership.Draining}), "n3", membership.Draining)
}

// votersCluster builds a cluster with one member per state, IDs nodeID(i).
// "draining" members are leaving, as a drain makes them; the pseudo-states
// "down+leaving" and "out+leaving" are down or out members that are leaving.
func votersCluster(states ...string) *config.Cluster {
	c := &config.Cluster{}
	for i, s := range states {
		m := config.Member{Node: testNode(i), State: s}
		switch s {
		case membership.Draining:
			m.Leaving = true
		case "down+leaving":
			m.State, m.Leaving = membership.Down, true
		case "out+leaving":
			m.State, m.Leaving = membership.Out, true
		}
		c.Members = append(c.Members, m)
	}
	return c
}

func idsOf(idx ...int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, nodeID(i))
	}
	return out
}

func TestVoters(t *testing.T) {
	repeat := func(n int, s string) []string { return slices.Repeat([]string{s}, n) }
	const (
		up, jn, dn, out, dr, rm = membership.Up, membership.Joining, membership.Down, membership.Out, membership.Draining, membership.Removed
		dnL, outL               = "down+leaving", "out+leaving"
	)
	for _, tc := range []struct {
		name    string
		states  []string
		current []int
		extra   []string // more current voters, by ID
		want    []int
	}{
		// At bootstrap (no voters yet): the first up members.
		{name: "none", states: nil, want: nil},
		{name: "one", states: []string{up}, want: []int{0}},
		{name: "two", states: []string{up, up}, want: []int{0, 1}},
		{name: "three", states: repeat(3, up), want: []int{0, 1, 2}},
		{name: "six", states: repeat(6, up), want: []int{0, 1, 2}},
		{name: "seven", states: repeat(7, up), want: []int{0, 1, 2, 3, 4}},
		{name: "ten", states: repeat(10, up), want: []int{0, 1, 2, 3, 4}},
		{name: "only up members are added", states: []string{jn, dn, dr, up, up, up, up}, want: []int{3, 4, 5, 6}},
		{name: "out and removed skipped", states: []string{out, up, rm, up, up}, want: []int{1, 3, 4}},
		{name: "seven members but six live", states: []string{up, up, out, up, up, up, up}, want: []int{0, 1, 3}},
		{name: "eight members seven live", states: []string{rm, up, up, up, up, up, up, up}, want: []int{1, 2, 3, 4, 5}},
		{name: "two live of many", states: []string{out, out, up, rm, rm, up, out}, want: []int{2, 5}},
		{name: "all gone", states: []string{out, rm}, want: nil},

		// With voters.
		{name: "stable", states: repeat(5, up), current: []int{0, 1, 2}, want: []int{0, 1, 2}},
		{name: "stable, not the first members", states: repeat(5, up), current: []int{2, 3, 4}, want: []int{2, 3, 4}},
		{name: "a down voter stays", states: []string{up, dn, up, up, up}, current: []int{0, 1, 2}, want: []int{0, 1, 2}},
		{name: "two down voters stay", states: []string{dn, dn, up, up, up}, current: []int{0, 1, 2}, want: []int{0, 1, 2}},
		{name: "a joining voter stays", states: []string{jn, up, up, up}, current: []int{0, 1, 2}, want: []int{0, 1, 2}},
		{name: "out voter replaced by an up member, never a down one", states: []string{up, up, out, dn, up}, current: []int{0, 1, 2}, want: []int{0, 1, 4}},
		{name: "out voter replaced by an up member, never a joining one", states: []string{up, up, out, jn, up}, current: []int{0, 1, 2}, want: []int{0, 1, 4}},
		{name: "out voter not replaced without an up member", states: []string{up, up, out, dn, jn, dr}, current: []int{0, 1, 2}, want: []int{0, 1}},
		{name: "removed voter replaced", states: []string{up, rm, up, up}, current: []int{0, 1, 2}, want: []int{0, 2, 3}},
		{name: "draining voter replaced", states: []string{up, up, dr, up}, current: []int{0, 1, 2}, want: []int{0, 1, 3}},
		{name: "down leaving voter replaced", states: []string{up, dnL, up, up}, current: []int{0, 1, 2}, want: []int{0, 2, 3}},
		{name: "out leaving voter replaced", states: []string{outL, up, up, up}, current: []int{0, 1, 2}, want: []int{1, 2, 3}},
		{name: "grow to five", states: repeat(7, up), current: []int{4, 5, 6}, want: []int{0, 1, 4, 5, 6}},
		{name: "grow to five skips down members", states: []string{dn, up, dn, up, up, up, up}, current: []int{4, 5, 6}, want: []int{1, 3, 4, 5, 6}},
		{name: "shrink to three keeps up voters", states: []string{up, dn, up, dn, up, up, out, out}, current: []int{0, 1, 2, 3, 4}, want: []int{0, 2, 4}},
		{name: "shrink to three keeps down voters when short of up ones", states: []string{dn, dn, up, dn, dn, out, out}, current: []int{0, 1, 2, 3, 4}, want: []int{0, 1, 2}},
		{name: "shrink to three in member order", states: []string{up, up, up, up, up, rm, rm}, current: []int{4, 3, 2, 1, 0}, want: []int{0, 1, 2}},
		{name: "unknown and repeated voters ignored", states: []string{up, up, up, up}, current: []int{3, 3}, extra: []string{"ghost", ""}, want: []int{0, 1, 3}},
		{name: "all voters out, none up", states: []string{out, out, out, dn}, current: []int{0, 1, 2}, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := votersCluster(tc.states...)
			before := mustJSON(t, c)
			current := append(idsOf(tc.current...), tc.extra...)
			got := membership.Voters(c, current)
			if want := idsOf(tc.want...); !slices.Equal(got, want) {
				t.Fatalf("Voters(%v, %v) = %v, want %v", tc.states, tc.current, got, want)
			}
			if !bytes.Equal(before, mustJSON(t, c)) {
				t.Fatal("Voters modified the cluster")
			}
			// Stable: the voters it returns are the voters it keeps.
			if again := membership.Voters(c, got); !slices.Equal(again, got) {
				t.Fatalf("Voters(c, %v) = %v, want the same voters again", got, again)
			}
		})
	}
	if got := membership.Voters(nil, []string{"n0"}); got != nil {
		t.Fatalf("Voters(nil) = %v, want nil", got)
	}
}

// TestVotersProperties checks Voters on random clusters and voter sets: it
// never adds a member that is not up, keeps every voter it may keep,
// fills up to the target when it can, and never exceeds it.
func TestVotersProperties(t *testing.T) {
	states := []string{membership.Up, membership.Up, membership.Up, membership.Joining, membership.Down,
		membership.Out, membership.Draining, membership.Removed, "down+leaving", "out+leaving"}
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 5000 {
		n := rng.IntN(12)
		var ss []string
		for range n {
			ss = append(ss, states[rng.IntN(len(states))])
		}
		c := votersCluster(ss...)
		var current []string
		for i := range n + 2 { // n and n+1 are not members
			if rng.IntN(3) == 0 {
				current = append(current, nodeID(i))
			}
		}
		got := membership.Voters(c, current)

		live, target := 0, 3
		for _, m := range c.Members {
			if m.State != membership.Out && m.State != membership.Removed {
				live++
			}
		}
		if live >= 7 {
			target = 5
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("iteration %d: states %v, current %v: Voters = %v: %s", iter, ss, current, got, fmt.Sprintf(format, args...))
		}
		if len(got) > target {
			fail("%d voters, target %d", len(got), target)
		}
		last := -1
		for _, id := range got {
			i := slices.IndexFunc(c.Members, func(m config.Member) bool { return m.ID == id })
			if i <= last {
				fail("%s is not a member, repeated, or out of member order", id)
			}
			last = i
			m := c.Members[i]
			if m.Leaving || m.State == membership.Out || m.State == membership.Removed || m.State == membership.Draining {
				fail("%s is %s (leaving %v): it must not be a voter", id, m.State, m.Leaving)
			}
			if m.State != membership.Up && !slices.Contains(current, id) {
				fail("%s is %s and was not a voter: only up members may be added", id, m.State)
			}
		}
		// Every voter that may stay stays when there is room, and the
		// result is as full as the up members allow.
		var keepable, addable []string
		for _, m := range c.Members {
			ok := !m.Leaving && m.State != membership.Out && m.State != membership.Removed && m.State != membership.Draining
			switch {
			case ok && slices.Contains(current, m.ID):
				keepable = append(keepable, m.ID)
			case ok && m.State == membership.Up:
				addable = append(addable, m.ID)
			}
		}
		if len(keepable) <= target {
			for _, id := range keepable {
				if !slices.Contains(got, id) {
					fail("voter %s was dropped with room to keep it", id)
				}
			}
		}
		if want := min(target, len(keepable)+len(addable)); len(got) != want {
			fail("%d voters, want %d (target %d, %d keepable, %d up to add)", len(got), want, target, len(keepable), len(addable))
		}
		if again := membership.Voters(c, got); !slices.Equal(again, got) {
			fail("not stable: Voters(c, result) = %v", again)
		}
	}
}

// TestVotersTwoCloseFailures is the quorum loss of two close failures: with
// voters n0, n1, n2 and n3 down, n2 going out must not make n3 a voter
// (4 voters, 2 of them dead: no quorum ever again) but an up member.
func TestVotersTwoCloseFailures(t *testing.T) {
	c := newCluster(t, testNodes(6))
	voters := membership.Voters(c, nil)
	if want := idsOf(0, 1, 2); !slices.Equal(voters, want) {
		t.Fatalf("initial voters %v, want %v", voters, want)
	}
	now := t0

	// The non-voter n3 goes down; then the voter n2 goes down and out.
	c = must(t, c, membership.Command{Op: membership.OpState, ID: "n3", State: membership.Down, At: now.UnixNano()})
	if got := membership.Voters(c, voters); !slices.Equal(got, voters) {
		t.Fatalf("a non-voter went down: voters %v, want %v unchanged", got, voters)
	}
	c = must(t, c, membership.Command{Op: membership.OpState, ID: "n2", State: membership.Down, At: now.UnixNano()})
	if got := membership.Voters(c, voters); !slices.Equal(got, voters) {
		t.Fatalf("voter n2 is down (not out): voters %v, want %v unchanged (a restart costs no change)", got, voters)
	}
	c = must(t, c, membership.Command{Op: membership.OpState, ID: "n2", State: membership.Out, At: now.UnixNano()})
	got := membership.Voters(c, voters)
	if slices.Contains(got, "n3") {
		t.Fatalf("voters %v hold n3, which is down: 2 of 4 voters dead, no quorum", got)
	}
	if want := idsOf(0, 1, 4); !slices.Equal(got, want) {
		t.Fatalf("voters after n2 out with n3 down: %v, want %v (a fresh up member)", got, want)
	}
	// n3 comes back: the voters stay put.
	c = must(t, c, membership.Command{Op: membership.OpState, ID: "n3", State: membership.Up, At: now.UnixNano()})
	if again := membership.Voters(c, got); !slices.Equal(again, got) {
		t.Fatalf("n3 back up: voters %v, want %v unchanged", again, got)
	}
}

func TestZonesNoChurn(t *testing.T) {
	zones := []string{"za", "zb", "zc"}
	c := newCluster(t, testNodes(7, zones...))
	now := t0
	wantNoCommands(t, decide(t, c, answering(c), now, outAfter), "zoned cluster at rest")

	for _, next := range []int{7, 8} {
		now = now.Add(time.Minute)
		c = must(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: testNode(next, zones...)}, At: now.UnixNano()})
		epoch := c.Map.Epoch
		var epochs []uint64
		c, epochs = settle(t, c, now.Add(time.Second), 6)
		if epochs[0] != epoch+1 {
			t.Fatalf("after join of n%d: epochs %v, want the join committed as epoch %d in the first round", next, epochs, epoch+1)
		}
		for _, e := range epochs[1:] {
			if e != epoch+1 {
				t.Fatalf("after join of n%d: epochs %v, want %d to stay put (no churn)", next, epochs, epoch+1)
			}
		}
		wantState(t, c, nodeID(next), membership.Up)
		wantBalanced(t, c.Map)
	}

	// And when a zoned node goes out, the direct rebalance settles too.
	now = now.Add(time.Minute)
	c = must(t, c, membership.Command{Op: membership.OpState, ID: "n4", State: membership.Down, At: now.UnixNano()})
	now = now.Add(outAfter)
	c, epochs := settle(t, c, now, 6, "n4")
	wantState(t, c, "n4", membership.Out)
	if inMap(c.Map, "n4") {
		t.Fatal("n4 is out but still in the map")
	}
	for _, e := range epochs[2:] {
		if e != epochs[1] {
			t.Fatalf("after n4 out: epochs %v, want them to stay put once rebalanced", epochs)
		}
	}
}

func TestDecideNilCluster(t *testing.T) {
	if cmds, err := membership.Decide(nil, map[string]bool{"n0": true}, t0, outAfter); cmds != nil || err != nil {
		t.Fatalf("Decide(nil) = %s, %v, want nil, nil", describeAll(cmds), err)
	}
}

func TestRebalanceWithNothingToDoIsANoOp(t *testing.T) {
	c := newCluster(t, testNodes(7))
	d := must(t, c, membership.Command{Op: membership.OpRebalance})
	if !bytes.Equal(mustJSON(t, c), mustJSON(t, d)) {
		t.Fatal("rebalance with members matching the map changed the cluster")
	}
}

// TestDrainingMemberBlipStaysDraining: a draining member that misses one
// heartbeat goes down; when it answers again it should go on draining.
func TestDrainingMemberBlipStaysDraining(t *testing.T) {
	c := newCluster(t, testNodes(7))
	c = must(t, c, membership.Command{Op: membership.OpDrain, ID: "n2", At: t0.UnixNano()})
	c = must(t, c, membership.Command{Op: membership.OpRebalance})
	target := c.Target.Clone()

	c = mustAll(t, c, decide(t, c, answering(c, "n2"), t0.Add(time.Second), outAfter))
	wantState(t, c, "n2", membership.Down)
	c = mustAll(t, c, decide(t, c, answering(c), t0.Add(2*time.Second), outAfter))
	wantState(t, c, "n2", membership.Draining)
	c = mustAll(t, c, decide(t, c, answering(c), t0.Add(3*time.Second), outAfter))
	if c.Target == nil || !sameMap(t, c.Target, target) {
		t.Fatal("the drain target was dropped after n2 blinked")
	}
}

// TestStaleCommitDoesNotCommitANewerTarget: a target replaced by another
// (a second join while the first copy is under way) must not be
// committable by the first one's epoch: the repair pass that checked the
// first target's owners proposes a commit of that epoch.
func TestStaleCommitDoesNotCommitANewerTarget(t *testing.T) {
	c := newCluster(t, testNodes(7))
	c = must(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: testNode(7)}, At: t0.UnixNano()})
	c = must(t, c, membership.Command{Op: membership.OpRebalance})
	first := c.Target.Clone()

	c = must(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: testNode(8)}, At: t0.UnixNano()})
	c = must(t, c, wantOne(t, decide(t, c, answering(c), t0.Add(time.Second), outAfter), membership.OpRebalance, "", ""))
	if sameMap(t, c.Target, first) {
		t.Fatal("second join did not change the target")
	}
	if c.Target.Epoch == first.Epoch {
		t.Errorf("replaced target has epoch %d, the same as the one it replaced", c.Target.Epoch)
	}
	if _, err := apply(t, c, membership.Command{Op: membership.OpCommit, Epoch: first.Epoch}); err == nil {
		t.Errorf("commit of the replaced target's epoch %d accepted: it committed a target nobody copied", first.Epoch)
	}
}

// TestJoinRejectsABadMember: a join whose member would break the cluster
// for good (every later Assign failing on its weight, every raft change on
// its ID) is rejected with a message naming the field, and changes nothing.
func TestJoinRejectsABadMember(t *testing.T) {
	c := newCluster(t, testNodes(7))
	good := func() placement.Node {
		return placement.Node{ID: testpeer.ID("joiner"), Addrs: []string{"/ip4/10.0.1.1/tcp/6735", "/ip6/::1/udp/6735/quic-v1"}, Zone: "za", Weight: 3}
	}
	for _, tc := range []struct {
		name  string
		spoil func(n *placement.Node)
		field string
	}{
		{"negative weight", func(n *placement.Node) { n.Weight = -1 }, "weight"},
		{"weight above MaxWeight", func(n *placement.Node) { n.Weight = placement.MaxWeight + 1 }, "weight"},
		{"empty id", func(n *placement.Node) { n.ID = "" }, "id"},
		{"id not a peer id", func(n *placement.Node) { n.ID = "n7" }, "peer id"},
		{"id with garbage", func(n *placement.Node) { n.ID += "!" }, "peer id"},
		{"no addrs", func(n *placement.Node) { n.Addrs = nil }, "addrs"},
		{"empty addrs", func(n *placement.Node) { n.Addrs = []string{} }, "addrs"},
		{"addr not a multiaddr", func(n *placement.Node) { n.Addrs[1] = "10.0.1.1:6735" }, "addrs"},
		{"empty addr", func(n *placement.Node) { n.Addrs[0] = "" }, "addrs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := good()
			tc.spoil(&n)
			err := refuse(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: n}, At: t0.UnixNano()})
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("join with %s: %v, want the error to name %q", tc.name, err, tc.field)
			}
			t.Logf("rejected: %v", err)
		})
	}
	refuse(t, c, membership.Command{Op: membership.OpJoin})

	// The edges of the weight range are fine, and the cluster rebalances.
	for _, w := range []int{0, placement.MaxWeight} {
		n := good()
		n.Weight = w
		d := must(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: n}, At: t0.UnixNano()})
		wantState(t, d, n.ID, membership.Joining)
	}
	d := must(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: good()}, At: t0.UnixNano()})
	if _, err := membership.Decide(d, answering(d), t0.Add(time.Second), outAfter); err != nil {
		t.Fatalf("Decide after a good join: %v", err)
	}
	d = must(t, d, wantOne(t, decide(t, d, answering(d), t0.Add(time.Second), outAfter), membership.OpRebalance, "", ""))
	if !inMap(d.Target, good().ID) {
		t.Fatal("the joiner is not in the rebalance target")
	}

	// A join with the ID of a member is that member's re-join (a restart):
	// never a second member. Its peer ID is not checked again (init took
	// n3), but its addresses and weight are.
	again := must(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: testNode(3)}, At: t0.UnixNano()})
	if len(again.Members) != len(c.Members) {
		t.Fatalf("re-join of n3: %d members, want %d", len(again.Members), len(c.Members))
	}
	bad := testNode(3)
	bad.Addrs = []string{"nowhere"}
	if err := refuse(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: bad}}); !strings.Contains(err.Error(), "addrs") {
		t.Fatalf("re-join of n3 with a bad address: %v, want it to name addrs", err)
	}
	bad = testNode(3)
	bad.Weight = -5
	refuse(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: bad}})
}

// TestDecideReportsDesiredError: when the members call for a map that
// cannot be built, Decide says so instead of staying silent.
func TestDecideReportsDesiredError(t *testing.T) {
	c := newCluster(t, testNodes(6)) // width 6: no member to spare
	c = must(t, c, membership.Command{Op: membership.OpState, ID: "n4", State: membership.Down, At: t0.UnixNano()})

	// Heartbeat commands come first, with no error.
	now := t0.Add(outAfter)
	cmds, err := membership.Decide(c, answering(c, "n4"), now, outAfter)
	if err != nil {
		t.Fatalf("Decide with a heartbeat change pending: %v, want none", err)
	}
	c = must(t, c, wantOne(t, cmds, membership.OpState, "n4", membership.Out))

	// Five eligible members cannot hold six positions per slot.
	cmds, err = membership.Decide(c, answering(c, "n4"), now.Add(time.Second), outAfter)
	if err == nil {
		t.Fatalf("Decide with 5 eligible members for width 6 = %s, nil; want Desired's error", describeAll(cmds))
	}
	if !errors.Is(err, placement.ErrTooFewNodes) {
		t.Errorf("Decide error %v, want it to wrap placement.ErrTooFewNodes", err)
	}
	wantNoCommands(t, cmds, "with Desired failing")
	refuse(t, c, membership.Command{Op: membership.OpRebalance})

	// n4 answers again: its rejoin is proposed, and the error is gone.
	c = mustAll(t, c, decide(t, c, answering(c), now.Add(2*time.Second), outAfter))
	wantState(t, c, "n4", membership.Joining)
	if _, err := membership.Decide(c, answering(c), now.Add(3*time.Second), outAfter); err != nil {
		t.Fatalf("Decide with n4 back: %v", err)
	}
}

// TestDrainingMemberOutComesBackDraining: a draining member that goes out
// and answers again must not be handed slots again: it comes back
// draining (the drain is not cancelled), holds nothing, and is removed.
func TestDrainingMemberOutComesBackDraining(t *testing.T) {
	c := newCluster(t, testNodes(8))
	now := t0
	c = must(t, c, membership.Command{Op: membership.OpDrain, ID: "n2", At: now.UnixNano()})
	c = must(t, c, membership.Command{Op: membership.OpRebalance})
	if c.Target == nil || inMap(c.Target, "n2") {
		t.Fatal("want a drain target without n2")
	}

	// n2 stops answering, goes down and then out (the copy never made it).
	now = now.Add(time.Second)
	c = must(t, c, wantOne(t, decide(t, c, answering(c, "n2"), now, outAfter), membership.OpState, "n2", membership.Down))
	now = now.Add(outAfter)
	c = must(t, c, wantOne(t, decide(t, c, answering(c, "n2"), now, outAfter), membership.OpState, "n2", membership.Out))
	if m, _ := c.Member("n2"); !m.Leaving {
		t.Fatal("n2 out: the drain was forgotten")
	}
	if got := membership.Voters(c, idsOf(0, 1, 2, 3, 4)); slices.Contains(got, "n2") {
		t.Fatalf("voters %v hold the leaving n2", got)
	}
	// The map drops n2 at once (its shards are lost to it now).
	now = now.Add(time.Second)
	c = mustAll(t, c, decide(t, c, answering(c, "n2"), now, outAfter))
	if inMap(c.Map, "n2") || inMap(c.Target, "n2") {
		t.Fatal("n2 is out but still in the map or the target")
	}
	mapBefore := c.Map.Clone()

	// n2 answers again: it rejoins draining, still leaving.
	now = now.Add(time.Second)
	join := wantOne(t, decide(t, c, answering(c), now, outAfter), membership.OpJoin, "", "")
	c = must(t, c, join)
	m, _ := c.Member("n2")
	if m.State != membership.Draining || !m.Leaving || m.Since != now.UnixNano() {
		t.Fatalf("n2 after its rejoin: %s leaving %v since %d, want draining, leaving, since %d", m.State, m.Leaving, m.Since, now.UnixNano())
	}
	// No slots come its way, and it is never a voter.
	for i := range 3 {
		now = now.Add(time.Second)
		c = mustAll(t, c, decide(t, c, answering(c), now, outAfter))
		if c.Target != nil {
			c = must(t, c, membership.Command{Op: membership.OpCommit, Epoch: c.Target.Epoch})
		}
		if inMap(c.Map, "n2") || inMap(c.Target, "n2") {
			t.Fatalf("tick %d after n2's rejoin: n2 got slots again", i)
		}
	}
	if !sameMap(t, c.Map, mapBefore) {
		t.Fatal("n2's rejoin changed the map")
	}
	wantState(t, c, "n2", membership.Draining)
	if got := membership.Voters(c, idsOf(0, 1, 2, 3, 4)); slices.Contains(got, "n2") {
		t.Fatalf("voters %v hold the draining n2", got)
	}
	// A blip keeps it draining.
	c = must(t, c, wantOne(t, decide(t, c, answering(c, "n2"), now.Add(time.Second), outAfter), membership.OpState, "n2", membership.Down))
	c = must(t, c, wantOne(t, decide(t, c, answering(c), now.Add(2*time.Second), outAfter), membership.OpState, "n2", membership.Draining))

	// It holds nothing: it may be removed.
	c = must(t, c, membership.Command{Op: membership.OpRemove, ID: "n2", At: now.Add(3 * time.Second).UnixNano()})
	wantState(t, c, "n2", membership.Removed)

	// An explicit join of a removed member is a fresh start: joining, not
	// leaving (an operator adds it back).
	c = must(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: testNode(2)}, At: now.Add(4 * time.Second).UnixNano()})
	if m, _ := c.Member("n2"); m.State != membership.Joining || m.Leaving {
		t.Fatalf("n2 re-added after removal: %s leaving %v, want joining, not leaving", m.State, m.Leaving)
	}
}

// TestOutMemberNotLeavingRejoinsJoining: the rejoin of an out member that
// was not draining clears nothing it should keep and sets it joining.
func TestOutMemberNotLeavingRejoinsJoining(t *testing.T) {
	c := newCluster(t, testNodes(7))
	c = must(t, c, membership.Command{Op: membership.OpState, ID: "n5", State: membership.Down})
	c = must(t, c, membership.Command{Op: membership.OpState, ID: "n5", State: membership.Out})
	n := testNode(5)
	n.Addrs = []string{"/ip4/10.7.7.7/tcp/1"}
	c = must(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: n, Leaving: true, State: membership.Draining}, At: 5})
	m, _ := c.Member("n5")
	if m.State != membership.Joining || m.Leaving || m.Since != 5 || !slices.Equal(m.Addrs, n.Addrs) {
		t.Fatalf("n5 after rejoin: %+v, want joining since 5, not leaving (the command's leaving flag ignored), new addrs", m)
	}
}

// TestClientRoles: grants and revokes keep at least one read-write client
// once roles are enforced, never give a member a role, and a client with a
// role cannot join as a node.
func TestClientRoles(t *testing.T) {
	c := newCluster(t, testNodes(6))
	admin, reader := testpeer.ID("client admin"), testpeer.ID("client reader")
	grant := func(id, role string) membership.Command {
		return membership.Command{Op: membership.OpGrant, ID: id, Role: role}
	}
	revoke := func(id string) membership.Command { return membership.Command{Op: membership.OpRevoke, ID: id} }

	// The first role must leave a read-write client.
	refuse(t, c, grant(reader, config.RoleReadOnly))
	refuse(t, c, grant(admin, "admin"))
	refuse(t, c, grant("not-a-peer-id", config.RoleReadWrite))
	refuse(t, c, grant(nodeID(0), config.RoleReadWrite))
	c = must(t, c, grant(admin, config.RoleReadWrite))
	c = must(t, c, grant(reader, config.RoleReadOnly))
	want := []config.ClientRole{{ID: admin, Role: config.RoleReadWrite}, {ID: reader, Role: config.RoleReadOnly}}
	if !slices.Equal(c.Clients, want) {
		t.Fatalf("clients %+v, want %+v", c.Clients, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// The last writer can be neither demoted nor revoked.
	refuse(t, c, grant(admin, config.RoleReadOnly))
	refuse(t, c, revoke(admin))
	refuse(t, c, revoke(testpeer.ID("nobody")))
	c = must(t, c, grant(reader, config.RoleReadWrite))
	c = must(t, c, revoke(admin))
	if r, ok := c.ClientRole(reader); !ok || r != config.RoleReadWrite || len(c.Clients) != 1 {
		t.Fatalf("clients %+v, want the reader alone as read-write", c.Clients)
	}
	// A client is not a node.
	nd := placement.Node{ID: reader, Addrs: []string{"/ip4/10.0.0.9/tcp/6735"}}
	refuse(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: nd}, At: t0.UnixNano()})
}

// TestRolesJudgeTheRequester: once roles are enforced, Apply takes
// commands only from members and read-write clients (Command.By, as the
// cluster stands when the command applies), a new node joins only once
// admitted, and peer IDs are stored in their usual form whatever form a
// command gives.
func TestRolesJudgeTheRequester(t *testing.T) {
	c := newCluster(t, testNodes(6))
	admin, reader, stranger := testpeer.ID("client admin"), testpeer.ID("client reader"), testpeer.ID("client stranger")
	pid, err := peer.Decode(admin)
	if err != nil {
		t.Fatal(err)
	}
	// The CID form of the admin's peer ID is stored as the usual form.
	c = must(t, c, membership.Command{Op: membership.OpGrant, ID: peer.ToCid(pid).String(), Role: config.RoleReadWrite, By: admin})
	if r, ok := c.ClientRole(admin); !ok || r != config.RoleReadWrite {
		t.Fatalf("clients %+v: want %s read-write", c.Clients, admin)
	}
	c = must(t, c, membership.Command{Op: membership.OpGrant, ID: reader, Role: config.RoleReadOnly, By: admin})

	newNode := testNode(7)
	join := membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: newNode}, At: t0.UnixNano(), By: newNode.ID}
	for _, by := range []string{reader, stranger, newNode.ID} {
		for _, cmd := range []membership.Command{
			{Op: membership.OpGrant, ID: stranger, Role: config.RoleReadWrite, By: by},
			{Op: membership.OpAdmit, ID: newNode.ID, By: by},
			{Op: membership.OpRevoke, ID: admin, By: by},
		} {
			if err := refuse(t, c, cmd); !strings.Contains(err.Error(), "not a member or a read-write client") {
				t.Fatalf("%s by %s: %v", cmd.Op, by, err)
			}
		}
	}
	// The secret alone does not make a node a member any more.
	if err := refuse(t, c, join); !strings.Contains(err.Error(), "not admitted") {
		t.Fatalf("join before admission: %v", err)
	}
	c = must(t, c, membership.Command{Op: membership.OpAdmit, ID: newNode.ID, By: admin})
	c = must(t, c, join)
	wantState(t, c, newNode.ID, membership.Joining)
	if len(c.Admitted) != 0 {
		t.Fatalf("admitted %v after the join, want none", c.Admitted)
	}
	// A member rejoins (a restart) without admission; members and the
	// leader (By empty) may change the cluster.
	c = must(t, c, join)
	// A drained and removed node is a new one again: admitted first.
	c = must(t, c, membership.Command{Op: membership.OpDrain, ID: newNode.ID, At: t0.UnixNano(), By: admin})
	c = must(t, c, membership.Command{Op: membership.OpRemove, ID: newNode.ID, At: t0.UnixNano()})
	wantState(t, c, newNode.ID, membership.Removed)
	if err := refuse(t, c, join); !strings.Contains(err.Error(), "not admitted") {
		t.Fatalf("join of a removed node before admission: %v", err)
	}
	c = must(t, c, membership.Command{Op: membership.OpAdmit, ID: newNode.ID, By: nodeID(2)})
	c = must(t, c, join)
	c = must(t, c, membership.Command{Op: membership.OpRevoke, ID: reader, By: nodeID(1)})
	c = must(t, c, membership.Command{Op: membership.OpGrant, ID: reader, Role: config.RoleReadOnly})
	// A role revoked is judged when the command applies.
	c = must(t, c, membership.Command{Op: membership.OpGrant, ID: reader, Role: config.RoleReadWrite, By: admin})
	c = must(t, c, membership.Command{Op: membership.OpRevoke, ID: admin, By: reader})
	refuse(t, c, membership.Command{Op: membership.OpGrant, ID: stranger, Role: config.RoleReadOnly, By: admin})
}

// allVouched reports whether c vouches for every position of slot.
func allVouched(c *config.Cluster, slot uint16) bool {
	for pos := range width {
		if !c.Vouches(slot, pos) {
			return false
		}
	}
	return true
}

// TestUnfilledFollowsRepair: a map that replaces another at once (an out
// node's slots move) marks the positions that changed owner unfilled, so
// that what their new owners hold is not taken as proof of what writes
// reached them (config.Cluster.Vouches); a second change adds its own;
// OpFilled of the current epoch, proposed when a repair pass found every
// key at full redundancy, clears them.
func TestUnfilledFollowsRepair(t *testing.T) {
	c := newCluster(t, testNodes(8))
	if c.Unfilled != nil {
		t.Fatal("a new cluster has unfilled positions: its first owners get every write")
	}
	first := c.Map.Clone()
	now := t0
	var silent []string // the nodes gone out stay silent
	goOut := func(c *config.Cluster, id string) *config.Cluster {
		t.Helper()
		silent = append(silent, id)
		now = now.Add(time.Second)
		c = must(t, c, wantOne(t, decide(t, c, answering(c, silent...), now, outAfter), membership.OpState, id, membership.Down))
		now = now.Add(outAfter)
		c = must(t, c, wantOne(t, decide(t, c, answering(c, silent...), now, outAfter), membership.OpState, id, membership.Out))
		now = now.Add(time.Second)
		return must(t, c, wantOne(t, decide(t, c, answering(c, silent...), now, outAfter), membership.OpRebalance, "", ""))
	}
	// wantVouched checks every position: vouched exactly when its owner
	// is the one it had in the first map.
	wantVouched := func(c *config.Cluster) {
		t.Helper()
		vouched, not := 0, 0
		for slot := range uint16(placement.NumSlots) {
			for pos := range width {
				same := first.Nodes[first.Owners(slot)[pos]].ID == c.Map.Nodes[c.Map.Owners(slot)[pos]].ID
				if got := c.Vouches(slot, pos); got != same {
					t.Fatalf("slot %d position %d (owner unchanged %v): Vouches = %v", slot, pos, same, got)
				} else if got {
					vouched++
				} else {
					not++
				}
			}
		}
		if vouched == 0 || not == 0 {
			t.Fatalf("%d positions vouched and %d not, want both", vouched, not)
		}
	}
	c = goOut(c, "n3")
	wantVouched(c)
	c = goOut(c, "n5")
	wantVouched(c)

	refuse(t, c, membership.Command{Op: membership.OpFilled, Epoch: c.Map.Epoch - 1})

	// One slot filled: its positions are vouched for, the others as before.
	var one uint16
	for allVouched(c, one) {
		one++
	}
	slots := make([]byte, placement.NumSlots/8)
	slots[one/8] |= 1 << (one % 8)
	before := c
	c = must(t, c, membership.Command{Op: membership.OpFilled, Epoch: c.Map.Epoch, Slots: slots})
	if !allVouched(c, one) || c.Unfilled == nil {
		t.Fatalf("slot %d filled: every position vouched %v, unfilled left %v; want true, true", one, allVouched(c, one), c.Unfilled != nil)
	}
	for slot := range uint16(placement.NumSlots) {
		for pos := range width {
			if slot != one && c.Vouches(slot, pos) != before.Vouches(slot, pos) {
				t.Fatalf("filling slot %d changed slot %d position %d", one, slot, pos)
			}
		}
	}

	c = must(t, c, membership.Command{Op: membership.OpFilled, Epoch: c.Map.Epoch})
	if c.Unfilled != nil {
		t.Fatal("OpFilled of the current epoch left unfilled positions")
	}
	for slot := range uint16(placement.NumSlots) {
		for pos := range width {
			if !c.Vouches(slot, pos) {
				t.Fatalf("slot %d position %d not vouched once the map is filled", slot, pos)
			}
		}
	}
}

// goOutAndRebalance takes member id, silent from now on, down, then out,
// then applies the rebalance that follows. It returns the cluster, the map
// before that rebalance, and the time of the last tick.
func goOutAndRebalance(t *testing.T, c *config.Cluster, now time.Time, id string) (*config.Cluster, *placement.Map, time.Time) {
	t.Helper()
	now = now.Add(time.Second)
	c = must(t, c, wantOne(t, decide(t, c, answering(c, id), now, outAfter), membership.OpState, id, membership.Down))
	now = now.Add(outAfter)
	c = must(t, c, wantOne(t, decide(t, c, answering(c, id), now, outAfter), membership.OpState, id, membership.Out))
	before := c.Map.Clone()
	now = now.Add(time.Second)
	c = must(t, c, wantOne(t, decide(t, c, answering(c, id), now, outAfter), membership.OpRebalance, "", ""))
	return c, before, now
}

// TestOutNodeMovesOnlyItsPositions: a node goes out while a join's copy
// is under way. The map changes at once, and only the out node's
// positions move: every other position keeps the owner that holds its
// shards. The join waits for the next rebalance, which copies. A direct
// map that took in the joiner as well moved live nodes' positions to it
// unfilled, and a value on its write quorum only read as its older
// version (chaos seed 345).
func TestOutNodeMovesOnlyItsPositions(t *testing.T) {
	c := newCluster(t, testNodes(7))
	now := t0
	c = must(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: testNode(7)}, At: now.UnixNano()})
	now = now.Add(time.Second)
	c = must(t, c, wantOne(t, decide(t, c, answering(c), now, outAfter), membership.OpRebalance, "", ""))
	if c.Target == nil || !inMap(c.Target, nodeID(7)) {
		t.Fatal("rebalance after a join: want a target that holds n7")
	}

	c, before, now := goOutAndRebalance(t, c, now, "n3")
	if c.Target != nil || c.Map.Epoch == before.Epoch {
		t.Fatalf("rebalance after n3 went out: map epoch %d (was %d), target %v; want the map replaced, no target", c.Map.Epoch, before.Epoch, c.Target != nil)
	}
	if inMap(c.Map, "n3") || inMap(c.Map, nodeID(7)) {
		t.Fatalf("direct map: n3 in it %v, n7 in it %v; want neither", inMap(c.Map, "n3"), inMap(c.Map, nodeID(7)))
	}
	wantBalanced(t, c.Map)
	moves, err := placement.Diff(before, c.Map)
	if err != nil {
		t.Fatal(err)
	}
	held := before.Counts()[slices.IndexFunc(before.Nodes, func(n placement.Node) bool { return n.ID == "n3" })]
	if len(moves) != held {
		t.Fatalf("direct map moves %d positions, want n3's %d", len(moves), held)
	}
	for _, mv := range moves {
		if mv.From != "n3" {
			t.Fatalf("move %+v: want every move to come from n3", mv)
		}
	}

	// Next tick: the join again, through a target.
	now = now.Add(time.Second)
	mapBefore := c.Map.Clone()
	c = must(t, c, wantOne(t, decide(t, c, answering(c, "n3"), now, outAfter), membership.OpRebalance, "", ""))
	if c.Target == nil || !inMap(c.Target, nodeID(7)) || !sameMap(t, c.Map, mapBefore) {
		t.Fatalf("rebalance after the direct map: target %v with n7 %v, map unchanged %v; want all three",
			c.Target != nil, inMap(c.Target, nodeID(7)), sameMap(t, c.Map, mapBefore))
	}
}

// TestOutNodeTakesInOneJoinerWhenTheWidthNeedsIt: six nodes for width 6,
// two joining (n7 and n8), then one goes out. The direct map needs a
// sixth node: it takes in one joiner, which gets the out node's positions
// and no other. The second joiner waits for the rebalance that copies.
func TestOutNodeTakesInOneJoinerWhenTheWidthNeedsIt(t *testing.T) {
	c := newCluster(t, testNodes(6))
	now := t0
	for i := 7; i < 9; i++ {
		c = must(t, c, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: testNode(i)}, At: now.UnixNano()})
	}
	c, before, now := goOutAndRebalance(t, c, now, "n3")
	if c.Target != nil || inMap(c.Map, "n3") || !inMap(c.Map, nodeID(7)) || inMap(c.Map, nodeID(8)) {
		t.Fatalf("direct map: target %v, n3 %v, first joiner %v, second %v; want no target, the first joiner only",
			c.Target != nil, inMap(c.Map, "n3"), inMap(c.Map, nodeID(7)), inMap(c.Map, nodeID(8)))
	}
	moves, err := placement.Diff(before, c.Map)
	if err != nil {
		t.Fatal(err)
	}
	for _, mv := range moves {
		if mv.From != "n3" || mv.To != nodeID(7) {
			t.Fatalf("move %+v: want every move from n3 to the first joiner", mv)
		}
	}
	if len(moves) != placement.NumSlots {
		t.Fatalf("direct map moves %d positions, want n3's %d", len(moves), placement.NumSlots)
	}
	now = now.Add(time.Second)
	c = must(t, c, wantOne(t, decide(t, c, answering(c, "n3"), now, outAfter), membership.OpRebalance, "", ""))
	if c.Target == nil || !inMap(c.Target, nodeID(8)) {
		t.Fatal("rebalance after the direct map: want a target that holds the second joiner")
	}
}
