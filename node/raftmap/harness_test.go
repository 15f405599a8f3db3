package raftmap

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/transport"
)

// testTiming makes elections take about a second, with a margin for the
// race detector on one CPU (a lease of 100 ms lost leadership there).
var testTiming = Timing{
	HeartbeatTimeout:   500 * time.Millisecond,
	ElectionTimeout:    500 * time.Millisecond,
	LeaderLeaseTimeout: 250 * time.Millisecond,
	CommitTimeout:      10 * time.Millisecond,
}

// group is an in-process raft group: libp2p hosts on 127.0.0.1 sharing a
// PSK, each with a Raft over its own folder.
type group struct {
	t    *testing.T
	psk  pnet.PSK
	root string
	// opts is copied into every member's Config (Host, Dir, Bootstrap,
	// AddrsOf and OnChange are set per member).
	opts Config

	mu    sync.Mutex
	addrs map[peer.ID][]ma.Multiaddr

	members []*member
	boot    []string // the bootstrap voters
}

// member is one server of a group.
type member struct {
	key  crypto.PrivKey
	id   peer.ID
	dir  string
	host host.Host
	r    *Raft // nil while stopped

	mu      sync.Mutex
	changes int
	last    *config.Cluster
}

func (m *member) seen() (int, *config.Cluster) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changes, m.last
}

// newGroup starts voters members that bootstrap together.
func newGroup(t *testing.T, voters int, opts Config) *group {
	t.Helper()
	psk, err := config.ParseSecret(config.NewSecret())
	if err != nil {
		t.Fatal(err)
	}
	g := &group{t: t, psk: psk, root: t.TempDir(), opts: opts, addrs: make(map[peer.ID][]ma.Multiaddr)}
	t.Cleanup(g.close)
	for i := 0; i < voters; i++ {
		g.add()
	}
	for _, m := range g.members {
		g.boot = append(g.boot, m.id.String())
	}
	for i := range g.members {
		g.start(i, g.boot)
	}
	return g
}

// add creates a member with a fresh key and a running host, without raft.
func (g *group) add() int {
	g.t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		g.t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		g.t.Fatal(err)
	}
	i := len(g.members)
	m := &member{key: key, id: id, dir: filepath.Join(g.root, fmt.Sprintf("m%d", i))}
	g.members = append(g.members, m)
	g.startHost(i)
	return i
}

func (g *group) startHost(i int) {
	g.t.Helper()
	m := g.members[i]
	h, err := transport.NewHost(transport.HostConfig{Key: m.key, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Secret: g.psk})
	if err != nil {
		g.t.Fatal(err)
	}
	m.host = h
	g.mu.Lock()
	g.addrs[m.id] = h.Addrs()
	g.mu.Unlock()
}

func (g *group) addrsOf(id peer.ID) []ma.Multiaddr {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addrs[id]
}

// start opens member i's raft on its host.
func (g *group) start(i int, bootstrap []string) {
	g.t.Helper()
	m := g.members[i]
	cfg := g.opts
	cfg.Host, cfg.Dir, cfg.Bootstrap, cfg.AddrsOf = m.host, m.dir, bootstrap, g.addrsOf
	cfg.OnChange = func(c *config.Cluster) {
		m.mu.Lock()
		m.changes++
		m.last = c
		m.mu.Unlock()
	}
	if cfg.Timing == (Timing{}) {
		cfg.Timing = testTiming
	}
	cfg.NoSync = true
	r, err := Open(cfg)
	if err != nil {
		g.t.Fatalf("open member %d: %v", i, err)
	}
	m.r = r
}

// stop closes member i's raft and host, as a crash would (the folder stays).
func (g *group) stop(i int) {
	g.t.Helper()
	m := g.members[i]
	if m.r != nil {
		if err := m.r.Close(); err != nil {
			g.t.Errorf("close member %d: %v", i, err)
		}
		m.r = nil
	}
	if m.host != nil {
		m.host.Close()
		m.host = nil
	}
}

// restart starts member i again from its folder, with its key on a new
// port. It passes the bootstrap list again, as a node with an unchanged
// config would: the raft state in the folder must win.
func (g *group) restart(i int) {
	g.t.Helper()
	g.startHost(i)
	g.start(i, g.boot)
}

func (g *group) close() {
	for i := range g.members {
		g.stop(i)
	}
}

// running lists the members whose raft is open.
func (g *group) running() []int {
	var out []int
	for i, m := range g.members {
		if m.r != nil {
			out = append(out, i)
		}
	}
	return out
}

// waitLeader waits until exactly one running member is leader and every
// running voter agrees on it, and returns its index.
func (g *group) waitLeader(timeout time.Duration) int {
	g.t.Helper()
	leader := -1
	waitFor(g.t, timeout, "a single leader", func() bool {
		leader = -1
		for _, i := range g.running() {
			if g.members[i].r.IsLeader() {
				if leader >= 0 {
					return false
				}
				leader = i
			}
		}
		if leader < 0 {
			return false
		}
		for _, i := range g.running() {
			if id, ok := g.members[i].r.Leader(); ok && id != g.members[leader].id {
				return false
			}
		}
		return true
	})
	return leader
}

// waitSame waits until members show the same cluster as want (as JSON).
func (g *group) waitSame(timeout time.Duration, want *config.Cluster, members ...int) {
	g.t.Helper()
	wb := mustJSON(g.t, want)
	for _, i := range members {
		r := g.members[i].r
		waitFor(g.t, timeout, fmt.Sprintf("member %d to reach the leader's cluster", i), func() bool {
			return bytes.Equal(mustJSON(g.t, r.Cluster()), wb)
		})
	}
}

func (g *group) ids(members ...int) []string {
	var out []string
	for _, i := range members {
		out = append(out, g.members[i].id.String())
	}
	return out
}

// initCommand is an init with a valid erasure 2+1 cluster over the real
// members plus two fake nodes.
func (g *group) initCommand() membership.Command {
	g.t.Helper()
	var ids []string
	for _, m := range g.members {
		ids = append(ids, m.id.String())
	}
	return initCommand(g.t, ids)
}

// initCommand is an init with a valid erasure 2+1 cluster over the given
// peer IDs plus fake nodes, 5 nodes at least.
func initCommand(t *testing.T, ids []string) membership.Command {
	t.Helper()
	var nodes []placement.Node
	for _, id := range ids {
		nodes = append(nodes, placement.Node{ID: id, Addrs: []string{"/ip4/127.0.0.1/tcp/1"}})
	}
	for len(nodes) < 5 {
		nodes = append(nodes, fakeNode(t))
	}
	mp, err := placement.Assign(nil, nodes, 3)
	if err != nil {
		t.Fatal(err)
	}
	c := &config.Cluster{ID: "raftmap-test", Policy: coding.Erasure(2, 1), SmallThreshold: 16 << 10, Map: mp}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return membership.Command{Op: membership.OpInit, Cluster: c}
}

// propose proposes cmd on member i and fails the test on an error.
func (g *group) propose(i int, cmd membership.Command) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.members[i].r.Propose(ctx, cmd); err != nil {
		g.t.Fatalf("propose %s on member %d: %v", cmd.Op, i, err)
	}
}

func fakeNode(t *testing.T) placement.Node {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return placement.Node{ID: id.String(), Addrs: []string{"/ip4/127.0.0.1/tcp/2"}}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitFor polls cond until it holds, and fails the test at the deadline.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
