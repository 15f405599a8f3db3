package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

func (n *Node) handleStream(s network.Stream) {
	n.streamMu.Lock()
	if n.streamsClosed {
		n.streamMu.Unlock()
		_ = s.Reset() // a stream dispatched as the node closed
		return
	}
	n.wg.Add(1)
	n.streamMu.Unlock()
	defer n.wg.Done()
	defer s.Close()
	var buf, scratch []byte // scratch: shard reads; a response is written before the next read
	out := make([]byte, 0, 256)
	for {
		select {
		case <-n.closed:
			_ = s.Reset()
			return
		default:
		}
		_ = s.SetReadDeadline(time.Now().Add(idleTimeout))
		frame, err := wire.ReadFrame(s, buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, network.ErrReset) {
				log.Debugw("bad frame", "peer", s.Conn().RemotePeer().String(), "err", err)
				if errors.Is(err, wire.ErrMalformed) {
					// Framing is lost: answer why, then close (a reset
					// could drop the answer).
					resp := &wire.Response{Status: wire.StatusBadRequest, Message: err.Error()}
					_ = s.SetWriteDeadline(time.Now().Add(5 * time.Second))
					if _, err := wire.WriteResponse(s, out, resp); err == nil {
						_ = s.CloseWrite()
						return
					}
				}
			}
			_ = s.Reset()
			return
		}
		buf = frame[:0]
		start := time.Now()
		resp := n.serve(context.Background(), s.Conn().RemotePeer(), frame, &scratch)
		_ = s.SetWriteDeadline(time.Now().Add(time.Minute))
		if out, err = wire.WriteResponse(s, out, resp); err != nil {
			_ = s.Reset()
			return
		}
		n.metrics.served(resp, len(frame), time.Since(start))
		if cap(buf) > 8<<20 {
			buf = nil
		}
	}
}

// serve answers one request frame. It never panics on any input.
// scratch, when not nil, is a buffer a shard read may use for the response
// payload; the caller writes the response before it reuses the buffer.
func (n *Node) serve(ctx context.Context, from peer.ID, frame []byte, scratch *[]byte) (resp *wire.Response) {
	c := n.cluster.Load()
	req, err := wire.DecodeRequest(frame)
	if err != nil {
		op := wire.Op(0)
		if len(frame) > 1 {
			op = wire.Op(frame[1])
		}
		return &wire.Response{Op: op, Status: wire.StatusBadRequest, Message: err.Error(), Epoch: c.Map.Epoch}
	}
	defer func() {
		resp.Op = req.Op
		resp.Epoch = c.Map.Epoch
	}()
	if resp := n.authorize(c, from, req.Op); resp != nil {
		return resp
	}
	if req.Epoch != 0 && req.Epoch < c.Map.Epoch {
		return failure(wire.StatusStaleEpoch, "request made with cluster map epoch %d, this node is at epoch %d: refresh the map", req.Epoch, c.Map.Epoch)
	}
	switch req.Op {
	case wire.OpInventory, wire.OpSlotInventory, wire.OpSums, wire.OpDrop, wire.OpRepair:
		if !n.isMember(c, from) {
			return failure(wire.StatusUnauthorized, "%s: peer %s is not a member of the cluster", req.Op, from)
		}
	}
	switch req.Op {
	case wire.OpPut:
		writer := !n.isMember(c, from)
		r, f := n.putShard(ctx, req.Shard, writer, writer)
		n.sendForwards(f)
		return &wire.Response{Status: r.Status, Message: r.Message}
	case wire.OpBatchPut:
		// In parallel, so that fsyncs overlap and commits group. From a
		// member the batch is forwards (forwardTo): they keep older
		// versions as the writer's put does, and go no further.
		rs := make([]wire.BatchResult, len(req.Shards))
		fs := make([]*forward, len(req.Shards))
		writer := !n.isMember(c, from)
		sem := make(chan struct{}, batchWorkers)
		var wg sync.WaitGroup
		for i, sh := range req.Shards {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				rs[i], fs[i] = n.putShard(ctx, sh, true, writer)
			})
		}
		wg.Wait()
		n.sendForwards(fs...)
		return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendBatchPayload(nil, rs)}
	case wire.OpGet:
		return n.getShard(ctx, req.Key, req.Pos, req.HeaderOnly, index.Version{HLC: req.HLC, Writer: req.Writer}, scratch)
	case wire.OpList:
		return n.list(req)
	case wire.OpStatus:
		return n.status(ctx)
	case wire.OpPurge:
		rs := make([]wire.BatchResult, len(req.Purge))
		hold := membership.GCHold(c)
		for i, le := range req.Purge {
			if hold != "" {
				// The front end's description lags this node's.
				rs[i].Status, rs[i].Message = wire.StatusUnavailable, "tombstone kept: "+hold
				continue
			}
			rs[i].Status, rs[i].Message = n.purge(ctx, le)
		}
		return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendBatchPayload(nil, rs)}
	case wire.OpClusterInfo:
		return n.clusterInfo(ctx, from, req.Identity)
	case wire.OpInventory, wire.OpSlotInventory:
		return n.inventory(req)
	case wire.OpSums:
		return n.sums()
	case wire.OpRepair:
		st, msg := n.repairOrder(ctx, req.Repair)
		return &wire.Response{Status: st, Message: msg}
	case wire.OpDrop, wire.OpDropOlder, wire.OpSupersede:
		if req.Op == wire.OpDrop && req.Epoch != 0 && req.Epoch != c.Map.Epoch {
			return failure(wire.StatusStaleEpoch, "drop planned at map epoch %d, this node is at epoch %d", req.Epoch, c.Map.Epoch)
		}
		act := n.drop
		switch req.Op {
		case wire.OpDropOlder:
			act = n.dropOlder
		case wire.OpSupersede:
			act = n.supersede
		}
		rs := make([]wire.BatchResult, len(req.Drop))
		for i, sr := range req.Drop {
			rs[i].Status, rs[i].Message = act(ctx, sr)
		}
		return &wire.Response{Status: wire.StatusOK, Payload: wire.AppendBatchPayload(nil, rs)}
	case wire.OpPing:
		// A failed store fails heartbeats, so the cluster marks the node
		// down, then out, and rebuilds its shards.
		if err := n.storeErr(); err != nil {
			return failure(wire.StatusUnavailable, "shard store failed, this node takes no writes: %v", err)
		}
		return &wire.Response{Status: wire.StatusOK}
	case wire.OpMember:
		return n.member(ctx, from, req.Body)
	}
	return failure(wire.StatusBadRequest, "unsupported op %s", req.Op)
}

// isMember reports whether peer p is a member of the cluster (a server
// node), this node included.
func (n *Node) isMember(c *config.Cluster, p peer.ID) bool {
	return p == n.host.ID() || n.memberIDs(c)[p]
}

// members are the peers a cluster description lists as members, by their
// decoded IDs: every request asks, and the text of a peer ID costs a
// base58 encoding each time.
type members struct {
	of  *config.Cluster
	ids map[peer.ID]bool
}

// memberIDs returns the members c lists, not removed, built once per
// description installed.
func (n *Node) memberIDs(c *config.Cluster) map[peer.ID]bool {
	if m := n.members.Load(); m != nil && m.of == c {
		return m.ids
	}
	ids := make(map[peer.ID]bool, len(c.Members))
	for _, m := range c.Members {
		if id, err := peer.Decode(m.ID); err == nil && m.State != membership.Removed {
			ids[id] = true
		}
	}
	n.members.Store(&members{of: c, ids: ids})
	return ids
}

// authorize applies the client roles (config.Cluster.Clients) to a request
// of op: nil when from may make it. Reads need a role, writes a read-write
// one (checkRole). Other ops are open to every peer with the secret (cluster
// info, ping), to members only (repair's), or checked where they are served.
func (n *Node) authorize(c *config.Cluster, from peer.ID, op wire.Op) *wire.Response {
	var write bool
	switch op {
	case wire.OpGet, wire.OpList, wire.OpStatus:
	case wire.OpPut, wire.OpBatchPut, wire.OpPurge, wire.OpDropOlder, wire.OpSupersede:
		write = true
	default:
		return nil
	}
	return n.checkRole(c, from, op.String(), write)
}

// checkRole returns nil when from may do what (a write when write is set):
// members may do anything, and so may anyone while no client has a role;
// after that a read-only client may only read, and others nothing.
func (n *Node) checkRole(c *config.Cluster, from peer.ID, what string, write bool) *wire.Response {
	if len(c.Clients) == 0 || n.isMember(c, from) {
		return nil
	}
	id := from.String()
	role, ok := c.ClientRole(id)
	switch {
	case !ok:
		return failure(wire.StatusUnauthorized, "%s: peer %s has no role in cluster %s; a read-write client grants one with `dsclient client grant %s --role=read-only|read-write`",
			what, id, c.ID, id)
	case write && role != config.RoleReadWrite:
		return failure(wire.StatusUnauthorized, "%s: peer %s is a %s client", what, id, role)
	}
	return nil
}

// failure is an answer of status st that says why.
func failure(st wire.Status, format string, args ...any) *wire.Response {
	return &wire.Response{Status: st, Message: fmt.Sprintf(format, args...)}
}
