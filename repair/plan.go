package repair

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/placement"
)

// Make plans the repair of v: the copies, rebuilds and drops that bring
// every key's newest readable version to the owners of its positions in
// v.Map and v.Target. The package doc gives the rules and the contracts.
// A nil v or v.Map gives a Plan with no actions.
func Make(v *View) *Plan {
	p := &Plan{Held: make(map[string]int)}
	if v == nil {
		return p
	}
	for id, ok := range v.Reachable {
		if ok {
			p.Held[id] = 0
		}
	}
	keys, idx, bounds := groupByKey(v.Holdings)
	p.Keys = len(keys)
	s := &planner{
		v:    v,
		plan: p,
		cur:  newOwnerTable(v.Map, v.Reachable),
		tgt:  newOwnerTable(v.Target, v.Reachable),
	}
	p.Unsettled = make([]bool, placement.NumSlots)
	for g, key := range keys {
		n := len(p.Actions)
		degraded := p.Degraded
		s.planKey(key, idx[bounds[g]:bounds[g+1]])
		if len(p.Actions) > n || p.Degraded > degraded {
			p.Unsettled[placement.Slot(key)] = true
		}
	}
	// A key whose only copies are on an owner that did not answer is
	// invisible to this pass.
	for slot := range uint16(placement.NumSlots) {
		for _, o := range s.cur.row(slot) {
			if !s.cur.reach[o] {
				p.Unsettled[slot] = true
			}
		}
	}
	p.TargetReady = v.Target != nil && v.Map != nil && s.tgt.allReachable() && !s.targetPending
	return p
}

// groupByKey returns the distinct keys of hs in ascending order, and the
// indexes of hs grouped by key: the holdings of keys[g] are
// idx[bounds[g]:bounds[g+1]].
func groupByKey(hs []Holding) (keys []string, idx []int, bounds []int) {
	gid := make(map[string]int)
	of := make([]int, len(hs)) // hs[i].Key is keys[of[i]]
	for i := range hs {
		g, ok := gid[hs[i].Key]
		if !ok {
			g = len(keys)
			gid[hs[i].Key] = g
			keys = append(keys, hs[i].Key)
		}
		of[i] = g
	}
	sorted := slices.Sorted(slices.Values(keys))
	rank := make([]int, len(keys)) // rank[g] is keys[g]'s place in sorted
	for r, k := range sorted {
		rank[gid[k]] = r
	}
	bounds = make([]int, len(keys)+1)
	for _, g := range of {
		bounds[rank[g]+1]++
	}
	for r := range keys {
		bounds[r+1] += bounds[r]
	}
	next := slices.Clone(bounds[:len(keys)])
	idx = make([]int, len(hs))
	for i, g := range of {
		r := rank[g]
		idx[next[r]] = i
		next[r]++
	}
	return sorted, idx, bounds
}

// ownerTable answers "who owns position p of slot s" for one map, with the
// nodes' reachability looked up once per node, not per key.
type ownerTable struct {
	m     *placement.Map
	reach []bool
}

func newOwnerTable(m *placement.Map, reachable map[string]bool) ownerTable {
	if m == nil {
		return ownerTable{}
	}
	t := ownerTable{m: m, reach: make([]bool, len(m.Nodes))}
	for i := range m.Nodes {
		t.reach[i] = reachable[m.Nodes[i].ID]
	}
	return t
}

// row returns the owners of slot (nil when there is no map).
func (t *ownerTable) row(slot uint16) []uint16 {
	if t.m == nil {
		return nil
	}
	return t.m.Owners(slot)
}

// owner returns the owner of position pos in row; ok is false when the
// position has none (beyond the map's width, or a malformed table).
func (t *ownerTable) owner(row []uint16, pos int) (id string, reach, ok bool) {
	if pos < 0 || pos >= len(row) || int(row[pos]) >= len(t.reach) {
		return "", false, false
	}
	j := row[pos]
	return t.m.Nodes[j].ID, t.reach[j], true
}

// allReachable reports whether every node that owns a position in the map
// is reachable.
func (t *ownerTable) allReachable() bool {
	return t.m != nil && !slices.ContainsFunc(t.m.Table, func(j uint16) bool { return int(j) >= len(t.reach) || !t.reach[j] })
}

// hold is one holding of the key being planned.
type hold struct {
	*Holding
	reach bool
	drop  bool // a Drop of it is in the plan
}

// planner holds the state of one Make call and scratch space reused from
// key to key.
type planner struct {
	v             *View
	plan          *Plan
	cur, tgt      ownerTable
	targetPending bool // a target owner lacks its position of a key

	// Per key.
	key    string
	curRow []uint16
	tgtRow []uint16
	hs     []hold
	acts   []Action
	vers   []verInfo // the key's versions, newest first
	// The version repaired, V, is "newest" below: the newest readable one.
	newest    coding.Version
	policy    coding.Policy
	tombstone bool
	valueLen  uint64
	width     int
}

// verInfo is one version of the key being planned.
type verInfo struct {
	ver       coding.Version
	ref       *Holding // its header: the first holding in (position, node) order
	reachable int      // distinct positions below its width held by reachable nodes
	total     int      // the same, counting every holding listed
}

// readable reports whether a reader can get the version from the reachable
// nodes.
func (vi *verInfo) readable() bool {
	if vi.ref.Tombstone {
		return vi.reachable > 0
	}
	return vi.reachable >= vi.ref.Policy.DataShards
}

func (s *planner) planKey(key string, idx []int) {
	s.key = key
	s.hs = s.hs[:0]
	for _, i := range idx {
		h := &s.v.Holdings[i]
		s.hs = append(s.hs, hold{Holding: h, reach: s.v.Reachable[h.Node]})
	}
	slices.SortFunc(s.hs, func(a, b hold) int {
		return cmp.Or(cmp.Compare(a.Pos, b.Pos), strings.Compare(a.Node, b.Node), compareVersion(a.Version, b.Version))
	})
	// The same shard listed twice (an inventory page read twice) is one.
	s.hs = slices.CompactFunc(s.hs, func(a, b hold) bool {
		return a.Pos == b.Pos && a.Node == b.Node && a.Version == b.Version
	})
	for i := range s.hs {
		if s.hs[i].reach {
			s.plan.Held[s.hs[i].Node]++
		}
	}

	slot := placement.Slot(key)
	s.curRow, s.tgtRow = s.cur.row(slot), s.tgt.row(slot)
	s.versions()
	// A version whose policy is not valid can be neither decoded nor told
	// apart from a real write: the search for V ends there.
	star := slices.IndexFunc(s.vers, func(vi verInfo) bool { return vi.ref.Policy.Validate() != nil || vi.readable() })
	s.acts = s.acts[:0]
	if star < 0 || s.vers[star].ref.Policy.Validate() != nil {
		s.plan.Degraded++
		s.plan.Lost++
		s.rollBack()
	} else {
		r := s.vers[star].ref
		s.newest, s.policy, s.tombstone, s.valueLen = r.Version, r.Policy, r.Tombstone, r.ValueLen
		s.width = s.policy.Width()
		degraded := s.degraded()
		if degraded {
			s.plan.Degraded++
		}
		// The package doc's Garbage rule, for the newest version newer than V.
		if star > 0 && s.slotAnswers() && s.failedWrite(&s.vers[0]) {
			s.dropRestoring(s.vers[0].ver)
		}
		s.dropMisplaced(degraded)
		s.repairOwners()
		if !degraded {
			s.dropOlder()
		}
	}
	slices.SortFunc(s.acts, func(a, b Action) int {
		return cmp.Or(cmp.Compare(a.Pos, b.Pos), cmp.Compare(a.Kind, b.Kind), strings.Compare(a.To, b.To))
	})
	s.plan.Actions = append(s.plan.Actions, s.acts...)
}

func compareVersion(a, b coding.Version) int {
	switch {
	case a.Less(b):
		return -1
	case b.Less(a):
		return 1
	}
	return 0
}

// versions fills s.vers with the distinct versions of the key's holdings,
// newest first.
func (s *planner) versions() {
	s.vers = s.vers[:0]
	for i := range s.hs { // sorted by position, then node
		h := s.hs[i].Holding
		if !slices.ContainsFunc(s.vers, func(vi verInfo) bool { return vi.ver == h.Version }) {
			s.vers = append(s.vers, verInfo{ver: h.Version, ref: h})
		}
	}
	slices.SortFunc(s.vers, func(a, b verInfo) int { return compareVersion(b.ver, a.ver) })
	for j := range s.vers {
		vi := &s.vers[j]
		w := vi.ref.Policy.Width()
		lastAll, lastReach := -1, -1
		for i := range s.hs {
			h := &s.hs[i]
			if h.Version != vi.ver || h.Pos < 0 || h.Pos >= w {
				continue
			}
			if h.Pos != lastAll {
				vi.total++
				lastAll = h.Pos
			}
			if h.reach && h.Pos != lastReach {
				vi.reachable++
				lastReach = h.Pos
			}
		}
	}
}

// slotAnswers reports whether every owner of the key's slot, in the map
// and the target, is reachable.
func (s *planner) slotAnswers() bool {
	return s.v.Map != nil && s.rowReachable(&s.cur, s.curRow) && s.rowReachable(&s.tgt, s.tgtRow)
}

// failedWrite reports whether version vi is provably a write that failed
// after landing on fewer than DataShards positions, once slotAnswers holds:
// the package doc's Garbage rule.
func (s *planner) failedWrite(vi *verInfo) bool {
	if vi.ref.Tombstone || vi.total >= vi.ref.Policy.DataShards {
		return false
	}
	// Perhaps written to the owners of an earlier map (View.Unlisted).
	if s.beforeMap(vi.ver) && vi.total+2*s.v.Unlisted >= vi.ref.Policy.DataShards {
		return false
	}
	return s.v.GarbageBefore == 0 || vi.ver.HLC < s.v.GarbageBefore
}

// dropRestoring drops every reachable shard of version ver, Stale and
// Restore.
func (s *planner) dropRestoring(ver coding.Version) {
	for i := range s.hs {
		if h := &s.hs[i]; h.reach && h.Version == ver && !h.drop {
			a := s.drop(h)
			a.Stale, a.Restore = true, true
		}
	}
}

// rollBack drops a lost key's newest version with Restore when its write
// provably never reached its quorum: the package doc's Lost rule. A
// position that already rolled this version back counts as never having
// held it, which is sound: it was rolled back only because it was never
// acknowledged.
func (s *planner) rollBack() {
	if len(s.vers) == 0 || s.v.Quorum == nil || s.v.Target != nil || !s.slotAnswers() {
		return
	}
	vi := &s.vers[0]
	p := vi.ref.Policy
	if p.Validate() != nil || p.Width() > len(s.curRow) || s.beforeMap(vi.ver) || !s.failedWrite(vi) {
		return // beforeMap: perhaps written to the owners of an earlier map
	}
	never := 0
	for pos := 0; pos < p.Width(); pos++ {
		if id, reach, ok := s.cur.owner(s.curRow, pos); ok && reach && s.onlyOlder(id, pos, vi.ver) {
			never++
		}
	}
	if p.Width()-never >= s.v.Quorum(p) {
		return // it may have been acknowledged, then lost shards
	}
	s.dropRestoring(vi.ver)
}

// beforeMap reports whether ver was written before View.MapSince, or
// MapSince is unknown.
func (s *planner) beforeMap(ver coding.Version) bool {
	return s.v.MapSince == 0 || int64(ver.HLC>>16)*int64(time.Millisecond) < s.v.MapSince
}

// onlyOlder reports whether node holds a shard of the key at pos and all
// its shards are older than ver. A shard at another position proves
// nothing about pos: scrub may have dropped pos's shard of ver there.
func (s *planner) onlyOlder(node string, pos int, ver coding.Version) bool {
	held := false
	for i := range s.hs {
		if h := &s.hs[i]; h.Node == node {
			if !h.Version.Less(ver) {
				return false
			}
			held = held || h.Pos == pos
		}
	}
	return held
}

// rowReachable reports whether every owner in row is reachable.
func (s *planner) rowReachable(t *ownerTable, row []uint16) bool {
	for p := range row {
		if _, reach, ok := t.owner(row, p); !ok || !reach {
			return false
		}
	}
	return true
}

// shadowed reports whether node holds a version newer than the one
// repaired, so that it refuses that one.
func (s *planner) shadowed(node string) bool {
	for i := range s.hs {
		if h := &s.hs[i]; h.Node == node && s.newest.Less(h.Version) {
			return true
		}
	}
	return false
}

// holdsNewest reports whether node holds the newest version at pos.
func (s *planner) holdsNewest(node string, pos int) bool {
	return slices.ContainsFunc(s.hs, func(h hold) bool { return h.Pos == pos && h.Node == node && h.Version == s.newest })
}

// owns reports whether node owns pos in the map or the target.
func (s *planner) owns(node string, pos int) bool {
	if id, _, ok := s.cur.owner(s.curRow, pos); ok && id == node {
		return true
	}
	if id, _, ok := s.tgt.owner(s.tgtRow, pos); ok && id == node {
		return true
	}
	return false
}

// degraded reports whether fewer than width positions of the newest
// version are held by their reachable owner in the map.
func (s *planner) degraded() bool {
	for p := 0; p < s.width; p++ {
		id, reach, ok := s.cur.owner(s.curRow, p)
		if !ok || !reach || !s.holdsNewest(id, p) {
			return true
		}
	}
	return false
}

// dropMisplaced drops the holdings of the package doc's Misplaced and
// Superseded rules.
func (s *planner) dropMisplaced(degraded bool) {
	for i := range s.hs {
		h := &s.hs[i]
		if !h.reach || h.Pos < 0 || h.drop || s.newest.Less(h.Version) {
			continue // newer versions: the Garbage rule
		}
		switch {
		case h.Pos >= s.width && h.Version.Less(s.newest) && !degraded:
			s.drop(h).Stale = true
		case !s.owns(h.Node, h.Pos) && s.keptByOwner(h):
			s.drop(h)
		}
	}
}

// keptByOwner reports whether a reachable owner of h's position, in the
// map or the target, holds the newest version there. An owner that gets it
// in this plan is not relied on: that put drops its older shards at every
// position, whichever of its positions lands first.
func (s *planner) keptByOwner(h *hold) bool {
	for _, id := range []string{s.reachOwner(&s.cur, s.curRow, h.Pos), s.reachOwner(&s.tgt, s.tgtRow, h.Pos)} {
		if id != "" && id != h.Node && s.holdsNewest(id, h.Pos) {
			return true
		}
	}
	return false
}

// reachOwner returns the owner of pos in row when it is reachable, else "".
func (s *planner) reachOwner(t *ownerTable, row []uint16, pos int) string {
	if id, reach, _ := t.owner(row, pos); reach {
		return id
	}
	return ""
}

// dropOlder sends each reachable holder of the newest version that keeps
// older versions one Drop with Older (the package doc's Older rule). The
// Drop names the node's lowest position that the plan leaves it.
func (s *planner) dropOlder() {
	for i := range s.hs {
		h := &s.hs[i]
		if !h.reach || h.Version != s.newest || h.Older == 0 || h.drop ||
			slices.ContainsFunc(s.acts, func(a Action) bool { return a.Older && a.To == h.Node }) {
			continue
		}
		a := s.dropOf(h)
		a.Older = true
		s.acts = append(s.acts, a)
	}
}

func (s *planner) drop(h *hold) *Action {
	h.drop = true
	s.acts = append(s.acts, s.dropOf(h))
	return &s.acts[len(s.acts)-1]
}

// dropOf is the Drop of holding h.
func (s *planner) dropOf(h *hold) Action {
	return Action{Kind: Drop, Key: s.key, Pos: h.Pos, Policy: h.Policy, Version: h.Version, Tombstone: h.Tombstone, To: h.Node}
}

// repairOwners gives each reachable owner of a position p < width, in the
// map and the target, the newest version at p, and notes a target owner
// that lacks it (targetPending).
func (s *planner) repairOwners() {
	for p := 0; p < s.width; p++ {
		mid := s.reachOwner(&s.cur, s.curRow, p)
		if mid != "" {
			s.give(mid, p)
		}
		if tid, reach, ok := s.tgt.owner(s.tgtRow, p); ok {
			if !s.holdsNewest(tid, p) {
				s.targetPending = true
			}
			if reach && tid != mid {
				s.give(tid, p)
			}
		}
	}
}

// give sends node id position p of the newest version, unless it holds it
// or is shadowed.
func (s *planner) give(id string, p int) {
	if s.holdsNewest(id, p) || s.shadowed(id) {
		return
	}
	a := Action{Key: s.key, Pos: p, Policy: s.policy, Version: s.newest, Tombstone: s.tombstone, To: id}
	if from := s.copySource(p); from != nil {
		a.Kind, a.From = Copy, from.Node
		if !s.tombstone {
			a.Bytes = int64(from.ShardLen)
		}
	} else {
		a.Kind = Rebuild
		if !s.tombstone {
			a.Sources = s.rebuildSources()
			if n := coding.ShardLen(s.policy, s.valueLen); n > 0 {
				a.Bytes = int64(n)
			}
		}
	}
	s.acts = append(s.acts, a)
}

// copySource returns the holding to copy position pos of the newest
// version from: one that is reachable and not dropped, preferring a node
// that owns pos in neither map (an old owner, whose copy is about to go),
// then the lowest node ID. Nil when there is none.
func (s *planner) copySource(pos int) *hold {
	var best *hold
	for i := range s.hs { // sorted by position, then node
		h := &s.hs[i]
		if h.Pos != pos || !h.reach || h.drop || h.Version != s.newest {
			continue
		}
		if !s.owns(h.Node, pos) {
			return h
		}
		if best == nil {
			best = h
		}
	}
	return best
}

// rebuildSources returns one source per distinct position of the newest
// version, in position order (data shards first): the map owner of the
// position when it holds it, else the lowest node ID.
func (s *planner) rebuildSources() []Source {
	var src []Source
	for _, h := range s.hs { // sorted by position, then node
		if !h.reach || h.drop || h.Version != s.newest || h.Pos < 0 || h.Pos >= s.width {
			continue
		}
		if n := len(src); n > 0 && src[n-1].Pos == h.Pos {
			if mid, _, _ := s.cur.owner(s.curRow, h.Pos); h.Node == mid {
				src[n-1].Node = h.Node
			}
			continue
		}
		src = append(src, Source{Node: h.Node, Pos: h.Pos})
	}
	return src
}
