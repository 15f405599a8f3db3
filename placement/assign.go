package placement

import (
	"fmt"
	"slices"
)

// Assign returns a new map that places width positions of every slot on
// nodes. The order of nodes defines the node indexes of the result. The
// result has Epoch prev.Epoch+1, or 1 when prev is nil. prev must be valid;
// its nodes are matched to nodes by ID, and it may have another width (the
// common positions are kept, extra positions are filled).
//
// Guarantees, in order of priority:
//
//   - Distinct: the width nodes of a slot are always distinct.
//     ErrTooFewNodes if len(nodes) < width.
//   - Balance: node i gets target(i) positions, its weight-proportional share
//     of NumSlots*width rounded by largest remainder (ties to the lower
//     index). A node holds at most one position per slot, so a share above
//     NumSlots is capped there and the rest shared among the others. Only if
//     no distinct filling can be found by a direct fill or a swap with another
//     slot does a node end one position above its target (not seen in tests).
//   - Few moves: a position keeps its node from prev unless that node is
//     gone, is over its target, or (see Zones) a swap is needed to restore a
//     slot's zone spread. Excess positions go straight to under-target nodes,
//     at most one changed position per slot where possible. So a node joining
//     N equal nodes moves exactly its share, 1/(N+1) of all positions, and a
//     node leaving moves only its own positions.
//   - Zones: each slot's nodes are spread over zones as evenly as possible:
//     distinct zones when there are at least width of them, otherwise no zone
//     with two more positions in the slot than another. This is a goal, not
//     a guarantee: it yields to distinctness and balance (a zone whose nodes
//     hold more than NumSlots positions in all must repeat somewhere), and the
//     search for swaps that fix it is bounded.
//   - Deterministic: the result depends only on prev, nodes and width.
//
// Assign does not modify prev or nodes; the result holds its own copy of nodes.
func Assign(prev *Map, nodes []Node, width int) (*Map, error) {
	if width < 1 {
		return nil, fmt.Errorf("placement: width %d, want >= 1", width)
	}
	if len(nodes) < width {
		return nil, fmt.Errorf("placement: %d nodes for width %d: %w", len(nodes), width, ErrTooFewNodes)
	}
	if len(nodes) > MaxNodes {
		return nil, fmt.Errorf("placement: %d nodes, at most %d allowed", len(nodes), MaxNodes)
	}
	if err := checkNodes(nodes); err != nil {
		return nil, err
	}
	epoch := uint64(1)
	if prev != nil {
		if err := prev.Validate(); err != nil {
			return nil, fmt.Errorf("placement: previous map: %w", err)
		}
		epoch = prev.Epoch + 1
	}

	a := newAssigner(nodes, width)
	a.carry(prev, nodes)
	a.fillHoles()
	a.transfer()
	a.freeExcess()
	a.fillHoles()
	a.spreadZones()

	m := &Map{Epoch: epoch, Width: width, Nodes: make([]Node, len(nodes)), Table: make([]uint16, len(a.tab))}
	for i, n := range nodes {
		m.Nodes[i] = n
		if n.Addrs != nil {
			m.Nodes[i].Addrs = append([]string(nil), n.Addrs...)
		}
	}
	for i, j := range a.tab {
		if j < 0 {
			// Unreachable: fillHoles always fills (its last resort
			// gives up balance, never a position).
			return nil, fmt.Errorf("placement: internal error: slot %d position %d left empty", i/width, i%width)
		}
		m.Table[i] = uint16(j)
	}
	return m, nil
}

// targets returns each node's number of positions: its weight-proportional
// share of NumSlots*width, capped at NumSlots (one per slot), rounded by
// largest remainder.
func targets(nodes []Node, width int) []int {
	t := make([]int, len(nodes))
	capped := make([]bool, len(nodes))
	total := uint64(NumSlots * width)
	var wsum uint64
	for {
		// Water-filling: a node whose exact share exceeds NumSlots gets
		// NumSlots and leaves the pool; the others' shares then grow.
		// Weights <= 2^24, nodes <= 2^16, total <= 2^30: products fit.
		wsum = 0
		for i := range nodes {
			if !capped[i] {
				wsum += uint64(nodes[i].weight())
			}
		}
		changed := false
		for i := range nodes {
			if !capped[i] && total*uint64(nodes[i].weight()) > NumSlots*wsum {
				capped[i], t[i] = true, NumSlots
				total -= NumSlots
				changed = true
			}
		}
		if !changed {
			break
		}
	}
	type rem struct {
		r uint64
		i int
	}
	var rems []rem
	left := total
	for i := range nodes {
		if capped[i] {
			continue
		}
		x := total * uint64(nodes[i].weight())
		t[i] = int(x / wsum)
		left -= x / wsum
		rems = append(rems, rem{x % wsum, i})
	}
	slices.SortFunc(rems, func(a, b rem) int {
		if a.r != b.r {
			if a.r > b.r {
				return -1
			}
			return 1
		}
		return a.i - b.i
	})
	for k := 0; uint64(k) < left; k++ {
		t[rems[k].i]++
	}
	return t
}

// assigner is the working state of one Assign call.
type assigner struct {
	w      int
	zone   []int32 // zone id of each node
	nzones int
	seed   []uint64 // per node, from its ID: spreads its choices over slots
	target []int
	count  []int
	posCnt []int32 // node*w+p: positions p held by node
	tab    []int32 // slot*w+p: node index, -1 for a hole
	orig   []int32 // tab as carried over from prev
	// touched marks slots where some position has changed in this call.
	touched []bool
	// active holds the nodes below target; activeAt[j] is j's index in it
	// or -1.
	active   []int32
	activeAt []int32

	// The loaded slot: inSlot[j] == stamp for its nodes, and zone z
	// appears zCnt[z] times in it; zUsed lists the zones to reset.
	stamp  uint32
	inSlot []uint32
	zCnt   []int32
	zUsed  []int32
}

func newAssigner(nodes []Node, w int) *assigner {
	n := len(nodes)
	a := &assigner{
		w:        w,
		zone:     make([]int32, n),
		seed:     make([]uint64, n),
		target:   targets(nodes, w),
		count:    make([]int, n),
		posCnt:   make([]int32, n*w),
		tab:      make([]int32, NumSlots*w),
		touched:  make([]bool, NumSlots),
		activeAt: make([]int32, n),
		inSlot:   make([]uint32, n),
	}
	zones := make(map[string]int32)
	for i := range nodes {
		z, ok := zones[nodes[i].Zone]
		if !ok {
			z = int32(len(zones))
			zones[nodes[i].Zone] = z
		}
		a.zone[i] = z
		a.seed[i] = fnv64(nodes[i].ID)
	}
	a.nzones = len(zones)
	a.zCnt = make([]int32, a.nzones)
	return a
}

// carry copies the positions of prev whose nodes are still members
// (matched by ID) and leaves the rest as holes.
func (a *assigner) carry(prev *Map, nodes []Node) {
	for i := range a.tab {
		a.tab[i] = -1
	}
	if prev != nil {
		byID := make(map[string]int32, len(nodes))
		for j := range nodes {
			byID[nodes[j].ID] = int32(j)
		}
		remap := make([]int32, len(prev.Nodes))
		for i := range prev.Nodes {
			j, ok := byID[prev.Nodes[i].ID]
			if !ok {
				j = -1
			}
			remap[i] = j
		}
		pw := min(prev.Width, a.w)
		for s := 0; s < NumSlots; s++ {
			for p := 0; p < pw; p++ {
				a.tab[s*a.w+p] = remap[prev.Table[s*prev.Width+p]]
			}
		}
	}
	a.orig = slices.Clone(a.tab)
	for i, j := range a.tab {
		if j >= 0 {
			a.count[j]++
			a.posCnt[int(j)*a.w+i%a.w]++
		}
	}
	for j := range a.activeAt {
		a.activeAt[j] = -1
		a.updateActive(int32(j))
	}
}

// updateActive keeps j in the active list exactly while it is below target.
func (a *assigner) updateActive(j int32) {
	below := a.count[j] < a.target[j]
	at := a.activeAt[j]
	switch {
	case below && at < 0:
		a.activeAt[j] = int32(len(a.active))
		a.active = append(a.active, j)
	case !below && at >= 0:
		last := a.active[len(a.active)-1]
		a.active[at] = last
		a.activeAt[last] = at
		a.active = a.active[:len(a.active)-1]
		a.activeAt[j] = -1
	}
}

// set puts node j (or a hole, -1) at table index idx, keeping the counts.
func (a *assigner) set(idx int, j int32) {
	p := idx % a.w
	if old := a.tab[idx]; old >= 0 {
		a.count[old]--
		a.posCnt[int(old)*a.w+p]--
		a.updateActive(old)
	}
	a.tab[idx] = j
	if j >= 0 {
		a.count[j]++
		a.posCnt[int(j)*a.w+p]++
		a.updateActive(j)
	}
	if j != a.orig[idx] {
		a.touched[idx/a.w] = true
	}
}

// load makes slot s the loaded slot (see inSlot, zc).
func (a *assigner) load(s int) {
	a.stamp++
	for _, z := range a.zUsed {
		a.zCnt[z] = 0
	}
	a.zUsed = a.zUsed[:0]
	for _, j := range a.tab[s*a.w : (s+1)*a.w] {
		if j >= 0 {
			a.addLoaded(j)
		}
	}
}

// addLoaded records node j as a member of the loaded slot.
func (a *assigner) addLoaded(j int32) {
	a.inSlot[j] = a.stamp
	z := a.zone[j]
	if a.zCnt[z] == 0 {
		a.zUsed = append(a.zUsed, z)
	}
	a.zCnt[z]++
}

// zc returns how many nodes of zone z the loaded slot holds.
func (a *assigner) zc(z int32) int32 { return a.zCnt[z] }

func (a *assigner) deficit(j int32) int { return a.target[j] - a.count[j] }

// better reports whether candidate j with zone cost c beats the current best
// (bj, bc) for slot s position p: lower zone cost, then larger deficit, then
// fewer positions p already held (so each position index is spread too),
// then a hash of the node's ID and the slot. The hash, rather than the
// index, breaks the remaining ties so that slots get unrelated sets of
// nodes: were node i usually next to node i+1, the holes a leaving node
// leaves could not go to its usual neighbours.
func (a *assigner) better(j, c, bj, bc int32, s, p int) bool {
	if bj < 0 || c != bc {
		return bj < 0 || c < bc
	}
	if dj, db := a.deficit(j), a.deficit(bj); dj != db {
		return dj > db
	}
	if pj, pb := a.posCnt[int(j)*a.w+p], a.posCnt[int(bj)*a.w+p]; pj != pb {
		return pj < pb
	}
	hj, hb := a.tie(j, s), a.tie(bj, s)
	if hj != hb {
		return hj < hb
	}
	return j < bj
}

// tie is the tie-breaking hash of node j in slot s.
func (a *assigner) tie(j int32, s int) uint64 {
	return mix(a.seed[j] ^ uint64(s)*0x9e3779b97f4a7c15)
}

// fillHoles fills every hole, in slot and position order, with the best
// active node not yet in the slot, or by a swap when none fits.
//
// Best is: first a node that is urgent (it can still go only into as many
// slots with holes as it lacks positions, so skipping this slot would
// strand it), then by better. Without the urgency rule, the nodes that
// share many slots with a leaving node end up with a deficit and no slot
// left to take it in, and every such position costs a swap.
func (a *assigner) fillHoles() {
	// avail[j] counts the slots with holes, from s on, that j is not in.
	avail := make([]int, len(a.count))
	var holeSlots []int
	for s := 0; s < NumSlots; s++ {
		if slices.Contains(a.tab[s*a.w:(s+1)*a.w], -1) {
			holeSlots = append(holeSlots, s)
		}
	}
	if len(holeSlots) == 0 {
		return
	}
	for _, s := range holeSlots {
		a.load(s)
		for j := range avail {
			if a.inSlot[j] != a.stamp {
				avail[j]++
			}
		}
	}
	// mark[j] == s+1 while j was in slot s before s was filled.
	mark := make([]int32, len(a.count))
	for _, s := range holeSlots {
		row := a.tab[s*a.w : (s+1)*a.w]
		for _, j := range row {
			if j >= 0 {
				mark[j] = int32(s) + 1
			}
		}
		a.load(s)
		for p := range row {
			if row[p] >= 0 {
				continue
			}
			// The hot loop of Assign. A key packs, larger is better:
			// urgency (bit 63), zone cost (7 bits), deficit (15 bits),
			// positions p held (15 bits, fewer is better) and the
			// node's tie hash for this slot (26 bits), the order of
			// better with a cheaper hash.
			best, bestKey := int32(-1), uint64(0)
			stamp, inSlot, zone, zCnt, seed := a.stamp, a.inSlot, a.zone, a.zCnt, a.seed
			target, count, posCnt, w := a.target, a.count, a.posCnt, a.w
			hs := mix(uint64(s))
			for _, j := range a.active {
				if inSlot[j] == stamp {
					continue
				}
				def := target[j] - count[j]
				key := uint64(min(zCnt[zone[j]], 127)^127)<<56 |
					uint64(def)<<41 |
					uint64(0x7fff-posCnt[int(j)*w+p])<<26 |
					(seed[j]^hs)>>38
				if avail[j] <= def {
					key |= 1 << 63
				}
				if key > bestKey || best < 0 {
					best, bestKey = j, key
				}
			}
			if best >= 0 {
				a.set(s*a.w+p, best)
				a.addLoaded(best)
				continue
			}
			a.swapFill(s, p)
			a.load(s)
		}
		// Slot s is full: it leaves the count of every node that was not
		// in it before.
		for j := range avail {
			if mark[j] != int32(s)+1 {
				avail[j]--
			}
		}
	}
}

// swapFill fills hole (s, p) when every active node is already in slot s
// (slot s is loaded): some node j of another slot s2, not in s, moves to
// (s, p), and an active node d takes j's place in s2. Balance holds. It
// prefers a j whose position already changed in this call (so the swap
// costs no extra move), then the smallest loss of zone spread. Failing any
// swap, it gives (s, p) to a node not in s, which then ends above its target.
func (a *assigner) swapFill(s, p int) {
	ds := slices.Clone(a.active)
	slices.SortFunc(ds, func(x, y int32) int {
		if dx, dy := a.deficit(x), a.deficit(y); dx != dy {
			return dy - dx
		}
		return int(x - y)
	})
	if len(ds) > 2 {
		ds = ds[:2]
	}
	start := int(mix(uint64(s)*uint64(a.w)+uint64(p)) % NumSlots)
	// The least-represented zone count of slot s: gaining a node of that
	// zone costs nothing.
	zmin := int32(0)
	if distinctZones(a, a.tab[s*a.w:(s+1)*a.w]) >= a.nzones {
		zmin = 1 << 30
		for z := range a.nzones {
			zmin = min(zmin, a.zc(int32(z)))
		}
	}
	// cost: an extra move counts more than any zone cost.
	const extraMove = 1 << 20
	bestCost, bestIdx, bestD := 0, -1, int32(-1)
	for _, d := range ds {
		// Scan until a swap with no cost turns up, or 256 slots past
		// the first usable one.
		limit := NumSlots
		for k := 0; k < limit && !(bestIdx >= 0 && bestCost <= 0); k++ {
			s2 := (start + k) % NumSlots
			if s2 == s {
				continue
			}
			row2 := a.tab[s2*a.w : (s2+1)*a.w]
			// A slot with holes is left alone: fillHoles counts on
			// its members (avail).
			if slices.Contains(row2, d) || slices.Contains(row2, -1) {
				continue
			}
			for p2, j := range row2 {
				if j < 0 || a.inSlot[j] == a.stamp {
					continue
				}
				cost := 0
				if j == a.orig[s2*a.w+p2] {
					cost = extraMove
				}
				if bestIdx >= 0 && cost > bestCost+extraMove/2 {
					continue
				}
				// Zone cost: s gains zone(j); s2 trades zone(j) for zone(d).
				cost += 2 * int(a.zc(a.zone[j])-zmin)
				if zj, zd := a.zone[j], a.zone[d]; zj != zd {
					cost += 2 * (zoneCount(a, row2, zd) - zoneCount(a, row2, zj) + 1)
				}
				if bestIdx < 0 || cost < bestCost {
					if bestIdx < 0 {
						limit = min(limit, k+256)
					}
					bestCost, bestIdx, bestD = cost, s2*a.w+p2, d
				}
			}
		}
		if bestIdx >= 0 && bestCost <= 0 {
			break
		}
	}
	if bestIdx >= 0 {
		a.set(s*a.w+p, a.tab[bestIdx])
		a.set(bestIdx, bestD)
		return
	}
	// Last resort: any node not in the slot, least-represented zone, then
	// the least loaded relative to its target.
	best, bc := int32(-1), int32(0)
	for j := range a.count {
		j := int32(j)
		if a.inSlot[j] == a.stamp {
			continue
		}
		if c := a.zc(a.zone[j]); a.better(j, c, best, bc, s, p) {
			best, bc = j, c
		}
	}
	a.set(s*a.w+p, best)
}

// zoneCount counts the nodes of zone z in row.
func zoneCount(a *assigner, row []int32, z int32) int {
	n := 0
	for _, j := range row {
		if j >= 0 && a.zone[j] == z {
			n++
		}
	}
	return n
}

// positionsOf returns, for each node over its target, the table indexes it
// holds, in an order fixed by its ID and the slot: so its surplus is taken
// from slots spread over the whole range, the same ones every time.
func (a *assigner) positionsOf() (over []int32, lists [][]int32) {
	lists = make([][]int32, len(a.count))
	for j := range a.count {
		if a.count[j] > a.target[j] {
			over = append(over, int32(j))
			lists[j] = make([]int32, 0, a.count[j])
		}
	}
	if len(over) == 0 {
		return nil, nil
	}
	for i, j := range a.tab {
		if j >= 0 && lists[j] != nil {
			lists[j] = append(lists[j], int32(i))
		}
	}
	type keyed struct {
		h   uint64
		idx int32
	}
	var buf []keyed
	for _, o := range over {
		seed := a.seed[o]
		buf = buf[:0]
		for _, idx := range lists[o] {
			buf = append(buf, keyed{mix(seed ^ uint64(idx)), idx})
		}
		slices.SortFunc(buf, func(x, y keyed) int {
			if x.h != y.h {
				if x.h < y.h {
					return -1
				}
				return 1
			}
			return int(x.idx - y.idx)
		})
		for i := range buf {
			lists[o][i] = buf[i].idx
		}
	}
	return over, lists
}

// transfer hands the surplus positions of over-target nodes directly to
// under-target nodes, one changed position each. It prefers, in four
// rounds: positions whose slot is untouched and whose zone spread does not
// get worse; then any that keep the zone spread; then untouched slots; then
// anything distinct.
func (a *assigner) transfer() {
	over, lists := a.positionsOf()
	for level := 0; level < 4 && len(a.active) > 0; level++ {
		fresh, keepZones := level == 0 || level == 2, level < 2
		for _, o := range over {
			for _, idx := range lists[o] {
				if a.count[o] <= a.target[o] || len(a.active) == 0 {
					break
				}
				s, p := int(idx)/a.w, int(idx)%a.w
				if a.tab[idx] != o || (fresh && a.touched[s]) {
					continue
				}
				a.load(s)
				zo := a.zone[o]
				co := a.zc(zo)
				best, bc := int32(-1), int32(0)
				for _, d := range a.active {
					if a.inSlot[d] == a.stamp {
						continue
					}
					var c int32
					if zd := a.zone[d]; zd != zo {
						c = 2 * (a.zc(zd) - co + 1)
					}
					if keepZones && c > 0 {
						continue
					}
					if a.better(d, c, best, bc, s, p) {
						best, bc = d, c
					}
				}
				if best >= 0 {
					a.set(int(idx), best)
				}
			}
		}
	}
}

// freeExcess turns the surplus that transfer could not hand over directly
// into holes, for fillHoles to fill by swaps.
func (a *assigner) freeExcess() {
	over, lists := a.positionsOf()
	for pass := 0; pass < 2; pass++ {
		for _, o := range over {
			for _, idx := range lists[o] {
				if a.count[o] <= a.target[o] {
					break
				}
				if pass == 0 && a.touched[int(idx)/a.w] {
					continue
				}
				a.set(int(idx), -1)
			}
		}
	}
}

// spreadZones swaps positions between slots to even out zones within
// slots: a slot where zone a appears at least twice more than zone b gives a
// node of a to a slot s2 and takes a node of b from it, when s2 does not get
// worse (so the total over slots of the squared zone counts falls, and it
// terminates). Positions already changed in this call are given away first,
// since moving them again costs nothing. The search is bounded.
func (a *assigner) spreadZones() {
	if a.nzones < 2 {
		return
	}
	budget := 16 * NumSlots
	for sweep := 0; sweep < 2; sweep++ {
		improved := false
		for s := 0; s < NumSlots && budget > 0; s++ {
			for iter := 0; iter < 2*a.w && a.improveSlot(s, iter, &budget); iter++ {
				improved = true
			}
		}
		if !improved {
			break
		}
	}
}

func (a *assigner) improveSlot(s, iter int, budget *int) bool {
	a.load(s)
	row := a.tab[s*a.w : (s+1)*a.w]
	// The fullest zone of the slot (first in position order on a tie) and
	// the emptiest zone, which is 0 when some zone is absent.
	za, cmax, cmin := int32(-1), int32(0), int32(1<<30)
	for _, j := range row {
		z := a.zone[j]
		c := a.zc(z)
		if c > cmax {
			za, cmax = z, c
		}
		cmin = min(cmin, c)
	}
	if distinctZones(a, row) < a.nzones {
		cmin = 0
	}
	if cmax-cmin < 2 {
		return false
	}
	// Positions of zone za, changed ones first.
	var ys []int
	for pass := 0; pass < 2; pass++ {
		for p, j := range row {
			if a.zone[j] == za && (j != a.orig[s*a.w+p]) == (pass == 0) {
				ys = append(ys, p)
			}
		}
	}
	start := int(mix(uint64(s)<<8|uint64(iter)) % NumSlots)
	for k := 0; k < NumSlots && *budget > 0; k++ {
		*budget--
		s2 := (start + k) % NumSlots
		if s2 == s {
			continue
		}
		row2 := a.tab[s2*a.w : (s2+1)*a.w]
		for p2, x := range row2 {
			zx := a.zone[x]
			cx := a.zc(zx)
			if cx > cmax-2 || a.inSlot[x] == a.stamp {
				continue
			}
			// s gets better (it trades zone a for the rarer zone of x);
			// s2, trading x's zone for a, must not get worse, or
			// fixing s could break an even slot.
			if zoneCount(a, row2, za) >= zoneCount(a, row2, zx) {
				continue
			}
			for _, p := range ys {
				y := row[p]
				if slices.Contains(row2, y) {
					continue
				}
				a.set(s*a.w+p, x)
				a.set(s2*a.w+p2, y)
				return true
			}
		}
	}
	return false
}

// distinctZones counts the zones present in row (holes ignored).
func distinctZones(a *assigner, row []int32) int {
	n := 0
	for i, j := range row {
		if j < 0 {
			continue
		}
		z := a.zone[j]
		dup := false
		for _, k := range row[:i] {
			if k >= 0 && a.zone[k] == z {
				dup = true
				break
			}
		}
		if !dup {
			n++
		}
	}
	return n
}

// fnv64 is FNV-1a of s.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix is the splitmix64 finalizer.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
