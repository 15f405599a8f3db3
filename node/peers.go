package node

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/repair"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// peers implements repair.SlotPeers over the node's client.
type peers struct{ n *Node }

var _ repair.SlotPeers = peers{}

func (p peers) do(ctx context.Context, node string, req *wire.Request) (*wire.Response, error) {
	id, err := peer.Decode(node)
	if err != nil {
		return nil, fmt.Errorf("peer id %q: %w", node, err)
	}
	var resp *wire.Response
	if id == p.n.host.ID() {
		// libp2p does not dial itself: serve the leader's own shards here.
		// The response may alias the request body, which is not reused.
		resp = p.n.serve(ctx, id, wire.AppendRequest(nil, req), nil)
	} else if resp, err = p.n.client.Do(ctx, id, req); err != nil {
		return nil, err
	}
	if resp.Status != wire.StatusOK {
		return resp, fmt.Errorf("%s from %s: %s: %s", req.Op, node, resp.Status, resp.Message)
	}
	return resp, nil
}

func (p peers) Inventory(ctx context.Context, node string) ([]repair.Holding, error) {
	return p.inventory(ctx, node, wire.OpInventory, 0)
}

func (p peers) InventorySlot(ctx context.Context, node string, slot uint16) ([]repair.Holding, error) {
	return p.inventory(ctx, node, wire.OpSlotInventory, slot)
}

func (p peers) Sums(ctx context.Context, node string) ([]repair.SlotSum, error) {
	resp, err := p.do(ctx, node, &wire.Request{Op: wire.OpSums})
	if err != nil {
		return nil, err
	}
	ss, err := wire.DecodeSumsPayload(resp.Payload)
	if err != nil {
		return nil, err
	}
	out := make([]repair.SlotSum, len(ss))
	for i, s := range ss {
		out[i] = repair.SlotSum{Slot: s.Slot, Pos: int(s.Pos), Count: s.Count, XOR: s.XOR, Older: s.Older,
			Policy: policyOf(s.Kind, s.K, s.M)}
	}
	return out, nil
}

// inventory pages through OpInventory (slot ignored) or OpSlotInventory.
func (p peers) inventory(ctx context.Context, node string, op wire.Op, slot uint16) ([]repair.Holding, error) {
	var out []repair.Holding
	after := ""
	for {
		resp, err := p.do(ctx, node, &wire.Request{Op: op, Slot: slot, After: after})
		if err != nil {
			return nil, err
		}
		es, more, err := wire.DecodeInventoryPayload(resp.Payload)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			out = append(out, repair.Holding{
				Node: node, Key: e.Key, Pos: int(e.Pos),
				Policy:    policyOf(e.Kind, e.K, e.M),
				Version:   coding.Version{HLC: e.HLC, Writer: e.Writer},
				Tombstone: e.Tombstone, ValueLen: e.ValueLen, ShardLen: e.ShardLen, Older: int(e.Older),
			})
		}
		if !more || len(es) == 0 {
			return out, nil
		}
		after = es[len(es)-1].Key
	}
}

func (p peers) GetShard(ctx context.Context, node, key string, pos int) ([]byte, error) {
	resp, err := p.do(ctx, node, &wire.Request{Op: wire.OpGet, Key: key, Pos: uint8(pos)})
	if err != nil {
		return nil, err
	}
	return resp.Payload, nil
}

func (p peers) PutShard(ctx context.Context, node string, shard []byte) error {
	// A node that holds a newer version answers OK: nothing to repair.
	_, err := p.do(ctx, node, &wire.Request{Op: wire.OpPut, Shard: shard})
	return err
}

// Delegate sends a Copy or Rebuild to the node that stores its shard
// (OpRepair), which reads what it needs from the others itself.
func (p peers) Delegate(ctx context.Context, a repair.Action) error {
	o := &wire.RepairOrder{Rebuild: a.Kind == repair.Rebuild, Tombstone: a.Tombstone, Key: a.Key, Pos: uint8(a.Pos),
		Kind: uint8(a.Policy.Kind), K: uint8(a.Policy.DataShards), M: uint8(a.Policy.ParityShards),
		HLC: a.Version.HLC, Writer: a.Version.Writer, From: a.From}
	for _, src := range a.Sources {
		o.Sources = append(o.Sources, wire.RepairSource{Node: src.Node, Pos: uint8(src.Pos)})
	}
	_, err := p.do(ctx, a.To, &wire.Request{Op: wire.OpRepair, Repair: o})
	return err
}

// repairOrderTimeout bounds one repair order, under the sender's request
// timeout so that the order fails here before the sender gives up.
const repairOrderTimeout = 25 * time.Second

// repairSourceTimeout bounds the read of one source of a repair order.
const repairSourceTimeout = 8 * time.Second

// repairOrder carries out an OpRepair: it makes the shard (reading its
// sources from the other nodes) and stores it as a member's put.
func (n *Node) repairOrder(ctx context.Context, o *wire.RepairOrder) (wire.Status, string) {
	if o == nil {
		return wire.StatusBadRequest, "repair: no order"
	}
	p := policyOf(o.Kind, o.K, o.M)
	if err := p.Validate(); err != nil {
		return wire.StatusBadRequest, fmt.Sprintf("repair %q: %v", o.Key, err)
	}
	if int(o.Pos) >= p.Width() {
		return wire.StatusBadRequest, fmt.Sprintf("repair %q: position %d outside policy %s", o.Key, o.Pos, p)
	}
	a := repair.Action{Kind: repair.Copy, Key: o.Key, Pos: int(o.Pos), Policy: p,
		Version: coding.Version{HLC: o.HLC, Writer: o.Writer}, Tombstone: o.Tombstone, To: n.selfID, From: o.From}
	if o.Rebuild {
		a.Kind = repair.Rebuild
	}
	for _, src := range o.Sources {
		a.Sources = append(a.Sources, repair.Source{Node: src.Node, Pos: int(src.Pos)})
	}
	ctx, cancel := context.WithTimeout(ctx, repairOrderTimeout)
	defer cancel()
	// A bound per source: one that hangs leaves time for the others.
	get := func(ctx context.Context, node, key string, pos int) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, repairSourceTimeout)
		defer cancel()
		return peers{n}.GetShard(ctx, node, key, pos)
	}
	shard, err := repair.MakeShard(ctx, get, a)
	if err != nil {
		return wire.StatusUnavailable, err.Error()
	}
	r, _ := n.putShard(ctx, shard, false, false) // a readable version's copy
	return r.Status, r.Message
}

func (p peers) Drop(ctx context.Context, a repair.Action) error {
	// The epoch the drop was planned at: a node on another map refuses it.
	req := &wire.Request{Op: wire.OpDrop, Epoch: p.n.passEpoch.Load(), Drop: []wire.ShardRef{{
		Key: a.Key, Pos: uint8(a.Pos), HLC: a.Version.HLC, Writer: a.Version.Writer, Stale: a.Stale, Restore: a.Restore}}}
	if a.Older {
		req.Op = wire.OpDropOlder
	}
	resp, err := p.do(ctx, a.To, req)
	if err != nil {
		return err
	}
	rs, err := wire.DecodeBatchPayload(resp.Payload)
	if err != nil {
		return err
	}
	if len(rs) != 1 || (rs[0].Status != wire.StatusOK && rs[0].Status != wire.StatusNotFound) {
		return fmt.Errorf("drop %q on %s: %v", a.Key, a.To, rs)
	}
	return nil
}
