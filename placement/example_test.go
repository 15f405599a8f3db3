package placement_test

import (
	"fmt"

	"github.com/filedrive-team/go-ds-cluster/placement"
)

func Example() {
	var nodes []placement.Node
	for i := range 8 {
		nodes = append(nodes, placement.Node{
			ID:   fmt.Sprintf("node%d", i),
			Zone: fmt.Sprintf("rack%d", i%4),
		})
	}
	// A 4+2 erasure policy needs 6 positions per slot.
	m, err := placement.Assign(nil, nodes, 6)
	if err != nil {
		panic(err)
	}
	slot := placement.Slot("/blocks/CIQA4T3TD3BP3C2M3GXCGRCRTCCHV7XSGAZPZJOAOHLPOI6IQR3H6YQ")
	fmt.Println("slot", slot, "has", len(m.Owners(slot)), "distinct nodes")
	fmt.Println("positions per node:", m.Counts())

	// A ninth node joins rack0 and takes its share of positions. A few
	// more move so that rack0, now with 3 of the 9 nodes, still holds
	// exactly 2 positions of every slot.
	next, err := placement.Assign(m, append(nodes, placement.Node{ID: "node8", Zone: "rack0"}), 6)
	if err != nil {
		panic(err)
	}
	moves, err := placement.Diff(m, next)
	if err != nil {
		panic(err)
	}
	fmt.Println("epoch", next.Epoch, "moves", len(moves), "new node holds", next.Counts()[8])
	// Output:
	// slot 6015 has 6 distinct nodes
	// positions per node: [12288 12288 12288 12288 12288 12288 12288 12288]
	// epoch 2 moves 11288 new node holds 10922
}
