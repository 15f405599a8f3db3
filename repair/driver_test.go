package repair

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/placement"
)

// memPeers is a cluster of in-memory nodes holding encoded shards. Each
// keeps, per key, the positions it holds of one version, as package node
// does without the older versions: a newer shard replaces them, a shard of
// the same version adds its position, an older one is refused.
type memPeers struct {
	mu    sync.Mutex
	nodes map[string]map[string]map[int][]byte // node -> key -> position -> shard
	down  map[string]bool
	puts  int
}

func newMemPeers(ids []string) *memPeers {
	p := &memPeers{nodes: map[string]map[string]map[int][]byte{}, down: map[string]bool{}}
	for _, id := range ids {
		p.nodes[id] = map[string]map[int][]byte{}
	}
	return p
}

var errDown = errors.New("node down")

func (p *memPeers) Inventory(_ context.Context, node string) ([]Holding, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down[node] {
		return nil, errDown
	}
	var hs []Holding
	for _, byPos := range p.nodes[node] {
		for _, raw := range byPos {
			sh, err := coding.ParseShard(raw)
			if err != nil {
				return nil, err
			}
			h := sh.Header
			hs = append(hs, Holding{Node: node, Key: h.Key, Pos: int(h.Index), Policy: h.Policy, Version: h.Version,
				Tombstone: h.Tombstone, ValueLen: h.ValueLen, ShardLen: uint32(len(sh.Data))})
		}
	}
	return hs, nil
}

func (p *memPeers) GetShard(_ context.Context, node, key string, pos int) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down[node] {
		return nil, errDown
	}
	raw, ok := p.nodes[node][key][pos]
	if !ok {
		return nil, fmt.Errorf("%s holds no %q shard %d", node, key, pos)
	}
	return raw, nil
}

func (p *memPeers) PutShard(_ context.Context, node string, shard []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down[node] {
		return errDown
	}
	if err := p.store(node, shard); err != nil {
		return err
	}
	p.puts++
	return nil
}

// store puts shard on node by the node's rule; p.mu is held (or the
// cluster not yet shared).
func (p *memPeers) store(node string, shard []byte) error {
	sh, err := coding.ParseShard(shard)
	if err != nil {
		return err
	}
	key, v := sh.Header.Key, sh.Header.Version
	if held := p.versionAt(node, key); held != nil && v.Less(*held) {
		return fmt.Errorf("%s holds %q at %s, newer than %s", node, key, held, v)
	} else if held == nil || *held != v {
		p.nodes[node][key] = map[int][]byte{}
	}
	p.nodes[node][key][int(sh.Header.Index)] = slices.Clone(shard)
	return nil
}

// versionAt returns the version node holds of key, or nil.
func (p *memPeers) versionAt(node, key string) *coding.Version {
	for _, raw := range p.nodes[node][key] {
		if sh, err := coding.ParseShard(raw); err == nil {
			return &sh.Header.Version
		}
	}
	return nil
}

func (p *memPeers) Drop(_ context.Context, a Action) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down[a.To] {
		return errDown
	}
	if a.Older {
		return nil // it keeps no older versions
	}
	if held := p.versionAt(a.To, a.Key); held != nil && (*held == a.Version || !a.Restore && held.Less(a.Version)) {
		delete(p.nodes[a.To][a.Key], a.Pos)
		if len(p.nodes[a.To][a.Key]) == 0 {
			delete(p.nodes[a.To], a.Key)
		}
	}
	return nil
}

// sevenNodeMap is a map of width 6 over nodes n0..n6, and their IDs.
func sevenNodeMap(tb testing.TB) (*placement.Map, []string) {
	tb.Helper()
	var nodes []placement.Node
	var ids []string
	for i := 0; i < 7; i++ {
		ids = append(ids, fmt.Sprintf("n%d", i))
		nodes = append(nodes, placement.Node{ID: ids[i]})
	}
	m, err := placement.Assign(nil, nodes, 6)
	if err != nil {
		tb.Fatal(err)
	}
	return m, ids
}

// testCluster is a 7-node map of width 6 with n values of 4+2 stored on
// their owners.
func testCluster(t *testing.T, n int) (*placement.Map, []string, *memPeers, map[string][]byte) {
	t.Helper()
	m, ids := sevenNodeMap(t)
	p := newMemPeers(ids)
	vals := map[string][]byte{}
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("/k/%d", i)
		val := bytes.Repeat([]byte{byte(i), byte(i >> 8), 7}, 1000+i*1500)
		vals[key] = val
		shards, err := coding.Encode(key, val, coding.Erasure(4, 2), coding.Version{HLC: uint64(i + 1), Writer: 1})
		if err != nil {
			t.Fatal(err)
		}
		for pos, o := range m.Owners(placement.Slot(key)) {
			if err := p.store(m.Nodes[o].ID, shards[pos].AppendBinary(nil)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return m, ids, p, vals
}

// TestDriverRebuildsLostShards: a node's shards vanish (its disk was
// replaced); one pass rebuilds every one of them from the others, with the
// right bytes, and the next pass finds nothing to do.
func TestDriverRebuildsLostShards(t *testing.T) {
	m, ids, p, vals := testCluster(t, 40)
	lost := len(p.nodes["n2"])
	p.nodes["n2"] = map[string]map[int][]byte{}
	d, err := OpenDriver(DriverConfig{Peers: p, StatePath: filepath.Join(t.TempDir(), "repair.db"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	plan, err := d.Pass(context.Background(), m, nil, ids, 0)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Degraded != lost || len(plan.Actions) != lost {
		t.Fatalf("plan: %d degraded, %d actions; want %d of each", plan.Degraded, len(plan.Actions), lost)
	}
	if got := len(p.nodes["n2"]); got != lost {
		t.Fatalf("n2 holds %d shards after the pass, want %d", got, lost)
	}
	checkDecodesWith(t, m, p, vals, "n2")
	st := d.Stats()
	if st.Done != int64(lost) || st.Backlog != 0 || st.Degraded != lost {
		t.Fatalf("stats %+v: want %d done, backlog 0", st, lost)
	}
	plan, err = d.Pass(context.Background(), m, nil, ids, 0)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Degraded != 0 || len(plan.Actions) != 0 {
		t.Fatalf("second pass: %d degraded, %d actions; want none", plan.Degraded, len(plan.Actions))
	}
}

// checkDecodesWith checks that every value decodes from k = 4 shards that
// include the one node holds.
func checkDecodesWith(t *testing.T, m *placement.Map, p *memPeers, vals map[string][]byte, node string) {
	t.Helper()
	for key, val := range vals {
		owners := m.Owners(placement.Slot(key))
		shards := make([]*coding.Shard, 6)
		n := 0
		for _, pass := range []bool{true, false} { // node first, then others
			for pos, o := range owners {
				id := m.Nodes[o].ID
				if (id == node) != pass || n == 4 {
					continue
				}
				sh, err := coding.ParseShard(p.nodes[id][key][pos])
				if err != nil {
					t.Fatalf("%s shard %d on %s: %v", key, pos, id, err)
				}
				shards[pos] = sh
				n++
			}
		}
		got, err := coding.Decode(shards)
		if err != nil || !bytes.Equal(got, val) {
			t.Fatalf("%s does not decode to its value with %s's shard: %v", key, node, err)
		}
	}
}

// delegPeers is memPeers whose nodes take repair orders (Delegator): they
// read the shards they need from the others themselves. relayed counts the
// shard reads and writes the driver makes itself.
type delegPeers struct {
	*memPeers
	orders  atomic.Int64
	relayed atomic.Int64
}

func (p *delegPeers) Delegate(ctx context.Context, a Action) error {
	p.orders.Add(1)
	shard, err := MakeShard(ctx, p.memPeers.GetShard, a) // on node a.To
	if err != nil {
		return err
	}
	return p.memPeers.PutShard(ctx, a.To, shard)
}

func (p *delegPeers) GetShard(ctx context.Context, node, key string, pos int) ([]byte, error) {
	p.relayed.Add(1)
	return p.memPeers.GetShard(ctx, node, key, pos)
}

func (p *delegPeers) PutShard(ctx context.Context, node string, shard []byte) error {
	p.relayed.Add(1)
	return p.memPeers.PutShard(ctx, node, shard)
}

// TestDriverDelegatesRepairs: with nodes that take repair orders, the
// driver hands each rebuild to the node that stores the shard and moves no
// shard itself; with peers that are no Delegator it rebuilds them itself.
// The shards come back right either way.
func TestDriverDelegatesRepairs(t *testing.T) {
	for _, old := range []bool{false, true} {
		m, ids, mem, vals := testCluster(t, 30)
		lost := len(mem.nodes["n3"])
		mem.nodes["n3"] = map[string]map[int][]byte{}
		dp := &delegPeers{memPeers: mem}
		var p Peers = dp
		if old {
			p = relaying{dp}
		}
		d, err := OpenDriver(DriverConfig{Peers: p, StatePath: filepath.Join(t.TempDir(), "repair.db"), NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		plan, err := d.Pass(context.Background(), m, nil, ids, 0)
		d.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Actions) != lost || len(mem.nodes["n3"]) != lost {
			t.Fatalf("without Delegator %v: %d actions, n3 holds %d shards; want %d of each", old, len(plan.Actions), len(mem.nodes["n3"]), lost)
		}
		checkDecodesWith(t, m, mem, vals, "n3")
		orders, relayed := dp.orders.Load(), dp.relayed.Load()
		switch {
		case !old && (orders != int64(lost) || relayed != 0):
			t.Fatalf("%d orders and %d shard reads or writes by the driver; want %d orders and none", orders, relayed, lost)
		case old && (orders != 0 || relayed < int64(lost)*5):
			// Each rebuild reads 4 shards and writes one.
			t.Fatalf("without Delegator: %d orders and %d shard reads or writes by the driver; want none and at least %d", orders, relayed, lost*5)
		}
	}
}

// relaying hides delegPeers' Delegate: the driver relays every shard.
type relaying struct{ *delegPeers }

func (r relaying) Delegate() {} // not a Delegator: another signature

// TestDriverResumesBacklog: a backlog left by a crash is there when the
// state file is opened again, and the next pass carries it out first.
func TestDriverResumesBacklog(t *testing.T) {
	m, ids, p, _ := testCluster(t, 20)
	path := filepath.Join(t.TempDir(), "repair.db")
	d, err := OpenDriver(DriverConfig{Peers: p, StatePath: path, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	// Plan a pass with n4 unreachable for puts: its rebuilds fail and stay
	// planned. Simulate the crash by saving the plan and closing.
	victim := "n4"
	lost := len(p.nodes[victim])
	p.nodes[victim] = map[string]map[int][]byte{}
	view := &View{Map: m, Reachable: map[string]bool{}}
	for _, id := range ids {
		hs, _ := p.Inventory(context.Background(), id)
		view.Holdings = append(view.Holdings, hs...)
		view.Reachable[id] = true
	}
	plan := Make(view)
	if len(plan.Actions) != lost {
		t.Fatalf("plan has %d actions, want %d", len(plan.Actions), lost)
	}
	if err := d.saveBacklog(plan.Actions); err != nil {
		t.Fatal(err)
	}
	// An entry under a key the driver never writes is skipped, and not
	// counted.
	if err := d.db.Update(func(tx *bolt.Tx) error {
		v, _ := json.Marshal(plan.Actions[0])
		return tx.Bucket(bucketBacklog).Put([]byte("odd"), v)
	}); err != nil {
		t.Fatal(err)
	}
	d.Close()

	d, err = OpenDriver(DriverConfig{Peers: p, StatePath: path, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if st := d.Stats(); st.Backlog != lost {
		t.Fatalf("reopened: backlog %d, want %d", st.Backlog, lost)
	}
	// The resumed backlog is done before the node is even listed: list
	// nobody, and the shards still come back.
	if _, err := d.Pass(context.Background(), m, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	if got := len(p.nodes[victim]); got != lost {
		t.Fatalf("%s holds %d shards after the resumed pass, want %d", victim, got, lost)
	}
	if st := d.Stats(); st.Backlog != 0 || st.Done != int64(lost) {
		t.Fatalf("stats after resume: %+v", st)
	}
}

// TestDriverRateLimit: with --repair-rate set, a pass cannot move its bytes
// faster than the rate allows (beyond one burst). A lower bound on time
// cannot fail on a slow machine, only if the limit is not applied.
func TestDriverRateLimit(t *testing.T) {
	m, ids, p, _ := testCluster(t, 60)
	p.nodes["n5"] = map[string]map[int][]byte{}
	const rate = 512 << 10 // bytes per second
	d, err := OpenDriver(DriverConfig{Peers: p, StatePath: filepath.Join(t.TempDir(), "repair.db"), NoSync: true, Rate: rate})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	start := time.Now()
	if _, err := d.Pass(context.Background(), m, nil, ids, 0); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	moved := d.Stats().BytesMoved
	if moved < burst+rate {
		t.Fatalf("moved only %d bytes: the test needs more than a burst and a second's worth", moved)
	}
	if least := time.Duration(float64(moved-burst) / rate * float64(time.Second)); took < least {
		t.Fatalf("moved %d bytes in %s at a limit of %d B/s: want at least %s", moved, took, rate, least)
	}
}

// TestCommitRaceWriteSurvivesOldOwnersDown: v2 raced a rebalance commit:
// acked by 5 of 6 old owners (all but an unmoved position), forwards lost.
// Two old owners of moved positions are down past the grace, either listed
// and unreachable or members outside the pass's nodes (down or out in the
// cluster description, counted as absent): v2 is not garbage, and once they
// are back it is what the new owners hold.
func TestCommitRaceWriteSurvivesOldOwnersDown(t *testing.T) {
	for _, unlisted := range []bool{false, true} {
		t.Run(fmt.Sprintf("unlisted=%v", unlisted), func(t *testing.T) { commitRaceWriteSurvives(t, unlisted) })
	}
}

func commitRaceWriteSurvives(t *testing.T, unlisted bool) {
	var nodes []placement.Node
	var ids []string
	for i := 0; i < 10; i++ {
		ids, nodes = append(ids, fmt.Sprintf("n%d", i)), append(nodes, placement.Node{ID: fmt.Sprintf("n%d", i)})
	}
	old, _ := placement.Assign(nil, nodes[:7], 6)
	tgt, _ := placement.Assign(old, nodes, 6) // three nodes joined
	own := func(m *placement.Map, key string, pos int) string {
		return m.Nodes[m.Owners(placement.Slot(key))[pos]].ID
	}
	var key string
	var moved []int // a key with 3 moved positions whose old owners left its row
	for i := 0; len(moved) != 3; i++ {
		key, moved = fmt.Sprintf("/race/%d", i), nil
		for pos := range 6 {
			if o := own(old, key, pos); o != own(tgt, key, pos) && !slices.Contains(tgt.Owners(placement.Slot(key)), uint16(slices.Index(ids, o))) {
				moved = append(moved, pos)
			}
		}
	}
	mem := newMemPeers(ids)
	p := mem
	hlc := uint64(time.Now().Add(-time.Hour).UnixMilli()) << 16
	val := bytes.Repeat([]byte("2"), 64<<10)
	v1, _ := coding.Encode(key, bytes.Repeat([]byte("1"), 64<<10), coding.Erasure(4, 2), coding.Version{HLC: hlc, Writer: 1})
	v2, _ := coding.Encode(key, val, coding.Erasure(4, 2), coding.Version{HLC: hlc + 1<<16, Writer: 1})
	missed := slices.IndexFunc([]int{0, 1, 2, 3, 4, 5}, func(pos int) bool { return !slices.Contains(moved, pos) })
	for pos := range 6 { // moved before the commit
		if err := mem.store(own(tgt, key, pos), v1[pos].AppendBinary(nil)); err != nil {
			t.Fatal(err)
		}
	}
	for pos := range 6 {
		if pos != missed {
			if err := mem.store(own(old, key, pos), v2[pos].AppendBinary(nil)); err != nil {
				t.Fatal(err)
			}
		}
	}
	away := []string{own(old, key, moved[0]), own(old, key, moved[1])}
	listed, absent := ids, 0
	if unlisted {
		listed = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return slices.Contains(away, id) })
		absent = len(away)
	} else {
		mem.down[away[0]], mem.down[away[1]] = true, true
	}
	d, err := OpenDriver(DriverConfig{Peers: p, StatePath: filepath.Join(t.TempDir(), "repair.db"), NoSync: true,
		GarbageGrace: time.Minute, MapSince: func() int64 { return time.Now().Add(-30 * time.Minute).UnixNano() }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for i := range 7 { // the map is tgt; the old owners come back after 3 passes
		if i == 3 {
			mem.down = map[string]bool{}
			listed, absent = ids, 0
		}
		if _, err := d.Pass(context.Background(), tgt, nil, listed, absent); err != nil {
			t.Fatal(err)
		}
	}
	shards := make([]*coding.Shard, 6)
	for pos := range 6 {
		if sh, err := coding.ParseShard(mem.nodes[own(tgt, key, pos)][key][pos]); err == nil && sh.Header.Version == v2[0].Header.Version {
			shards[pos] = sh
		}
	}
	if got, err := coding.Decode(shards); err != nil || !bytes.Equal(got, val) {
		t.Fatalf("the acknowledged v2 is lost; the new owners hold v1: %v", err)
	}
}
