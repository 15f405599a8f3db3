package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// forward is a writer's shard this node stored for a position that a
// rebalance moves to another node: the copy to send there.
type forward struct {
	to    peer.ID
	shard []byte // aliases the request frame: sent before the answer
}

// targetCopy returns the copy of shard raw, at position pos of slot, for
// the position's target owner, or nil when no rebalance moves it away.
func (n *Node) targetCopy(c *config.Cluster, slot uint16, pos int, raw []byte) *forward {
	if c.Target == nil {
		return nil
	}
	owners := c.Target.Owners(slot)
	if pos >= len(owners) || int(owners[pos]) >= len(c.Target.Nodes) {
		return nil
	}
	to := c.Target.Nodes[owners[pos]].ID
	id, err := peer.Decode(to)
	if to == n.selfID || err != nil {
		return nil
	}
	return &forward{to: id, shard: raw}
}

// sendForwards sends the copies fs (nil ones skipped) to their new owners,
// in parallel under one forwardTimeout, and waits: a write acknowledged
// during a rebalance is then where reads look once it commits, even from
// lists taken before the write. A failed copy does not fail the write
// (repair copies it later from here); an owner that failed within
// forwardBackoff is skipped, so that a down owner holds up no write.
func (n *Node) sendForwards(fs ...*forward) {
	byPeer := map[peer.ID][][]byte{}
	for _, f := range fs {
		if f != nil && !n.forwardBackingOff(f.to) {
			byPeer[f.to] = append(byPeer[f.to], f.shard)
		}
	}
	if len(byPeer) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(n.bgCtx, forwardTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for to, shards := range byPeer {
		wg.Go(func() {
			if err := n.forwardTo(ctx, to, shards); err != nil {
				n.forwardFailed(to, err)
			}
		})
	}
	wg.Wait()
}

// forwardTo sends shards to node to in as few batch requests as fit, and
// stops at the first that fails. A shard refused alone (a newer version
// held, say) is left to repair, not counted against the owner.
func (n *Node) forwardTo(ctx context.Context, to peer.ID, shards [][]byte) error {
	for len(shards) > 0 {
		size, i := 0, 0
		for ; i < len(shards) && i < wire.MaxBatch; i++ {
			if size += len(shards[i]); i > 0 && size > forwardBatchBytes {
				break
			}
		}
		resp, err := n.client.Do(ctx, to, &wire.Request{Op: wire.OpBatchPut, Shards: shards[:i]})
		if err != nil {
			return err
		}
		if resp.Status != wire.StatusOK {
			return fmt.Errorf("%s: %s", resp.Status, resp.Message)
		}
		rs, err := wire.DecodeBatchPayload(resp.Payload)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.Status != wire.StatusOK {
				log.Debugw("forwarded shard refused; repair will copy it", "to", to.String(), "status", r.Status.String(), "msg", r.Message)
			}
		}
		shards = shards[i:]
	}
	return nil
}

// forwardBackingOff reports whether to failed a forward within forwardBackoff.
func (n *Node) forwardBackingOff(to peer.ID) bool {
	n.fwdMu.Lock()
	defer n.fwdMu.Unlock()
	return time.Since(n.fwdFailed[to]) < forwardBackoff
}

// forwardFailed marks node to as failing forwards, logged once a backoff.
func (n *Node) forwardFailed(to peer.ID, err error) {
	n.fwdMu.Lock()
	fresh := time.Since(n.fwdFailed[to]) >= forwardBackoff
	if fresh {
		n.fwdFailed[to] = time.Now()
	}
	n.fwdMu.Unlock()
	if fresh {
		log.Warnw("forward shards to the rebalance target owner; repair will copy them", "to", to.String(), "retry_after", forwardBackoff, "err", err)
	}
}
