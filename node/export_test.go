package node

import (
	"context"
	"errors"

	ds "github.com/ipfs/go-datastore"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/repair"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// Vouch runs the check mayRaft starts for a raft peer this node does not
// know as a member, and reports whether a member vouched for it.
func (n *Node) Vouch(p peer.ID) bool {
	ok, _ := n.vouch(p, n.cluster.Load())
	return ok
}

// MayRaft is mayRaft.
func (n *Node) MayRaft(p peer.ID) bool { return n.mayRaft(p) }

// MaxOlder is maxOlder: the older versions a node keeps of a key.
const MaxOlder = maxOlder

// PrevShard is the newest of the older shards the node keeps of key
// (index.Entry.Older): ds.ErrNotFound when it keeps none.
func (n *Node) PrevShard(key string) ([]byte, error) {
	e, err := n.idx.Get(key)
	if errors.Is(err, index.ErrNotFound) || err == nil && len(e.Older) == 0 {
		return nil, ds.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	raw, _, err := n.shards.get(context.Background(), key, e.Older[0], nil)
	return raw, err
}

// CurrentShard is the shard the node holds of key now (at the lowest
// position, if it holds several).
func (n *Node) CurrentShard(key string) ([]byte, error) {
	e, err := n.idx.Get(key)
	if errors.Is(err, index.ErrNotFound) {
		return nil, ds.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	raw, _, err := n.shards.get(context.Background(), key, e.Held, nil)
	return raw, err
}

// ShardAt is the newest shard the node holds of key at position pos.
func (n *Node) ShardAt(key string, pos int) ([]byte, error) {
	e, err := n.idx.Get(key)
	if err != nil && !errors.Is(err, index.ErrNotFound) {
		return nil, err
	}
	hs := e.At(uint8(pos))
	if err != nil || len(hs) == 0 {
		return nil, ds.ErrNotFound
	}
	raw, _, err := n.shards.get(context.Background(), key, hs[0], nil)
	return raw, err
}

// SetPrevShard stores raw, a shard of key, beside the ones the node holds:
// an older version, as a writer that died before dropping it would leave
// it, or another position of one, as a rebalance does. The node need not
// own its position.
func (n *Node) SetPrevShard(key string, raw []byte) error {
	ctx := context.Background()
	sh, err := coding.ParseShard(raw)
	if err != nil {
		return err
	}
	mu := n.lock(key)
	mu.Lock()
	defer mu.Unlock()
	e, err := n.idx.Get(key)
	if err != nil {
		return err
	}
	in := heldOf(sh)
	e, _ = index.NewEntry(key, e.Slot, append(e.Shards(), in))
	return n.commit(ctx, e, raw, in, nil)
}

// DelegateRepair sends a as a repair order to a.To, as the repair leader does.
func (n *Node) DelegateRepair(ctx context.Context, a repair.Action) error {
	return peers{n}.Delegate(ctx, a)
}

// HandleStream serves a shard protocol stream as the node does.
func (n *Node) HandleStream(s network.Stream) { n.handleStream(s) }

// Drop answers a repair drop of sr, as OpDrop does.
func (n *Node) Drop(ctx context.Context, sr wire.ShardRef) (wire.Status, string) {
	return n.drop(ctx, sr)
}

// Serve answers one request frame from peer from as the node's stream
// handler does.
func (n *Node) Serve(ctx context.Context, from peer.ID, frame []byte) *wire.Response {
	return n.serve(ctx, from, frame, nil)
}

// FeaturesOf is featuresOf.
func (n *Node) FeaturesOf(ctx context.Context, node string) ([]string, error) {
	return n.featuresOf(ctx, node)
}

// IndexEntries is every entry of the node's index, in key order.
func (n *Node) IndexEntries() ([]index.Entry, error) { return n.idx.ListPrefix("", "", 1<<30) }
