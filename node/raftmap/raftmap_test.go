package raftmap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/membership"
)

const (
	electTimeout = 10 * time.Second // a first election, under -race
	syncTimeout  = 5 * time.Second  // a follower applying what the leader did
)

// Three voters bootstrap, elect a leader, and agree on the init command;
// rejected commands and proposals on followers fail with the documented
// errors and change nothing.
func TestBootstrapInitAndErrors(t *testing.T) {
	g := newGroup(t, 3, Config{})
	l := g.waitLeader(electTimeout)
	lr := g.members[l].r
	if c := lr.Cluster(); c != nil {
		t.Fatalf("cluster before init = %+v, want nil", c)
	}

	init := g.initCommand()
	g.propose(l, init)
	want := lr.Cluster()
	if want == nil {
		t.Fatal("the leader has no cluster after Propose(init) returned")
	}
	if want.ID != init.Cluster.ID || len(want.Members) != len(init.Cluster.Map.Nodes) {
		t.Fatalf("leader cluster = %s with %d members, want %s with %d (membership.Init)",
			want.ID, len(want.Members), init.Cluster.ID, len(init.Cluster.Map.Nodes))
	}
	g.waitSame(syncTimeout, want, 0, 1, 2)
	for i, m := range g.members {
		waitFor(t, syncTimeout, "OnChange of member "+strconv.Itoa(i), func() bool {
			_, last := m.seen()
			return last == m.r.Cluster()
		})
	}

	ctx := context.Background()
	// A second init and a state change of a stranger are rejected.
	for _, cmd := range []membership.Command{
		init,
		{Op: membership.OpState, ID: fakeNode(t).ID, State: membership.Down, At: 1},
	} {
		err := lr.Propose(ctx, cmd)
		if !errors.Is(err, membership.ErrRejected) {
			t.Fatalf("Propose(%s) = %v, want an error matching membership.ErrRejected", cmd.Op, err)
		}
	}
	if got := lr.Cluster(); got != want {
		t.Fatal("a rejected command changed the leader's cluster")
	}

	f := (l + 1) % 3
	err := g.members[f].r.Propose(ctx, membership.Command{Op: membership.OpRebalance})
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Propose on a follower = %v, want ErrNotLeader", err)
	}
	var nl *NotLeaderError
	if !errors.As(err, &nl) || nl.Leader != g.members[l].id {
		t.Fatalf("Propose on a follower = %v, want a NotLeaderError naming %s", err, g.members[l].id)
	}
	if err := g.members[f].r.SyncVoters(g.ids(0, 1, 2), nil); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("SyncVoters on a follower = %v, want ErrNotLeader", err)
	}

	// A context that has ended proposes nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := lr.Propose(cctx, membership.Command{Op: membership.OpRebalance}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Propose with a cancelled context = %v, want context.Canceled", err)
	}
	g.waitSame(syncTimeout, want, 0, 1, 2)
}

// The leader dies: another voter takes over and commits; the old leader
// restarts from its folder on a new port and catches up.
func TestFailoverAndRestart(t *testing.T) {
	g := newGroup(t, 3, Config{})
	l := g.waitLeader(electTimeout)
	g.propose(l, g.initCommand())
	g.waitSame(syncTimeout, g.members[l].r.Cluster(), 0, 1, 2)

	g.stop(l)
	start := time.Now()
	nl := g.waitLeader(5 * time.Second)
	t.Logf("new leader after %s", time.Since(start).Round(time.Millisecond))
	if nl == l {
		t.Fatal("the stopped member is leader")
	}

	fake := fakeNode(t)
	g.propose(nl, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: fake}, At: 42})
	want := g.members[nl].r.Cluster()
	if m, ok := want.Member(fake.ID); !ok || m.State != membership.Joining || m.Since != 42 {
		t.Fatalf("after join, member %s = %+v (found %v), want joining since 42", fake.ID, m, ok)
	}
	g.waitSame(syncTimeout, want, g.running()...)

	g.restart(l)
	g.waitSame(syncTimeout, want, l)
	// The restarted member is a follower of the same group.
	g.waitLeader(syncTimeout)
	servers, err := g.members[l].r.Servers()
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 3 {
		t.Fatalf("restarted member sees %d servers, want 3: %+v", len(servers), servers)
	}
}

// A fourth host joins as a non-voter and gets the whole state; SyncVoters
// then promotes, demotes and removes, but never touches the leader.
func TestSyncVoters(t *testing.T) {
	g := newGroup(t, 3, Config{})
	l := g.waitLeader(electTimeout)
	g.propose(l, g.initCommand())

	d := g.add()
	g.start(d, nil)
	lr := g.members[l].r
	others := otherThan(l, 0, 1, 2)
	if err := lr.SyncVoters(g.ids(0, 1, 2), g.ids(d)); err != nil {
		t.Fatal(err)
	}
	wantServers(t, lr, map[int]raft.ServerSuffrage{0: raft.Voter, 1: raft.Voter, 2: raft.Voter, d: raft.Nonvoter}, g)
	g.waitSame(syncTimeout, lr.Cluster(), d)
	if g.members[d].r.IsLeader() {
		t.Fatal("the non-voter is leader")
	}
	g.propose(l, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: fakeNode(t)}, At: 7})
	g.waitSame(syncTimeout, lr.Cluster(), d)

	// Promote d in place of others[0], which becomes a non-voter.
	if err := lr.SyncVoters(g.ids(l, others[1], d), g.ids(others[0])); err != nil {
		t.Fatal(err)
	}
	wantServers(t, lr, map[int]raft.ServerSuffrage{l: raft.Voter, others[1]: raft.Voter, d: raft.Voter, others[0]: raft.Nonvoter}, g)

	// The leader listed as a non-voter stays a voter; others[0] is removed.
	if err := lr.SyncVoters(g.ids(others[1], d), g.ids(l)); err != nil {
		t.Fatal(err)
	}
	wantServers(t, lr, map[int]raft.ServerSuffrage{l: raft.Voter, others[1]: raft.Voter, d: raft.Voter}, g)
	if !lr.IsLeader() {
		t.Fatal("the leader lost leadership through SyncVoters")
	}
	// The group still commits, and the new voter has the state.
	g.propose(l, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: fakeNode(t)}, At: 8})
	g.waitSame(syncTimeout, lr.Cluster(), others[1], d)

	if err := lr.SyncVoters(nil, g.ids(d)); err == nil {
		t.Fatal("SyncVoters without voters succeeded")
	}
	if err := lr.SyncVoters(g.ids(d), g.ids(d)); err == nil {
		t.Fatal("SyncVoters with a peer in both lists succeeded")
	}
	if err := lr.SyncVoters([]string{"not-a-peer-id"}, nil); err == nil {
		t.Fatal("SyncVoters with a bad peer id succeeded")
	}
}

// After a snapshot the log is compacted: a new member gets the state by
// InstallSnapshot over a libp2p stream, and a restarted member restores it
// from its own snapshot before it hears from anyone.
func TestSnapshotRestore(t *testing.T) {
	g := newGroup(t, 3, Config{TrailingLogs: 1, SnapshotThreshold: 1 << 20})
	l := g.waitLeader(electTimeout)
	lr := g.members[l].r
	g.propose(l, g.initCommand())
	for i := range 5 {
		g.propose(l, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: fakeNode(t)}, At: int64(i + 1)})
	}
	want := lr.Cluster()
	g.waitSame(syncTimeout, want, 0, 1, 2)
	for i := range g.members {
		if err := g.members[i].r.Snapshot(); err != nil {
			t.Fatalf("snapshot member %d: %v", i, err)
		}
		snaps, _ := os.ReadDir(filepath.Join(g.members[i].dir, SnapshotDir))
		if len(snaps) == 0 {
			t.Fatalf("member %d has no snapshot in %s", i, SnapshotDir)
		}
	}
	if err := lr.Snapshot(); err != nil {
		t.Fatalf("a second snapshot with nothing new: %v", err)
	}

	d := g.add()
	g.start(d, nil)
	if err := lr.SyncVoters(g.ids(0, 1, 2), g.ids(d)); err != nil {
		t.Fatal(err)
	}
	g.waitSame(syncTimeout, want, d)
	// raft records the installed snapshot just after it restores the state
	// machine, which waitSame saw: poll for it. Still 0 means the new
	// member replayed the log instead of installing a snapshot.
	waitFor(t, syncTimeout, "the new member's last snapshot index to leave 0", func() bool {
		return g.members[d].r.raft.Stats()["last_snapshot_index"] != "0"
	})

	f := otherThan(l, 0, 1, 2)[0]
	g.stop(f)
	g.restart(f)
	// Restored at Open, before any RPC.
	if got := g.members[f].r.Cluster(); string(mustJSON(t, got)) != string(mustJSON(t, want)) {
		t.Fatalf("restarted member's cluster right after Open =\n%s\nwant\n%s", mustJSON(t, got), mustJSON(t, want))
	}
	waitFor(t, syncTimeout, "OnChange after the restore", func() bool {
		n, last := g.members[f].seen()
		return n >= 1 && last == g.members[f].r.Cluster()
	})
	g.propose(l, membership.Command{Op: membership.OpRebalance})
	g.waitSame(syncTimeout, lr.Cluster(), 0, 1, 2, d)
}

// Close is idempotent, leaves the host open, and later calls fail with
// ErrClosed rather than hang.
func TestClose(t *testing.T) {
	g := newGroup(t, 1, Config{})
	l := g.waitLeader(electTimeout)
	r := g.members[l].r
	g.propose(l, g.initCommand())
	// The folder is locked while open.
	if r2, err := Open(Config{Host: g.members[l].host, Dir: g.members[l].dir}); err == nil {
		r2.Close()
		t.Fatal("a second Open of an open folder succeeded")
	}
	if !r.IsLeader() {
		t.Fatal("a failed Open disturbed the open raft")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if slices.Contains(g.members[l].host.Mux().Protocols(), Protocol) {
		t.Fatal("the raft protocol handler is still registered after Close")
	}
	if r.IsLeader() {
		t.Fatal("closed raft is leader")
	}
	if err := r.Propose(context.Background(), membership.Command{Op: membership.OpRebalance}); !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrClosed) {
		t.Fatalf("Propose after Close = %v, want ErrNotLeader or ErrClosed", err)
	}
	g.members[l].r = nil

	// The folder opens again, and a single voter re-elects itself and
	// applies its log once it commits in the new term.
	g.start(l, nil)
	l = g.waitLeader(electTimeout)
	waitFor(t, syncTimeout, "the reopened member to apply its log", func() bool {
		return g.members[l].r.Cluster() != nil
	})
}

func TestConfigValidate(t *testing.T) {
	g := newGroup(t, 0, Config{})
	g.add()
	h := g.members[0].host
	for name, cfg := range map[string]Config{
		"no host":        {Dir: t.TempDir()},
		"no dir":         {Host: h},
		"bad bootstrap":  {Host: h, Dir: t.TempDir(), Bootstrap: []string{"x"}},
		"twice":          {Host: h, Dir: t.TempDir(), Bootstrap: []string{h.ID().String(), h.ID().String()}},
		"lease too long": {Host: h, Dir: t.TempDir(), Timing: Timing{HeartbeatTimeout: time.Second, LeaderLeaseTimeout: 2 * time.Second}},
		"short election": {Host: h, Dir: t.TempDir(), Timing: Timing{HeartbeatTimeout: time.Second, ElectionTimeout: time.Millisecond}},
	} {
		if r, err := Open(cfg); err == nil {
			r.Close()
			t.Errorf("%s: Open succeeded", name)
		}
	}
}

func wantServers(t *testing.T, r *Raft, want map[int]raft.ServerSuffrage, g *group) {
	t.Helper()
	servers, err := r.Servers()
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]raft.ServerSuffrage)
	for _, s := range servers {
		if string(s.ID) != string(s.Address) {
			t.Errorf("server %s has address %s, want its id", s.ID, s.Address)
		}
		got[string(s.ID)] = s.Suffrage
	}
	ok := len(got) == len(want)
	for i, s := range want {
		if gs, found := got[g.members[i].id.String()]; !found || gs != s {
			ok = false
		}
	}
	if !ok {
		t.Fatalf("servers = %v, want (by member) %v", got, want)
	}
}

func otherThan(x int, all ...int) []int {
	var out []int
	for _, i := range all {
		if i != x {
			out = append(out, i)
		}
	}
	return out
}

// groupWithNonVoter starts 3 voters with the cluster initialised and a
// fourth member d as a non-voter; l is the leader, lr its raft.
func groupWithNonVoter(t *testing.T) (g *group, l int, lr *Raft, d int) {
	t.Helper()
	g = newGroup(t, 3, Config{})
	l = g.waitLeader(electTimeout)
	lr = g.members[l].r
	g.propose(l, g.initCommand())
	d = g.add()
	g.start(d, nil)
	if err := lr.SyncVoters(g.ids(0, 1, 2), g.ids(d)); err != nil {
		t.Fatal(err)
	}
	return g, l, lr, d
}

// Two close failures: voter c dies while the non-voter d is dead too.
// SyncVoters removes c before it adds d as a voter, so every change
// commits on the two live voters (adding d first would make 4 voters with
// 2 dead: no quorum, ever). Voters shows the configuration.
func TestSyncVotersRemovesBeforeAdding(t *testing.T) {
	g, l, lr, d := groupWithNonVoter(t)
	wantVoters(t, lr, g.ids(0, 1, 2))

	others := otherThan(l, 0, 1, 2)
	b, c := others[0], others[1]
	g.stop(d)
	g.stop(c)
	start := time.Now()
	if err := lr.SyncVoters(g.ids(l, b, d), nil); err != nil {
		t.Fatalf("SyncVoters with c and d dead: %v", err)
	}
	t.Logf("SyncVoters with two dead servers took %s", time.Since(start).Round(time.Millisecond))
	wantServers(t, lr, map[int]raft.ServerSuffrage{l: raft.Voter, b: raft.Voter, d: raft.Voter}, g)
	wantVoters(t, lr, g.ids(l, b, d))
	if !lr.IsLeader() {
		t.Fatal("the leader lost leadership")
	}
	// 2 of 3 voters live: the group commits.
	g.propose(l, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: fakeNode(t)}, At: 9})
	g.waitSame(syncTimeout, lr.Cluster(), b)
	waitFor(t, syncTimeout, "the follower to see the new configuration", func() bool {
		v, err := g.members[b].r.Voters()
		return err == nil && sameSet(v, g.ids(l, b, d))
	})
}

// Barrier on the leader applies everything committed; TransferLeadership
// hands leadership over, so that the next leader can demote the old one
// (the way a leader being drained leaves the voters).
func TestBarrierAndTransferLeadership(t *testing.T) {
	g, l, lr, d := groupWithNonVoter(t)
	g.propose(l, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: fakeNode(t)}, At: 1})
	if err := lr.Barrier(5 * time.Second); err != nil {
		t.Fatalf("Barrier on the leader: %v", err)
	}
	f := otherThan(l, 0, 1, 2)[0]
	if err := g.members[f].r.Barrier(time.Second); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Barrier on a follower = %v, want ErrNotLeader", err)
	}
	if err := g.members[f].r.TransferLeadership(); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("TransferLeadership on a follower = %v, want ErrNotLeader", err)
	}

	// The leader's node is being drained: the voters are the others and
	// d. SyncVoters promotes d but keeps the leader a voter.
	voters := append(g.ids(otherThan(l, 0, 1, 2)...), g.ids(d)...)
	if err := lr.SyncVoters(voters, g.ids(l)); err != nil {
		t.Fatal(err)
	}
	wantVoters(t, lr, append(slices.Clone(voters), g.ids(l)...))
	want := lr.Cluster()

	if err := lr.TransferLeadership(); err != nil {
		t.Fatalf("TransferLeadership: %v", err)
	}
	if lr.IsLeader() {
		t.Fatal("still leader after TransferLeadership returned")
	}
	nl := g.waitLeader(electTimeout)
	if nl == l {
		t.Fatal("the old leader is leader again")
	}
	nr := g.members[nl].r
	if err := nr.Barrier(5 * time.Second); err != nil {
		t.Fatalf("Barrier on the new leader: %v", err)
	}
	if got := nr.Cluster(); string(mustJSON(t, got)) != string(mustJSON(t, want)) {
		t.Fatal("the new leader's cluster after Barrier differs from the old leader's")
	}
	// The new leader demotes the old one.
	if err := nr.SyncVoters(voters, g.ids(l)); err != nil {
		t.Fatal(err)
	}
	wantVoters(t, nr, voters)
	g.propose(nl, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: fakeNode(t)}, At: 2})
	g.waitSame(syncTimeout, nr.Cluster(), 0, 1, 2, d)
}

// A single voter has nobody to hand leadership to.
func TestTransferLeadershipAlone(t *testing.T) {
	g := newGroup(t, 1, Config{})
	l := g.waitLeader(electTimeout)
	r := g.members[l].r
	if err := r.Barrier(5 * time.Second); err != nil {
		t.Fatalf("Barrier: %v", err)
	}
	if err := r.TransferLeadership(); err == nil {
		t.Fatal("TransferLeadership with no other voter succeeded")
	}
	if !r.IsLeader() {
		t.Fatal("a failed TransferLeadership lost leadership")
	}
	wantVoters(t, r, g.ids(l))
	r.Close()
	g.members[l].r = nil
	if err := r.Barrier(time.Second); !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrClosed) {
		t.Fatalf("Barrier after Close = %v, want ErrNotLeader or ErrClosed", err)
	}
}

func wantVoters(t *testing.T, r *Raft, want []string) {
	t.Helper()
	got, err := r.Voters()
	if err != nil {
		t.Fatal(err)
	}
	if !sameSet(got, want) {
		t.Fatalf("Voters = %v, want %v (any order)", got, want)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
