package dscluster

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/wire"
)

// A writer tells nodes, once a write is acknowledged, what they may drop
// (wire.OpDropOlder, wire.OpSupersede). Nobody waits for these notices, so
// per node and op the keys queued within noticeDelay go in one request of
// at most noticeBatch keys, in the background. A node that misses one
// keeps the shards until repair drops them.
const (
	noticeDelay = 5 * time.Millisecond
	noticeBatch = 256
	// noticeGrace is how long Close waits for the notices it sends.
	noticeGrace = time.Second
)

// noticeTo is where a batch of notices goes.
type noticeTo struct {
	p  peer.ID
	op wire.Op
}

// notices are the notices queued and not sent yet.
type notices struct {
	mu      sync.Mutex
	pending map[noticeTo][]wire.ShardRef
	armed   bool         // a flush is due within noticeDelay
	sending atomic.Int32 // requests on their way
}

func (d *Datastore) notify(p peer.ID, op wire.Op, ref wire.ShardRef) {
	n := &d.notices
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pending == nil {
		n.pending = map[noticeTo][]wire.ShardRef{}
	}
	to := noticeTo{p, op}
	n.pending[to] = append(n.pending[to], ref)
	if !n.armed {
		n.armed = true
		time.AfterFunc(noticeDelay, d.flushNotices)
	}
}

func (d *Datastore) flushNotices() {
	n := &d.notices
	n.mu.Lock()
	pending := n.pending
	n.pending, n.armed = nil, false
	n.mu.Unlock()
	for to, refs := range pending {
		n.sending.Add(1)
		started := d.background(func(ctx context.Context) {
			defer n.sending.Add(-1)
			for len(refs) > 0 {
				chunk := refs[:min(len(refs), noticeBatch)]
				refs = refs[len(chunk):]
				if _, err := d.client.Do(ctx, to.p, &wire.Request{Op: to.op, Drop: chunk}); err != nil {
					log.Debugw("a writer's notice: the node keeps the shards for repair to drop", "op", to.op.String(),
						"node", to.p.String(), "keys", len(chunk), "first", chunk[0].Key, "err", err)
					return
				}
			}
		})
		if !started {
			n.sending.Add(-1) // closed: nothing goes
		}
	}
}

// closeNotices sends the notices queued and waits for those on their way,
// at most noticeGrace: a short-lived writer (dsclient add) would otherwise
// cancel them as it closes.
func (d *Datastore) closeNotices() {
	d.flushNotices()
	for end := time.Now().Add(noticeGrace); d.notices.sending.Load() > 0 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
}
