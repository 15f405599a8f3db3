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

// targetCopy returns the copy of shard raw, at position pos of slot, to
// send to the position's owner in the rebalance target, or nil when no
// rebalance moves the position to another node.
func (n *Node) targetCopy(c *config.Cluster, slot uint16, pos int, raw []byte) *forward {
	if c.Target == nil {
		return nil
	}
	owners := c.Target.Owners(slot)
	if pos >= len(owners) || int(owners[pos]) >= len(c.Target.Nodes) {
		return nil
	}
	to := c.Target.Nodes[owners[pos]].ID
	if to == n.selfID {
		return nil
	}
	id, err := peer.Decode(to)
	if err != nil {
		return nil
	}
	return &forward{to: id, shard: raw}
}

// sendForwards sends the copies fs to the new owners of their positions
// and waits for the answers, before the request that stored them is
// answered: a write made during a rebalance is at the new owner when this
// node acknowledges it, so a rebalance that commits right after (from
// lists taken before the write) does not leave the write only at old
// owners, where reads no longer look and repair may not reach (their nodes
// down). A delete's tombstone is at the new owner before an old copy could
// be. Copies to one owner go in batch requests, the owners in parallel,
// all under one deadline (forwardTimeout). A copy that fails does not fail
// the write: the repair worker copies the shard later, from this node. An
// owner that failed a copy within forwardBackoff is not tried again
// meanwhile, so a new owner that is down does not hold every write. Nil
// copies (shards no rebalance moves) are passed over.
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.forwardTo(ctx, to, shards); err != nil {
				n.forwardFailed(to, err)
			}
		}()
	}
	wg.Wait()
}

// forwardTo sends shards to node to, in as few batch requests as fit, and
// stops at the first request that fails. A shard the owner refuses alone
// (say it holds a newer version of the key) is left to repair without
// counting against the owner.
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

// forwardBackingOff reports whether node to failed a forward less than
// forwardBackoff ago.
func (n *Node) forwardBackingOff(to peer.ID) bool {
	n.fwdMu.Lock()
	defer n.fwdMu.Unlock()
	at, ok := n.fwdFailed[to]
	return ok && time.Since(at) < forwardBackoff
}

// forwardFailed marks node to as failing forwards, and logs it once a
// backoff period.
func (n *Node) forwardFailed(to peer.ID, err error) {
	n.fwdMu.Lock()
	at, ok := n.fwdFailed[to]
	fresh := !ok || time.Since(at) >= forwardBackoff
	if fresh {
		n.fwdFailed[to] = time.Now()
	}
	n.fwdMu.Unlock()
	if fresh {
		log.Warnw("forward shards to the rebalance target owner; repair will copy them", "to", to.String(), "retry_after", forwardBackoff, "err", err)
	}
}
