package placement

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestCRC16(t *testing.T) {
	if got := CRC16([]byte("123456789")); got != 0xBB3D {
		t.Fatalf("CRC16(123456789) = %#04x, want 0xBB3D (CRC-16/ARC check value)", got)
	}
	if got := CRC16(nil); got != 0 {
		t.Fatalf("CRC16(nil) = %#04x, want 0", got)
	}
}

func TestSlot(t *testing.T) {
	// Pinned (computed independently): changing these would move every key
	// of every deployed cluster.
	for _, tc := range []struct {
		key  string
		want uint16
	}{
		{"", 0},
		{"123456789", 15165},
		{"/blocks/CIQA4T3TD3BP3C2M3GXCGRCRTCCHV7XSGAZPZJOAOHLPOI6IQR3H6YQ", 6015},
		{"foo", 909},
		{"hello", 13522},
	} {
		if got := Slot(tc.key); got != tc.want {
			t.Errorf("Slot(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 40)
	for range 10000 {
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		s := Slot(string(b))
		if s >= NumSlots {
			t.Fatalf("Slot(%x) = %d, out of range", b, s)
		}
		if want := CRC16(b) % NumSlots; s != want {
			t.Fatalf("Slot(%x) = %d, CRC16 mod NumSlots = %d", b, s, want)
		}
	}
}

// nodes returns n nodes named prefix000.. with zone and weight from f (nil:
// no zone, weight 0).
func nodes(prefix string, n int, f func(i int) (zone string, weight int)) []Node {
	ns := make([]Node, n)
	for i := range ns {
		ns[i] = Node{ID: fmt.Sprintf("%s%03d", prefix, i), Addrs: []string{fmt.Sprintf("/ip4/10.0.0.%d/tcp/4001", i%250)}}
		if f != nil {
			ns[i].Zone, ns[i].Weight = f(i)
		}
	}
	return ns
}

func mustAssign(t testing.TB, prev *Map, ns []Node, width int) *Map {
	t.Helper()
	m, err := Assign(prev, ns, width)
	if err != nil {
		t.Fatalf("Assign(%d nodes, width %d): %v", len(ns), width, err)
	}
	return m
}

// checkMap checks the hard guarantees: valid (so distinct), and every node
// within maxDev positions of its target. It returns the largest deviation.
func checkMap(t testing.TB, m *Map, ns []Node, maxDev int) int {
	t.Helper()
	if err := m.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if !reflect.DeepEqual(m.Nodes, ns) {
		t.Fatalf("map nodes differ from the nodes given")
	}
	want := targets(ns, m.Width)
	worst := 0
	for i, c := range m.Counts() {
		d := max(c-want[i], want[i]-c)
		worst = max(worst, d)
		if d > maxDev {
			t.Errorf("node %d (%s): %d positions, target %d", i, ns[i].ID, c, want[i])
		}
	}
	return worst
}

// checkIdeal checks every node is within 1% of its weight-proportional
// share (for inputs where no share is capped at NumSlots).
func checkIdeal(t *testing.T, m *Map) {
	t.Helper()
	wsum := 0
	for i := range m.Nodes {
		wsum += m.Nodes[i].weight()
	}
	for i, c := range m.Counts() {
		ideal := float64(NumSlots*m.Width) * float64(m.Nodes[i].weight()) / float64(wsum)
		if dev := float64(c)/ideal - 1; dev > 0.01 || dev < -0.01 {
			t.Errorf("node %d: %d positions, ideal %.1f (%.2f%% off)", i, c, ideal, 100*dev)
		}
	}
}

func TestTargets(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for range 200 {
		n := 1 + r.IntN(60)
		w := 1 + r.IntN(min(n, 8))
		ns := nodes("t", n, func(int) (string, int) { return "", r.IntN(5) })
		got := targets(ns, w)
		sum := 0
		for _, x := range got {
			sum += x
			if x > NumSlots {
				t.Fatalf("target %d > NumSlots for %d nodes width %d", x, n, w)
			}
		}
		if sum != NumSlots*w {
			t.Fatalf("targets sum to %d, want %d", sum, NumSlots*w)
		}
		// Reference: water-filling on floats, then each target within 1.
		exact := make([]float64, n)
		capped := make([]bool, n)
		for {
			total, wsum := float64(NumSlots*w), 0.0
			for i := range ns {
				if capped[i] {
					total -= NumSlots
				} else {
					wsum += float64(ns[i].weight())
				}
			}
			again := false
			for i := range ns {
				if !capped[i] {
					exact[i] = total * float64(ns[i].weight()) / wsum
					if exact[i] > NumSlots+1e-9 {
						capped[i], exact[i], again = true, NumSlots, true
					}
				}
			}
			if !again {
				break
			}
		}
		for i := range ns {
			if d := float64(got[i]) - exact[i]; d >= 1 || d <= -1 {
				t.Fatalf("node %d of %d (width %d): target %d, exact share %.3f", i, n, w, got[i], exact[i])
			}
		}
	}
	// Capped: one heavy node among 6 at width 6 must still hold every slot once.
	ns := nodes("c", 6, func(i int) (string, int) { return "", 1 + 2*b2i(i == 0) })
	if got := targets(ns, 6); !slices.Equal(got, []int{NumSlots, NumSlots, NumSlots, NumSlots, NumSlots, NumSlots}) {
		t.Fatalf("6 nodes width 6, one heavy: targets %v, want NumSlots each", got)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestAssignBalanced(t *testing.T) {
	for _, n := range []int{6, 7, 50, 500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ns := nodes("n", n, nil)
			m := mustAssign(t, nil, ns, 6)
			if m.Epoch != 1 {
				t.Errorf("epoch %d, want 1", m.Epoch)
			}
			worst := checkMap(t, m, ns, 0)
			checkIdeal(t, m)
			t.Logf("%d nodes: largest deviation from target %d; position spread %s", n, worst, positionSpread(m))
		})
	}
}

// positionSpread describes how evenly each node's positions spread over the
// position indexes (max/min over nodes of the count at one index, relative
// to count/width).
func positionSpread(m *Map) string {
	per := make([]int, len(m.Nodes)*m.Width)
	for i, j := range m.Table {
		per[int(j)*m.Width+i%m.Width]++
	}
	lo, hi := 1e9, 0.0
	for j, c := range m.Counts() {
		for p := range m.Width {
			r := float64(per[j*m.Width+p]) / (float64(c) / float64(m.Width))
			lo, hi = min(lo, r), max(hi, r)
		}
	}
	return fmt.Sprintf("per-position share %.3f..%.3f of even", lo, hi)
}

func TestAssignWeights(t *testing.T) {
	ns := nodes("w", 30, func(i int) (string, int) { return "", 1 + i%2 })
	m := mustAssign(t, nil, ns, 6)
	checkMap(t, m, ns, 0)
	checkIdeal(t, m)
	c := m.Counts()
	if r := float64(c[1]) / float64(c[0]); r < 1.98 || r > 2.02 {
		t.Errorf("weight 2 node has %d positions, weight 1 node %d: ratio %.3f, want 2", c[1], c[0], r)
	}
}

// zoneViolations counts slots whose zones are not spread evenly: some zone
// appears at least twice more than another (an absent zone counting 0).
func zoneViolations(m *Map) int {
	all := map[string]bool{}
	for _, n := range m.Nodes {
		all[n.Zone] = true
	}
	bad := 0
	for s := range NumSlots {
		cnt := map[string]int{}
		for _, j := range m.Owners(uint16(s)) {
			cnt[m.Nodes[j].Zone]++
		}
		lo, hi := NumSlots, 0
		for z := range all {
			lo, hi = min(lo, cnt[z]), max(hi, cnt[z])
		}
		if hi-lo >= 2 {
			bad++
		}
	}
	return bad
}

func TestAssignZones(t *testing.T) {
	for _, tc := range []struct {
		name         string
		n, zones, w  int
		distinctZone bool
	}{
		{"3x4 width 3", 12, 3, 3, true},
		{"12x1 width 6", 12, 12, 6, true},
		{"3x4 width 6", 12, 3, 6, false},
		{"4x5 width 6", 20, 4, 6, false},
		{"5x10 width 6", 50, 5, 6, false},
		{"8x60 width 6", 480, 8, 6, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := nodes("z", tc.n, func(i int) (string, int) { return fmt.Sprintf("zone%d", i%tc.zones), 0 })
			m := mustAssign(t, nil, ns, tc.w)
			checkMap(t, m, ns, 0)
			if v := zoneViolations(m); v != 0 {
				t.Errorf("%d slots with zones spread unevenly, want 0", v)
			}
			if tc.distinctZone {
				for s := range NumSlots {
					seen := map[string]bool{}
					for _, j := range m.Owners(uint16(s)) {
						if z := m.Nodes[j].Zone; seen[z] {
							t.Fatalf("slot %d: zone %s twice with %d zones for width %d", s, z, tc.zones, tc.w)
						}
						seen[m.Nodes[j].Zone] = true
					}
				}
			}
		})
	}
}

// minMoves is the fewest positions that must change from prev to reach the
// targets of ns: the positions each node must gain.
func minMoves(prev *Map, ns []Node, width int) int {
	carried := make(map[string]int)
	pw := min(prev.Width, width)
	for i, j := range prev.Table {
		if i%prev.Width < pw {
			carried[prev.Nodes[j].ID]++
		}
	}
	need := 0
	for i, tg := range targets(ns, width) {
		need += max(0, tg-carried[ns[i].ID])
	}
	return need
}

func moves(t testing.TB, a, b *Map) int {
	t.Helper()
	d, err := Diff(a, b)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	return len(d)
}

func TestJoinLeaveMoves(t *testing.T) {
	const w = 6
	total := float64(NumSlots * w)
	for _, zones := range []int{0, 5} {
		t.Run(fmt.Sprintf("zones=%d", zones), func(t *testing.T) {
			zf := func(i int) (string, int) {
				if zones == 0 {
					return "", 0
				}
				return fmt.Sprintf("zone%d", i%zones), 0
			}
			ns := nodes("n", 50, zf)
			m50 := mustAssign(t, nil, ns, w)

			joined := append(slices.Clone(ns), Node{ID: "new", Zone: ns[0].Zone})
			m51 := mustAssign(t, m50, joined, w)
			checkMap(t, m51, joined, 0)
			if m51.Epoch != 2 {
				t.Errorf("epoch %d, want 2", m51.Epoch)
			}
			mv := moves(t, m50, m51)
			frac := float64(mv) / total
			t.Logf("join 50->51: %d moves = %.4f of positions (1/51 = %.4f, minimum %d), zone violations %d",
				mv, frac, 1.0/51, minMoves(m50, joined, w), zoneViolations(m51))
			if frac > 1.1/51 {
				t.Errorf("join moved %d positions (%.4f), want <= 1.1/51", mv, frac)
			}
			for _, d := range mustDiff(t, m50, m51) {
				if d.To != "new" {
					t.Fatalf("join moved slot %d position %d from %s to %s, not to the new node", d.Slot, d.Pos, d.From, d.To)
				}
			}

			left := slices.Delete(slices.Clone(ns), 17, 18)
			m49 := mustAssign(t, m50, left, w)
			checkMap(t, m49, left, 0)
			mv = moves(t, m50, m49)
			frac = float64(mv) / total
			own := m50.Counts()[17]
			t.Logf("leave 50->49: %d moves = %.4f of positions (1/50 = %.4f, the node held %d), zone violations %d",
				mv, frac, 1.0/50, own, zoneViolations(m49))
			if zones == 0 {
				if frac > 1.1/50 {
					t.Errorf("leave moved %d positions (%.4f), want <= 1.1/50", mv, frac)
				}
				for _, d := range mustDiff(t, m50, m49) {
					if d.From != ns[17].ID {
						t.Fatalf("leave moved slot %d position %d from %s, not from the leaving node", d.Slot, d.Pos, d.From)
					}
				}
			} else {
				// Keeping every slot's zones even costs extra moves
				// here: the leaving node's zone is now short of nodes.
				if v := zoneViolations(m49); v != 0 {
					t.Errorf("after leave: %d slots with uneven zones", v)
				}
				if mv > 2*own {
					t.Errorf("leave moved %d positions, more than twice the %d the node held", mv, own)
				}
			}
		})
	}
}

func mustDiff(t testing.TB, a, b *Map) []Move {
	t.Helper()
	d, err := Diff(a, b)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	return d
}

func TestPropertyJoinsLeaves(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 42))
			nzones := 1 + r.IntN(6)
			next := 0
			newNode := func() Node {
				next++
				return Node{ID: fmt.Sprintf("p%04d", next), Zone: fmt.Sprintf("z%d", r.IntN(nzones)), Weight: 1 + r.IntN(3)}
			}
			var ns []Node
			for range 6 + r.IntN(35) {
				ns = append(ns, newNode())
			}
			width := 6
			var prev *Map
			totalMoves, totalMin := 0, 0
			for step := range 30 {
				switch op := r.IntN(10); {
				case op < 4 && len(ns) < 40:
					for k := 1 + r.IntN(3); k > 0 && len(ns) < 40; k-- {
						ns = slices.Insert(ns, r.IntN(len(ns)+1), newNode())
					}
				case op < 8 && len(ns) > 6:
					for k := 1 + r.IntN(3); k > 0 && len(ns) > 6; k-- {
						i := r.IntN(len(ns))
						ns = slices.Delete(ns, i, i+1)
					}
				case op < 9:
					i := r.IntN(len(ns))
					ns[i].Weight = 1 + r.IntN(3)
				default:
					width = 4 + r.IntN(3)
				}
				m := mustAssign(t, prev, ns, width)
				worst := checkMap(t, m, ns, 2)
				if prev != nil {
					if m.Epoch != prev.Epoch+1 {
						t.Fatalf("step %d: epoch %d after %d", step, m.Epoch, prev.Epoch)
					}
					if prev.Width == width {
						mv, lo := moves(t, prev, m), minMoves(prev, ns, width)
						totalMoves += mv
						totalMin += lo
						if mv < lo {
							t.Fatalf("step %d: %d moves, below the minimum %d: the check is wrong", step, mv, lo)
						}
						// Without zones, moves beyond the minimum come
						// only from swaps forced by distinctness.
						if nzones == 1 && mv > lo+lo*15/100+16 {
							t.Errorf("step %d (%d nodes): %d moves, minimum %d", step, len(ns), mv, lo)
						}
					}
				}
				if worst > 0 {
					t.Logf("step %d: %d nodes width %d: a node is %d off its target", step, len(ns), width, worst)
				}
				again := mustAssign(t, prev, ns, width)
				if !slices.Equal(again.Table, m.Table) {
					t.Fatalf("step %d: Assign not deterministic", step)
				}
				prev = m
			}
			t.Logf("zones %d: %d moves in all, minimum %d (%.3fx)", nzones, totalMoves, totalMin, float64(totalMoves)/float64(max(totalMin, 1)))
			if nzones == 1 && totalMoves > totalMin*103/100 {
				t.Errorf("%d moves in all, more than 1.03 x the minimum %d", totalMoves, totalMin)
			}
		})
	}
}

func TestAssignErrors(t *testing.T) {
	if _, err := Assign(nil, nodes("e", 3, nil), 4); !errors.Is(err, ErrTooFewNodes) {
		t.Errorf("3 nodes width 4: err %v, want ErrTooFewNodes", err)
	}
	if _, err := Assign(nil, nodes("e", 3, nil), 0); err == nil {
		t.Error("width 0: no error")
	}
	dup := nodes("e", 4, nil)
	dup[3].ID = dup[1].ID
	if _, err := Assign(nil, dup, 3); err == nil || !strings.Contains(err.Error(), "same ID") {
		t.Errorf("duplicate IDs: err %v", err)
	}
	empty := nodes("e", 4, nil)
	empty[2].ID = ""
	if _, err := Assign(nil, empty, 3); err == nil || !strings.Contains(err.Error(), "empty ID") {
		t.Errorf("empty ID: err %v", err)
	}
	neg := nodes("e", 4, func(int) (string, int) { return "", -1 })
	if _, err := Assign(nil, neg, 3); err == nil || !strings.Contains(err.Error(), "weight") {
		t.Errorf("negative weight: err %v", err)
	}
	bad := &Map{Width: 2, Nodes: nodes("e", 3, nil), Table: make([]uint16, 5)}
	if _, err := Assign(bad, nodes("e", 3, nil), 2); err == nil || !strings.Contains(err.Error(), "previous map") {
		t.Errorf("invalid prev: err %v", err)
	}
}

func TestAssignWidthChange(t *testing.T) {
	ns := nodes("c", 20, func(i int) (string, int) { return fmt.Sprintf("z%d", i%4), 0 })
	m4 := mustAssign(t, nil, ns, 4)
	m6 := mustAssign(t, m4, ns, 6)
	checkMap(t, m6, ns, 0)
	kept := 0
	for s := range NumSlots {
		if slices.Equal(m4.Owners(uint16(s)), m6.Owners(uint16(s))[:4]) {
			kept++
		}
	}
	t.Logf("width 4 -> 6: %d of %d slots keep their first 4 nodes", kept, NumSlots)
	if kept < NumSlots*8/10 {
		t.Errorf("width 4 -> 6 kept the first 4 nodes of only %d slots", kept)
	}
	m3 := mustAssign(t, m6, ns, 3)
	checkMap(t, m3, ns, 0)
}

func TestAssignDeterministic(t *testing.T) {
	ns := nodes("d", 37, func(i int) (string, int) { return fmt.Sprintf("z%d", i%4), 1 + i%3 })
	a := mustAssign(t, nil, ns, 6)
	b := mustAssign(t, nil, ns, 6)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two Assign calls on the same input differ")
	}
	ns2 := append(slices.Clone(ns), Node{ID: "x", Zone: "z1"})
	if !reflect.DeepEqual(mustAssign(t, a, ns2, 6), mustAssign(t, b, ns2, 6)) {
		t.Fatal("two Assign calls from the same previous map differ")
	}
}

func TestAssignDoesNotAlias(t *testing.T) {
	ns := nodes("a", 8, nil)
	m := mustAssign(t, nil, ns, 3)
	ns[0].ID = "changed"
	ns[1].Addrs[0] = "changed"
	if m.Nodes[0].ID == "changed" || m.Nodes[1].Addrs[0] == "changed" {
		t.Fatal("the map shares memory with the nodes slice given to Assign")
	}
	c := m.Clone()
	c.Table[0] = c.Table[1]
	c.Nodes[2].Addrs[0] = "x"
	if m.Table[0] == c.Table[0] || m.Nodes[2].Addrs[0] == "x" {
		t.Fatal("Clone shares memory with the original")
	}
	o := m.Owners(5)
	if len(o) != 3 || cap(o) != 3 {
		t.Fatalf("Owners: len %d cap %d, want 3 and 3", len(o), cap(o))
	}
	if m.Owners(NumSlots) != nil {
		t.Fatal("Owners(NumSlots) not nil")
	}
	if i, ok := m.NodeIndex("a005"); !ok || i != 5 {
		t.Fatalf("NodeIndex(a005) = %d, %v", i, ok)
	}
	if _, ok := m.NodeIndex("nope"); ok {
		t.Fatal("NodeIndex found a node that is not there")
	}
}

func TestJSON(t *testing.T) {
	ns := nodes("j", 9, func(i int) (string, int) { return fmt.Sprintf("z%d", i%3), i % 3 })
	m := mustAssign(t, nil, ns, 4)
	m.Epoch = 77
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var got Map
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if !reflect.DeepEqual(&got, m) {
		t.Fatal("JSON round trip changed the map")
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"epoch", "width", "nodes", "table"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("JSON has no %q field: %.200s", k, b)
		}
	}
	tab, _ := base64.StdEncoding.DecodeString(raw["table"].(string))
	if len(tab) != 2*NumSlots*4 || uint16(tab[0])<<8|uint16(tab[1]) != m.Table[0] {
		t.Errorf("table is not big-endian uint16s")
	}

	// mutate re-encodes m with its table changed by f.
	mutate := func(f func([]uint16) []uint16) []byte {
		c := m.Clone()
		c.Table = f(c.Table)
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name, input, want string
	}{
		{"duplicate node in slot", string(mutate(func(t []uint16) []uint16 { t[4*10+1] = t[4*10+3]; return t })), "slot 10"},
		{"short table", string(mutate(func(t []uint16) []uint16 { return t[:len(t)-4] })), "table has"},
		{"index out of range", string(mutate(func(t []uint16) []uint16 { t[7] = 9; return t })), "out of range"},
		{"bad base64", strings.Replace(string(b), `"table":"`, `"table":"!!`, 1), "base64"},
		{"odd bytes", `{"epoch":1,"width":1,"nodes":[{"id":"a","addrs":null}],"table":"AAAA"}`, "whole number"},
		{"width 0", `{"epoch":1,"width":0,"nodes":[],"table":""}`, "width 0"},
		{"too few nodes", `{"epoch":1,"width":2,"nodes":[{"id":"a","addrs":null}],"table":""}`, "fewer nodes"},
		{"wrong type", `{"epoch":"one"}`, "decoding"},
	} {
		var x Map
		err := json.Unmarshal([]byte(tc.input), &x)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestDiff(t *testing.T) {
	ns := nodes("f", 10, nil)
	a := mustAssign(t, nil, ns, 3)
	if d := mustDiff(t, a, a); len(d) != 0 {
		t.Fatalf("Diff of a map with itself: %d moves", len(d))
	}
	// Same nodes in another order: no moves, though indexes differ.
	rev := a.Clone()
	slices.Reverse(rev.Nodes)
	for i := range rev.Table {
		rev.Table[i] = uint16(len(rev.Nodes) - 1 - int(rev.Table[i]))
	}
	if d := mustDiff(t, a, rev); len(d) != 0 {
		t.Fatalf("Diff after reordering nodes: %d moves, want 0", len(d))
	}
	b := a.Clone()
	b.Table[3*5+2], b.Table[3*5+1] = b.Table[3*5+1], b.Table[3*5+2]
	d := mustDiff(t, a, b)
	want := []Move{
		{Slot: 5, Pos: 1, From: ns[a.Table[16]].ID, To: ns[a.Table[17]].ID},
		{Slot: 5, Pos: 2, From: ns[a.Table[17]].ID, To: ns[a.Table[16]].ID},
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("Diff = %+v, want %+v", d, want)
	}
	if _, err := Diff(a, mustAssign(t, nil, ns, 4)); err == nil {
		t.Fatal("Diff of widths 3 and 4: no error")
	}
	if _, err := Diff(nil, a); err == nil {
		t.Fatal("Diff with nil: no error")
	}
}

func FuzzUnmarshalJSON(f *testing.F) {
	m, err := Assign(nil, nodes("u", 3, nil), 2)
	if err != nil {
		f.Fatal(err)
	}
	b, _ := json.Marshal(m)
	f.Add(b)
	f.Add([]byte(`{"epoch":1,"width":1,"nodes":[{"id":"a","addrs":[]}],"table":""}`))
	f.Add([]byte(`{"width":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Map
		if err := json.Unmarshal(b, &m); err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("UnmarshalJSON accepted an invalid map: %v", err)
		}
		b2, err := json.Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		var m2 Map
		if err := json.Unmarshal(b2, &m2); err != nil || !reflect.DeepEqual(m.Table, m2.Table) {
			t.Fatalf("re-encoding does not round trip: %v", err)
		}
	})
}

func BenchmarkSlot(b *testing.B) {
	key := "/blocks/CIQA4T3TD3BP3C2M3GXCGRCRTCCHV7XSGAZPZJOAOHLPOI6IQR3H6YQ"
	b.SetBytes(int64(len(key)))
	var s uint16
	for b.Loop() {
		s += Slot(key)
	}
	_ = s
}

func BenchmarkOwners(b *testing.B) {
	m := mustAssign(b, nil, nodes("b", 50, nil), 6)
	var x uint16
	i := 0
	for b.Loop() {
		x += m.Owners(uint16(i % NumSlots))[5]
		i++
	}
	_ = x
}

func BenchmarkAssign_500x6(b *testing.B) {
	ns := nodes("b", 500, func(i int) (string, int) { return fmt.Sprintf("z%d", i%8), 0 })
	for b.Loop() {
		mustAssign(b, nil, ns, 6)
	}
}

func BenchmarkAssign_500x6_Join(b *testing.B) {
	ns := nodes("b", 500, func(i int) (string, int) { return fmt.Sprintf("z%d", i%8), 0 })
	m := mustAssign(b, nil, ns, 6)
	ns2 := append(slices.Clone(ns), Node{ID: "new", Zone: "z3"})
	for b.Loop() {
		mustAssign(b, m, ns2, 6)
	}
}
