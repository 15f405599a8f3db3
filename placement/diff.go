package placement

import (
	"errors"
	"fmt"
)

// Move is one slot position whose node changes between two maps.
type Move struct {
	Slot uint16
	Pos  int
	From string // node ID in the old map ("" when none; Diff always sets it)
	To   string // node ID in the new map ("" when none; Diff always sets it)
}

// Diff lists, in slot and position order, the positions whose node (by ID)
// differs between a and b: the shards to migrate when b replaces a. Both maps
// must be valid and have the same width.
func Diff(a, b *Map) ([]Move, error) {
	if a == nil || b == nil {
		return nil, errors.New("placement: diff of a nil map")
	}
	if a.Width != b.Width {
		return nil, fmt.Errorf("placement: diff of maps of width %d and %d", a.Width, b.Width)
	}
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("placement: diff: first map: %w", err)
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("placement: diff: second map: %w", err)
	}
	// same[i] is the index in b of a's node i, or -1.
	byID := make(map[string]int, len(b.Nodes))
	for i := range b.Nodes {
		byID[b.Nodes[i].ID] = i
	}
	same := make([]int, len(a.Nodes))
	for i := range a.Nodes {
		j, ok := byID[a.Nodes[i].ID]
		if !ok {
			j = -1
		}
		same[i] = j
	}
	var moves []Move
	for i, ja := range a.Table {
		jb := b.Table[i]
		if same[ja] == int(jb) {
			continue
		}
		moves = append(moves, Move{
			Slot: uint16(i / a.Width),
			Pos:  i % a.Width,
			From: a.Nodes[ja].ID,
			To:   b.Nodes[jb].ID,
		})
	}
	return moves, nil
}
