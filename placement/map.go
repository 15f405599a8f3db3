package placement

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrTooFewNodes is returned by Assign when there are fewer nodes than the
// width, so a slot cannot get width distinct nodes.
var ErrTooFewNodes = errors.New("placement: fewer nodes than width")

// MaxNodes is the largest number of nodes a Map can hold: Table stores
// node indexes as uint16.
const MaxNodes = 1 << 16

// MaxWeight is the largest Node.Weight accepted. It keeps the share
// arithmetic within 64 bits.
const MaxWeight = 1 << 24

// Node is one member of the cluster as the map knows it.
type Node struct {
	ID     string   `json:"id"`               // libp2p peer ID string
	Addrs  []string `json:"addrs"`            // multiaddr strings
	Zone   string   `json:"zone,omitempty"`   // failure domain label
	Weight int      `json:"weight,omitempty"` // capacity weight; 0 means 1
}

// weight returns the node's effective capacity weight.
func (n *Node) weight() int {
	if n.Weight == 0 {
		return 1
	}
	return n.Weight
}

// Map is the cluster map: for each of the NumSlots slots, an ordered list of
// Width distinct nodes. Position p of a slot holds shard p of every value in
// that slot; a policy of width w uses positions 0..w-1.
//
// A Map is a value: once built (by Assign, UnmarshalJSON or Clone) it is
// never modified by this package, and any number of goroutines may read it
// at once. Callers that share a Map must not modify it either; use Clone to
// get a copy to change.
type Map struct {
	Epoch uint64
	Width int      // positions per slot (the widest policy, e.g. k+m)
	Nodes []Node   // index in this slice is what Table stores
	Table []uint16 // len NumSlots*Width; Table[s*Width+p] = index into Nodes of slot s position p
}

// Owners returns the Width node indexes of slot, in position order. The
// result is a sub-slice of m.Table, capped so that appending to it cannot
// write into the table; the caller must not modify it. Owners returns nil for
// a slot >= NumSlots or a map whose table is too short.
func (m *Map) Owners(slot uint16) []uint16 {
	if int(slot) >= NumSlots {
		return nil
	}
	lo := int(slot) * m.Width
	hi := lo + m.Width
	if m.Width < 1 || hi > len(m.Table) {
		return nil
	}
	return m.Table[lo:hi:hi]
}

// NodeIndex returns the index in m.Nodes of the node with the given ID. It is
// a linear search.
func (m *Map) NodeIndex(id string) (int, bool) {
	for i := range m.Nodes {
		if m.Nodes[i].ID == id {
			return i, true
		}
	}
	return -1, false
}

// Counts returns, for each node index, how many slot positions it holds.
// Indexes out of range are not counted (Validate reports them).
func (m *Map) Counts() []int {
	c := make([]int, len(m.Nodes))
	for _, j := range m.Table {
		if int(j) < len(c) {
			c[j]++
		}
	}
	return c
}

// Clone returns a deep copy of m.
func (m *Map) Clone() *Map {
	if m == nil {
		return nil
	}
	c := &Map{Epoch: m.Epoch, Width: m.Width}
	if m.Nodes != nil {
		c.Nodes = make([]Node, len(m.Nodes))
		for i, n := range m.Nodes {
			c.Nodes[i] = n
			if n.Addrs != nil {
				c.Nodes[i].Addrs = append([]string(nil), n.Addrs...)
			}
		}
	}
	if m.Table != nil {
		c.Table = append([]uint16(nil), m.Table...)
	}
	return c
}

// Validate checks the structure of m: Width >= 1; Width <= len(Nodes) <=
// MaxNodes; node IDs non-empty and unique; weights in 0..MaxWeight;
// len(Table) == NumSlots*Width; every index in range; and the nodes of each
// slot distinct. It does not check balance or zones.
func (m *Map) Validate() error {
	if m == nil {
		return errors.New("placement: nil map")
	}
	if m.Width < 1 {
		return fmt.Errorf("placement: width %d, want >= 1", m.Width)
	}
	if len(m.Nodes) < m.Width {
		return fmt.Errorf("placement: %d nodes for width %d: %w", len(m.Nodes), m.Width, ErrTooFewNodes)
	}
	if len(m.Nodes) > MaxNodes {
		return fmt.Errorf("placement: %d nodes, at most %d allowed", len(m.Nodes), MaxNodes)
	}
	if err := checkNodes(m.Nodes); err != nil {
		return err
	}
	if want := NumSlots * m.Width; len(m.Table) != want {
		return fmt.Errorf("placement: table has %d entries, want %d (NumSlots*width %d)", len(m.Table), want, m.Width)
	}
	for s := 0; s < NumSlots; s++ {
		row := m.Table[s*m.Width : (s+1)*m.Width]
		for p, j := range row {
			if int(j) >= len(m.Nodes) {
				return fmt.Errorf("placement: slot %d position %d: node index %d out of range (%d nodes)", s, p, j, len(m.Nodes))
			}
			for q := 0; q < p; q++ {
				if row[q] == j {
					return fmt.Errorf("placement: slot %d: node %d (%q) at both positions %d and %d", s, j, m.Nodes[j].ID, q, p)
				}
			}
		}
	}
	return nil
}

// checkNodes reports empty or duplicate IDs and negative weights.
func checkNodes(nodes []Node) error {
	seen := make(map[string]int, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		if n.ID == "" {
			return fmt.Errorf("placement: node %d has an empty ID", i)
		}
		if k, dup := seen[n.ID]; dup {
			return fmt.Errorf("placement: nodes %d and %d have the same ID %q", k, i, n.ID)
		}
		seen[n.ID] = i
		if n.Weight < 0 || n.Weight > MaxWeight {
			return fmt.Errorf("placement: node %d (%q) has weight %d, want 0..%d", i, n.ID, n.Weight, MaxWeight)
		}
	}
	return nil
}

// mapJSON is the JSON form of a Map. The table is base64 (standard encoding,
// padded) of the entries as big-endian uint16s, which keeps a 6-wide map
// near 260 KB instead of a megabyte of decimal numbers.
type mapJSON struct {
	Epoch uint64 `json:"epoch"`
	Width int    `json:"width"`
	Nodes []Node `json:"nodes"`
	Table string `json:"table"`
}

// MarshalJSON encodes m as
// {"epoch":..,"width":..,"nodes":[..],"table":"<base64 of big-endian uint16s>"}.
// It does not validate m.
func (m *Map) MarshalJSON() ([]byte, error) {
	raw := make([]byte, 2*len(m.Table))
	for i, j := range m.Table {
		binary.BigEndian.PutUint16(raw[2*i:], j)
	}
	nodes := m.Nodes
	if nodes == nil {
		nodes = []Node{}
	}
	return json.Marshal(mapJSON{
		Epoch: m.Epoch,
		Width: m.Width,
		Nodes: nodes,
		Table: base64.StdEncoding.EncodeToString(raw),
	})
}

// UnmarshalJSON decodes the form MarshalJSON writes and then validates the
// result. On error m is left unchanged and the error says what is wrong.
func (m *Map) UnmarshalJSON(b []byte) error {
	var v mapJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("placement: decoding map: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(v.Table)
	if err != nil {
		return fmt.Errorf("placement: table is not valid base64: %w", err)
	}
	if len(raw)%2 != 0 {
		return fmt.Errorf("placement: table is %d bytes, not a whole number of uint16 entries", len(raw))
	}
	tab := make([]uint16, len(raw)/2)
	for i := range tab {
		tab[i] = binary.BigEndian.Uint16(raw[2*i:])
	}
	n := Map{Epoch: v.Epoch, Width: v.Width, Nodes: v.Nodes, Table: tab}
	if err := n.Validate(); err != nil {
		return err
	}
	*m = n
	return nil
}
