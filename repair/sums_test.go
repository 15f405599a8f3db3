package repair

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/placement"
)

// sumPeers adds slot sums and slot listings to memPeers, as a node
// computes them, and counts the listings asked for.
type sumPeers struct {
	*memPeers
	slotLists, wholeLists int
	noSums                string // a node that cannot sum (an older version)
}

func holdingHash(h Holding) uint64 {
	f := fnv.New64a()
	var b [1 + 3 + 16]byte
	if h.Tombstone {
		b[0] = 1
	}
	b[1], b[2], b[3] = byte(h.Policy.Kind), byte(h.Policy.DataShards), byte(h.Policy.ParityShards)
	binary.BigEndian.PutUint64(b[4:], h.Version.HLC)
	binary.BigEndian.PutUint64(b[12:], h.Version.Writer)
	f.Write(b[:])
	f.Write([]byte(h.Key))
	return f.Sum64()
}

func (p *sumPeers) Sums(ctx context.Context, node string) ([]SlotSum, error) {
	if node == p.noSums {
		return nil, fmt.Errorf("%s: unsupported op", node)
	}
	hs, err := p.memPeers.Inventory(ctx, node)
	if err != nil {
		return nil, err
	}
	type group struct {
		slot   uint16
		policy coding.Policy
		pos    int
	}
	acc := map[group]SlotSum{}
	for _, h := range hs {
		g := group{placement.Slot(h.Key), h.Policy, h.Pos}
		s := acc[g]
		s.Slot, s.Policy, s.Pos = g.slot, g.policy, g.pos
		s.Count++
		s.XOR ^= holdingHash(h)
		acc[g] = s
	}
	var out []SlotSum
	for _, s := range acc {
		out = append(out, s)
	}
	return out, nil
}

func (p *sumPeers) InventorySlot(ctx context.Context, node string, slot uint16) ([]Holding, error) {
	hs, err := p.memPeers.Inventory(ctx, node)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.slotLists++
	p.mu.Unlock()
	var out []Holding
	for _, h := range hs {
		if placement.Slot(h.Key) == slot {
			out = append(out, h)
		}
	}
	return out, nil
}

func (p *sumPeers) Inventory(ctx context.Context, node string) ([]Holding, error) {
	p.mu.Lock()
	p.wholeLists++
	p.mu.Unlock()
	return p.memPeers.Inventory(ctx, node)
}

// TestPassListsOnlyUnsettledSlots: a settled cluster is checked by its
// slot sums alone, and a pass after one shard was lost lists that key's
// slot, on every node, and nothing else. It rebuilds the shard; with a
// node down (most slots unsettled) the pass lists every node whole.
func TestPassListsOnlyUnsettledSlots(t *testing.T) {
	m, ids, mp, vals := testCluster(t, 40)
	p := &sumPeers{memPeers: mp}
	d, err := OpenDriver(DriverConfig{Peers: p, StatePath: filepath.Join(t.TempDir(), "repair.db"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()

	plan, err := d.Pass(ctx, m, nil, ids, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); len(plan.Actions) != 0 || st.SlotsListed != 0 || p.slotLists+p.wholeLists != 0 || st.Keys != len(vals) || st.Degraded != 0 {
		t.Fatalf("settled cluster: %d actions, stats %+v, %d slot and %d whole listings; want none, %d keys",
			len(plan.Actions), st, p.slotLists, p.wholeLists, len(vals))
	}

	key := "/k/7"
	victim := m.Nodes[m.Owners(placement.Slot(key))[2]].ID
	delete(mp.nodes[victim], key)
	plan, err = d.Pass(ctx, m, nil, ids, 0)
	if err != nil {
		t.Fatal(err)
	}
	st := d.Stats()
	if len(plan.Actions) != 1 || plan.Actions[0].Key != key || plan.Actions[0].To != victim || st.SlotsListed != 1 || p.slotLists != len(ids) || p.wholeLists != 0 {
		t.Fatalf("one shard lost: actions %+v, %d slots listed, %d slot and %d whole listings; want 1 rebuild to %s, 1 slot on %d nodes",
			plan.Actions, st.SlotsListed, p.slotLists, p.wholeLists, victim, len(ids))
	}
	if st.Keys != len(vals) || st.Degraded != 1 {
		t.Fatalf("one shard lost: %d keys, %d degraded; want %d and 1", st.Keys, st.Degraded, len(vals))
	}
	if _, ok := mp.nodes[victim][key]; !ok {
		t.Fatalf("the lost shard of %s is not back on %s", key, victim)
	}
	if _, err := d.Pass(ctx, m, nil, ids, 0); err != nil || d.Stats().SlotsListed != 0 {
		t.Fatalf("after the rebuild: %v, %d slots listed; want 0", err, d.Stats().SlotsListed)
	}

	// A node that cannot give its sums is listed whole, with the others,
	// and stays reachable.
	p.noSums = "n6"
	if _, err := d.Pass(ctx, m, nil, ids, 0); err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); st.SlotsListed != placement.NumSlots || p.wholeLists != len(ids) || st.Nodes != len(ids) {
		t.Fatalf("n6 without sums: %d slots listed, %d whole listings, %d nodes listed; want all, %d, %d",
			st.SlotsListed, p.wholeLists, st.Nodes, len(ids), len(ids))
	}
	p.noSums, p.wholeLists = "", 0

	mp.down["n3"] = true
	if _, err := d.Pass(ctx, m, nil, ids, 0); err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); st.SlotsListed != placement.NumSlots || p.wholeLists != len(ids) || st.Keys != len(vals) {
		t.Fatalf("a node down: %d slots listed, %d whole listings, %d keys; want all slots, %d, %d",
			st.SlotsListed, p.wholeLists, st.Keys, len(ids), len(vals))
	}
}

// TestSettledSlots: the rules of SettledSlots, one slot at a time, on a
// map of width 6 with a 4+2 value and a 3-replica value in the slot.
func TestSettledSlots(t *testing.T) {
	m, ids := sevenNodeMap(t)
	const slot = 1234
	owners := m.Owners(slot)
	id := func(p int) string { return m.Nodes[owners[p]].ID }
	var outsider string
	for _, n := range ids {
		if !slices.ContainsFunc(owners, func(o uint16) bool { return m.Nodes[o].ID == n }) {
			outsider = n
		}
	}
	ec, r3 := coding.Erasure(4, 2), coding.Replicas(3)
	// healthy: every node answers; the owners of the slot hold 5 values
	// of 4+2 at their positions and the first 3 hold 2 of 3 replicas.
	healthy := func() map[string][]SlotSum {
		sums := map[string][]SlotSum{outsider: nil}
		for p := range owners {
			sums[id(p)] = append(sums[id(p)], SlotSum{Slot: slot, Policy: ec, Pos: p, Count: 5, XOR: 0xabc})
			if p < 3 {
				sums[id(p)] = append(sums[id(p)], SlotSum{Slot: slot, Policy: r3, Pos: p, Count: 2, XOR: 0x123})
			}
		}
		return sums
	}
	unsettled, keys := SettledSlots(m, healthy())
	if len(unsettled) != 0 || keys != 7 {
		t.Fatalf("healthy: unsettled slots %v, %d keys; want none (the others are empty) and 7 keys", unsettled, keys)
	}
	for _, c := range []struct {
		name  string
		spoil func(map[string][]SlotSum)
	}{
		{"an owner did not answer", func(s map[string][]SlotSum) { delete(s, id(4)) }},
		{"an owner misses a value", func(s map[string][]SlotSum) { s[id(5)][0].Count, s[id(5)][0].XOR = 4, 0xab }},
		{"an owner holds another version", func(s map[string][]SlotSum) { s[id(1)][0].XOR ^= 1 }},
		{"an owner keeps older versions", func(s map[string][]SlotSum) { s[id(3)][0].Older = 1 }},
		{"an owner holds the wrong position", func(s map[string][]SlotSum) { s[id(2)][0].Pos = 3 }},
		{"an outsider holds a copy", func(s map[string][]SlotSum) {
			s[outsider] = []SlotSum{{Slot: slot, Policy: ec, Pos: 0, Count: 1, XOR: 0x1}}
		}},
		{"an owner past the replicas' width holds one", func(s map[string][]SlotSum) {
			s[id(4)] = append(s[id(4)], SlotSum{Slot: slot, Policy: r3, Pos: 4, Count: 2, XOR: 0x123})
		}},
		{"a replica owner misses its group", func(s map[string][]SlotSum) { s[id(1)] = s[id(1)][:1] }},
		{"the first owner misses a group the others hold", func(s map[string][]SlotSum) { s[id(0)] = s[id(0)][1:] }},
		{"a policy wider than the map", func(s map[string][]SlotSum) {
			for p := range owners {
				s[id(p)] = append(s[id(p)], SlotSum{Slot: slot, Policy: coding.Erasure(5, 3), Pos: p, Count: 1, XOR: 9})
			}
		}},
	} {
		sums := healthy()
		c.spoil(sums)
		if unsettled, _ := SettledSlots(m, sums); !slices.Contains(unsettled, slot) {
			t.Errorf("%s: slot %d is settled", c.name, slot)
		}
	}
}

// listedPeers serve fixed holdings and their sums without I/O, so a
// benchmark measures the pass itself. Writes are not expected.
type listedPeers struct {
	holdings map[string][]Holding
	sums     map[string][]SlotSum
}

func (p *listedPeers) Inventory(_ context.Context, node string) ([]Holding, error) {
	return p.holdings[node], nil
}

func (p *listedPeers) GetShard(context.Context, string, string, int) ([]byte, error) {
	return nil, fmt.Errorf("not in a benchmark")
}

func (p *listedPeers) PutShard(context.Context, string, []byte) error {
	return fmt.Errorf("not in a benchmark")
}

func (p *listedPeers) Drop(context.Context, Action) error {
	return fmt.Errorf("not in a benchmark")
}

// slotListedPeers are listedPeers with slot sums.
type slotListedPeers struct{ *listedPeers }

func (p slotListedPeers) Sums(_ context.Context, node string) ([]SlotSum, error) {
	return p.sums[node], nil
}

func (p slotListedPeers) InventorySlot(_ context.Context, node string, slot uint16) ([]Holding, error) {
	var out []Holding
	for _, h := range p.holdings[node] {
		if placement.Slot(h.Key) == slot {
			out = append(out, h)
		}
	}
	return out, nil
}

// BenchmarkPassSettled: one pass over a settled 7-node cluster (width 6)
// of 200k keys, listing every node whole against comparing slot sums.
func BenchmarkPassSettled(b *testing.B) {
	m, ids := sevenNodeMap(b)
	lp := &listedPeers{holdings: map[string][]Holding{}, sums: map[string][]SlotSum{}}
	type group struct {
		node string
		slot uint16
		pos  int
	}
	acc := map[group]SlotSum{}
	ec := coding.Erasure(4, 2)
	for i := 0; i < 200_000; i++ {
		key := fmt.Sprintf("/blocks/%08d", i)
		slot := placement.Slot(key)
		for pos, o := range m.Owners(slot) {
			h := Holding{Node: m.Nodes[o].ID, Key: key, Pos: pos, Policy: ec, Version: coding.Version{HLC: uint64(i + 1), Writer: 1},
				ValueLen: 256 << 10, ShardLen: 64 << 10}
			lp.holdings[h.Node] = append(lp.holdings[h.Node], h)
			g := group{h.Node, slot, pos}
			s := acc[g]
			s.Slot, s.Policy, s.Pos = slot, ec, pos
			s.Count++
			s.XOR ^= holdingHash(h)
			acc[g] = s
		}
	}
	for g, s := range acc {
		lp.sums[g.node] = append(lp.sums[g.node], s)
	}
	for _, c := range []struct {
		name  string
		peers Peers
	}{{"whole", lp}, {"sums", slotListedPeers{lp}}} {
		b.Run(c.name, func(b *testing.B) {
			d, err := OpenDriver(DriverConfig{Peers: c.peers, StatePath: filepath.Join(b.TempDir(), "repair.db"), NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			for b.Loop() {
				plan, err := d.Pass(context.Background(), m, nil, ids, 0)
				if err != nil || len(plan.Actions) != 0 || d.Stats().Keys != 200_000 {
					b.Fatalf("pass: %v, %d actions, %d keys", err, len(plan.Actions), d.Stats().Keys)
				}
			}
		})
	}
}

// TestSettledSlotsNeedNoAction: on random clusters (missing shards, stale
// and newer versions, misplaced and stray copies, two policies), Make
// plans no action and counts nothing degraded for the keys of the slots
// SettledSlots calls settled: leaving them out of a pass changes no plan.
func TestSettledSlotsNeedNoAction(t *testing.T) {
	m, ids := sevenNodeMap(t)
	rng := rand.New(rand.NewPCG(3, 4))
	settledSeen, unsettledSeen, twoPositions := 0, 0, 0
	for round := 0; round < 300; round++ {
		// Keys of a few slots, so that slots hold several keys.
		var keys []string
		for i := 0; len(keys) < 40; i++ {
			k := fmt.Sprintf("/r%d/%d", round, i)
			if placement.Slot(k)%2048 < 3 {
				keys = append(keys, k)
			}
		}
		var hs []Holding
		for _, k := range keys {
			pol := coding.Erasure(4, 2)
			if rng.IntN(3) == 0 {
				pol = coding.Replicas(3)
			}
			v := coding.Version{HLC: uint64(10 + rng.IntN(5)), Writer: 1}
			owners := m.Owners(placement.Slot(k))
			for pos := 0; pos < pol.Width(); pos++ {
				h := Holding{Node: m.Nodes[owners[pos]].ID, Key: k, Pos: pos, Policy: pol, Version: v, ShardLen: 10}
				switch rng.IntN(60) {
				case 0:
					continue // missing
				case 1:
					h.Version.HLC-- // stale
				case 2:
					h.Version.HLC += 5 // a newer, failed write
				case 3:
					h.Node = ids[rng.IntN(len(ids))] // misplaced
				case 4:
					h.Pos = (pos + 1) % pol.Width() // wrong position
				}
				hs = append(hs, h)
			}
			if rng.IntN(80) == 0 { // a stray copy outside the owners' positions
				hs = append(hs, Holding{Node: ids[rng.IntN(len(ids))], Key: k, Pos: 5, Policy: coding.Erasure(4, 2), Version: v, ShardLen: 10})
			}
		}
		// A node keeps, of each key, the positions of its newest version
		// (as its index), each once.
		newest := map[[2]string]coding.Version{}
		for _, h := range hs {
			k := [2]string{h.Node, h.Key}
			if v, ok := newest[k]; !ok || v.Less(h.Version) {
				newest[k] = h.Version
			}
		}
		var held []Holding
		type shard struct {
			node, key string
			pos       int
		}
		listed := map[shard]bool{}
		positions := map[[2]string]int{}
		for _, h := range hs {
			nk := [2]string{h.Node, h.Key}
			if k := (shard{h.Node, h.Key, h.Pos}); h.Version == newest[nk] && !listed[k] {
				listed[k] = true
				held = append(held, h)
				if positions[nk]++; positions[nk] == 2 {
					twoPositions++
				}
			}
		}
		sums := map[string][]SlotSum{}
		acc := map[string]map[[3]int]SlotSum{}
		for _, id := range ids {
			sums[id], acc[id] = nil, map[[3]int]SlotSum{}
		}
		for _, h := range held {
			g := [3]int{int(placement.Slot(h.Key)), h.Policy.Width()*100 + int(h.Policy.Kind), h.Pos}
			s := acc[h.Node][g]
			s.Slot, s.Policy, s.Pos = placement.Slot(h.Key), h.Policy, h.Pos
			s.Count++
			s.XOR ^= holdingHash(h)
			acc[h.Node][g] = s
		}
		for id, gs := range acc {
			for _, s := range gs {
				sums[id] = append(sums[id], s)
			}
		}
		unsettled, _ := SettledSlots(m, sums)
		view := &View{Map: m, Reachable: map[string]bool{}}
		for _, id := range ids {
			view.Reachable[id] = true
		}
		slots := map[uint16]bool{}
		for _, h := range held {
			s := placement.Slot(h.Key)
			slots[s] = true
			if !slices.Contains(unsettled, s) {
				view.Holdings = append(view.Holdings, h)
			}
		}
		for s := range slots {
			if slices.Contains(unsettled, s) {
				unsettledSeen++
			} else {
				settledSeen++
			}
		}
		plan := Make(view)
		if len(plan.Actions) != 0 || plan.Degraded != 0 || plan.Lost != 0 {
			t.Fatalf("round %d: the settled slots' keys get %d actions (first %+v), %d degraded, %d lost; want none",
				round, len(plan.Actions), plan.Actions, plan.Degraded, plan.Lost)
		}
	}
	if settledSeen == 0 || unsettledSeen == 0 || twoPositions == 0 {
		t.Fatalf("%d settled and %d unsettled slots seen, %d nodes with two positions of a key: the scenarios do not cover all three", settledSeen, unsettledSeen, twoPositions)
	}
	t.Logf("%d settled, %d unsettled slots; %d nodes with two positions of a key", settledSeen, unsettledSeen, twoPositions)
}
