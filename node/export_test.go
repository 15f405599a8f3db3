package node

import (
	"context"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

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

// PrevShard is the previous shard the node keeps of key (keepPrev).
func (n *Node) PrevShard(key string) ([]byte, error) {
	return n.store.Get(context.Background(), prevShardName(key))
}

// CurrentShard is the shard the node holds of key now.
func (n *Node) CurrentShard(key string) ([]byte, error) {
	return n.store.Get(context.Background(), shardName(key))
}

// SetPrevShard stores raw as key's previous shard, as a writer that died
// before dropping it would leave it.
func (n *Node) SetPrevShard(key string, raw []byte) error {
	return n.store.Put(context.Background(), prevShardName(key), raw)
}

// AgePrevShard moves key's previous shard to where nodes kept previous
// shards before prevShardName (legacyPrevName), as an upgraded node finds it.
func (n *Node) AgePrevShard(key string) error {
	ctx := context.Background()
	raw, err := n.store.Get(ctx, prevShardName(key))
	if err != nil {
		return err
	}
	if err := n.store.Put(ctx, legacyPrevName(key), raw); err != nil {
		return err
	}
	return n.store.Delete(ctx, prevShardName(key))
}

// LegacyPrevShard is what the node holds at key's legacyPrevName.
func (n *Node) LegacyPrevShard(key string) ([]byte, error) {
	return n.store.Get(context.Background(), legacyPrevName(key))
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

// FeaturesOf is featuresOf, asked now.
func (n *Node) FeaturesOf(ctx context.Context, node string) ([]string, error) {
	return n.featuresOf(ctx, node, 0)
}
