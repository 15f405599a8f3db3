package repair

import (
	"context"
	"fmt"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/placement"
)

// SlotSum is what a node holds of one slot, at one position, written with
// one policy: how many shards, and the XOR of a hash of each one's key,
// version, tombstone flag and policy (wire OpSums). Owners of a slot that
// hold the same keys at the same versions give equal counts and hashes.
type SlotSum struct {
	Slot   uint16
	Policy coding.Policy
	Pos    int
	Count  uint64
	XOR    uint64
	Older  uint64 // of the Count shards, those whose node keeps older versions beside them
}

// SlotPeers are Peers that can also summarise and list one slot. With
// them, a pass lists only the slots whose owners disagree.
type SlotPeers interface {
	Peers
	// Sums returns node's slot sums.
	Sums(ctx context.Context, node string) ([]SlotSum, error)
	// InventorySlot returns every shard node holds of one slot.
	InventorySlot(ctx context.Context, node string, slot uint16) ([]Holding, error)
}

// maxSlotListing is the most slots a pass lists one by one; past it,
// listing every node whole is cheaper than so many requests.
const maxSlotListing = placement.NumSlots / 8

// SettledSlots returns the slots that are not settled, in order, and the
// number of keys in the settled ones; sums holds the answers of the nodes
// that answered. It is for use with no rebalance under way. A slot is
// settled when every owner answered, owns one position of it and holds
// shards only there, no other node holds any, and for each policy in the
// slot the owners of its positions report the same count and hash and no
// older versions, while the other owners hold none of it. Make gives a
// settled slot's keys no action (up to a 64-bit hash collision, which the
// next change to the slot undoes).
func SettledSlots(m *placement.Map, sums map[string][]SlotSum) (unsettled []uint16, keys int) {
	bySlot := make([][]heldSum, placement.NumSlots)
	for node, ss := range sums {
		for _, s := range ss {
			if int(s.Slot) < placement.NumSlots {
				bySlot[s.Slot] = append(bySlot[s.Slot], heldSum{node, s})
			}
		}
	}
	for slot := range bySlot {
		if n, ok := settledKeys(m, uint16(slot), bySlot[slot], sums); ok {
			keys += n
		} else {
			unsettled = append(unsettled, uint16(slot))
		}
	}
	return unsettled, keys
}

// heldSum is one node's sum.
type heldSum struct {
	node string
	sum  SlotSum
}

// settledKeys is SettledSlots for one slot: the keys it holds, if settled.
func settledKeys(m *placement.Map, slot uint16, hs []heldSum, answered map[string][]SlotSum) (int, bool) {
	owners := m.Owners(slot)
	if owners == nil {
		return 0, false
	}
	pos := make(map[string]int, len(owners))
	for p, ni := range owners {
		if int(ni) >= len(m.Nodes) {
			return 0, false
		}
		id := m.Nodes[ni].ID
		if _, ok := answered[id]; !ok {
			return 0, false
		}
		if _, dup := pos[id]; dup {
			return 0, false // an owner of two positions: judged by Make
		}
		pos[id] = p
	}
	// One sum per (policy, owner), at the owner's position.
	byPolicy := map[coding.Policy]map[string]SlotSum{}
	for _, h := range hs {
		p, owner := pos[h.node]
		if !owner || h.sum.Pos != p {
			return 0, false
		}
		if byPolicy[h.sum.Policy] == nil {
			byPolicy[h.sum.Policy] = map[string]SlotSum{}
		}
		byPolicy[h.sum.Policy][h.node] = h.sum
	}
	keys := 0
	for pol, at := range byPolicy {
		w := pol.Width()
		if pol.Validate() != nil || w > len(owners) {
			return 0, false
		}
		ref, ok := at[m.Nodes[owners[0]].ID]
		if !ok {
			return 0, false
		}
		for p, ni := range owners {
			s, has := at[m.Nodes[ni].ID]
			if has != (p < w) || (has && (s.Count != ref.Count || s.XOR != ref.XOR || s.Older > 0)) {
				return 0, false
			}
		}
		keys += int(ref.Count)
	}
	return keys, true
}

// listSlots lists the given slots of one node.
func listSlots(ctx context.Context, sp SlotPeers, node string, slots []uint16) ([]Holding, error) {
	var hs []Holding
	for _, slot := range slots {
		got, err := sp.InventorySlot(ctx, node, slot)
		if err != nil {
			return nil, fmt.Errorf("slot %d: %w", slot, err)
		}
		hs = append(hs, got...)
	}
	return hs, nil
}
