package dscluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// Sizing of writes, so memory stays bounded whatever a batch holds: a
// batch commit writes values of up to batchGroupBytes at a time, each node
// gets its shards in requests of at most batchRequestBytes.
const (
	batchGroupBytes   = 32 << 20
	batchRequestBytes = 8 << 20
)

// maxOrdered bounds the attempts of a write: rounds in which a node held
// a newer version, or the map moved under it.
const maxOrdered = 8

// A write is one value (or tombstone) on its way to the positions of its
// key. Put, Delete and a batch commit all go through writeAll.
type write struct {
	op, key string
	// encode makes the shards of an attempt of version ver by v's policy.
	encode func(v *view, ver coding.Version) ([]*coding.Shard, error)
	err    error // the outcome once writeAll returns
}

// attempt is one round's shards of a write and their answers. Answers
// that arrive after the round ended still land in its tally, for the
// older versions they report kept.
type attempt struct {
	w      *write
	shards []*coding.Shard
	t      tally
}

type nodeShard struct {
	a     *attempt
	shard *coding.Shard
}

// writeAll writes ws and sets each one's err. A round sends every node its
// shards of all the writes in batch requests, all nodes in parallel; the
// writes that must go again (tally.verdict) do so with a new version,
// after a random pause of up to 2^round milliseconds, for at most
// maxOrdered rounds.
func (d *Datastore) writeAll(ctx context.Context, ws []*write) {
	for round := 1; len(ws) > 0; round++ {
		v := d.view.Load()
		atts := make([]*attempt, 0, len(ws))
		for _, w := range ws {
			shards, err := w.encode(v, d.clock.Next())
			if err != nil {
				w.err = fmt.Errorf("%s %s: %w", w.op, w.key, err)
				continue
			}
			quorum := v.c.Quorum(shards[0].Header.Policy)
			atts = append(atts, &attempt{w: w, shards: shards, t: newTally(&shards[0].Header, len(shards), quorum)})
		}
		again := d.writeRound(ctx, v, atts)
		if len(again) == 0 || round == maxOrdered {
			return
		}
		if round > 1 {
			// Writers that keep meeting each other on a key spread out.
			t := time.NewTimer(rand.N(time.Duration(1<<round) * time.Millisecond))
			select {
			case <-ctx.Done():
				t.Stop()
				for _, w := range again {
					w.err = fmt.Errorf("%s %s: %w", w.op, w.key, ctx.Err())
				}
				return
			case <-t.C:
			}
		}
		ws = again
	}
}

// writeRound sends the shards of atts and waits for every answer, or,
// once every write has its quorum, for HedgeAfter more, or not at all when
// only slow nodes are left to answer; their shards are still sent, and
// repair restores them if they never land. It sets each write's err, tells
// the nodes that kept older versions of acknowledged writes to drop them,
// and returns the writes to write again. The shards are released once
// every request is done with them.
func (d *Datastore) writeRound(ctx context.Context, v *view, atts []*attempt) (again []*write) {
	perNode := make(map[int][]nodeShard)
	for _, a := range atts {
		owners := v.owners(a.w.key)
		for i, sh := range a.shards {
			n := int(owners[i])
			perNode[n] = append(perNode[n], nodeShard{a: a, shard: sh})
		}
	}
	sendCtx, keep, sent := outliving(ctx)
	defer keep()
	var (
		mu      sync.Mutex // guards the tallies
		wg      sync.WaitGroup
		done    = make(chan int, len(perNode)) // a node whose requests all ended
		pending = map[int]bool{}
	)
	send := func(n int, items []nodeShard) {
		pending[n] = true
		wg.Add(1)
		goAsk(func() {
			defer wg.Done()
			for len(items) > 0 {
				chunk := takeChunk(items)
				items = items[len(chunk):]
				res, err := d.batchPut(sendCtx, v, n, chunk)
				mu.Lock()
				for i, it := range chunk {
					ne := NodeError{Err: err}
					var r wire.BatchResult
					if err == nil {
						if r = res[i]; r.Status != wire.StatusOK {
							ne.Err = statusErr(r.Status, r.Message)
						}
					}
					if ne.Err != nil {
						ne.Node = v.nodeName(n) // a peer ID's text costs a base58 encoding
					}
					it.a.t.answer(ne, v.peers[n], coding.Version{HLC: r.HeldHLC, Writer: r.HeldWriter}, r.Kept)
				}
				mu.Unlock()
			}
			done <- n
		})
	}
	// Shards held back from backlogged slow nodes are sent after all once
	// a write cannot make its quorum without them.
	unsent := d.slowBacklogged(v, perNode)
	for n, items := range perNode {
		if unsent[n] {
			for _, it := range items {
				it.a.t.heldBack++
			}
			continue
		}
		send(n, items)
	}
	every := func(f func(t *tally) bool) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range atts {
			if !f(&a.t) {
				return false
			}
		}
		return true
	}
	onlySlowLeft := func() bool {
		for n := range pending {
			if !d.client.Slow(v.peers[n]) {
				return false
			}
		}
		return true
	}
	var hedge <-chan time.Time
wait:
	for len(pending) > 0 {
		select {
		case n := <-done:
			delete(pending, n)
		case <-hedge:
			break wait
		}
		switch {
		case len(unsent) > 0 && !every(func(t *tally) bool { return !t.needsHeldBack() }):
			for n := range unsent {
				for _, it := range perNode[n] {
					it.a.t.heldBack--
				}
				send(n, perNode[n])
			}
			clear(unsent)
		case len(pending) > 0 && every((*tally).quorate):
			if onlySlowLeft() {
				break wait
			}
			if hedge == nil {
				t := time.NewTimer(d.opts.HedgeAfter)
				defer t.Stop()
				hedge = t.C
			}
		}
	}
	sending := map[*attempt]int{} // shards still on their way, by write
	for n := range pending {
		for _, it := range perNode[n] {
			sending[it.a]++
		}
	}
	mu.Lock()
	for n := range unsent {
		for _, it := range perNode[n] {
			it.a.t.answer(NodeError{Node: v.nodeName(n), Err: errSlow}, "", coding.Version{}, false)
		}
	}
	moved := d.view.Load() != v
	dropped := map[*attempt]int{} // acknowledged writes: how many of kept were told
	for _, a := range atts {
		t, w := &a.t, a.w
		if !t.newer.IsZero() {
			d.clock.Observe(t.newer)
		}
		vd := t.verdict(moved)
		quorumErr := func() error {
			return &QuorumError{Op: w.op, Key: w.key, Stored: t.stored, Quorum: t.quorum, Failed: slices.Clone(t.failed)}
		}
		switch {
		case vd == failed:
			w.err = quorumErr()
		case vd == writeAgain && t.quorate():
			again = append(again, w)
			w.err = fmt.Errorf("%s %s: %w: a node held a newer version after each of %d attempts (other writers keep writing the key); retry",
				w.op, w.key, ErrQuorum, maxOrdered)
		case vd == writeAgain:
			again = append(again, w)
			w.err = quorumErr()
		default:
			w.err = nil
			if len(t.failed) > 0 || sending[a] > 0 {
				d.degraded.report(w.op, w.key, t.stored, t.width, sending[a], t.failed)
			}
			d.dropOlder(w.key, t.ver, t.kept)
			d.supersede(v, w.key, t.ver, t.width, t.kept)
			dropped[a] = len(t.kept)
		}
	}
	mu.Unlock()
	release := func() {
		for _, a := range atts {
			coding.Release(a.shards)
		}
	}
	if len(pending) == 0 {
		sent()
		release()
		return again
	}
	// Answers still on their way may say a node kept a previous shard:
	// for acknowledged writes it goes once they arrive.
	go func() {
		wg.Wait()
		sent()
		release()
		mu.Lock()
		defer mu.Unlock()
		for a, n := range dropped {
			d.dropOlder(a.w.key, a.t.ver, a.t.kept[n:])
		}
	}()
	return again
}

// maxSlowInFlight bounds the writes left waiting on a node marked slow, so
// a hung node holds few writes' buffers: past it, writes that can make
// their quorum without it do not send it their shard (repair restores it).
const maxSlowInFlight = 64

// errSlow is the error of a shard not sent to a node marked slow that
// already has maxSlowInFlight requests unanswered.
var errSlow = errors.New("not sent: the node has left requests unanswered past the hedge and has too many in flight")

// slowBacklogged returns the nodes of perNode that are marked slow with
// maxSlowInFlight requests in flight, or none unless every write of the
// round can make its quorum without them.
func (d *Datastore) slowBacklogged(v *view, perNode map[int][]nodeShard) map[int]bool {
	out := map[int]bool{}
	lost := map[*attempt]int{}
	for n, items := range perNode {
		if p := v.peers[n]; d.client.Slow(p) && d.client.InFlight(p) >= maxSlowInFlight {
			out[n] = true
			for _, it := range items {
				lost[it.a]++
			}
		}
	}
	for a, l := range lost {
		if a.t.width-l < a.t.quorum {
			return map[int]bool{}
		}
	}
	return out
}

// takeChunk returns the leading items that fit one batch request.
func takeChunk(items []nodeShard) []nodeShard {
	size := 0
	for i, it := range items {
		size += it.shard.Size()
		if i > 0 && (size > batchRequestBytes || i >= wire.MaxBatch) {
			return items[:i]
		}
	}
	return items
}

// batchPut sends shards to node n in one request and returns one result
// per shard. The last shard's data goes out from where the encoder put
// it, so a lone write's shard is not copied.
func (d *Datastore) batchPut(ctx context.Context, v *view, n int, items []nodeShard) ([]wire.BatchResult, error) {
	if v.down[n] {
		return nil, errDown
	}
	size := 16
	for _, it := range items {
		size += 4 + it.shard.Size()
	}
	last := items[len(items)-1].shard
	body := wire.NewBody(make([]byte, 0, size-len(last.Data)), wire.OpBatchPut).U64(v.c.Map.Epoch).U32(uint32(len(items))).Bytes()
	for _, it := range items {
		body = binary.BigEndian.AppendUint32(body, uint32(it.shard.Size()))
		if it.shard == last {
			body = last.Header.AppendBinary(body)
		} else {
			body = it.shard.AppendBinary(body)
		}
	}
	resp, err := d.client.DoBody(ctx, v.peers[n], wire.OpBatchPut, body, last.Data)
	if err != nil {
		return nil, err
	}
	if resp.Status == wire.StatusStaleEpoch {
		// These shards fail; writeRound writes them again by the new map.
		if err := d.refreshFrom(ctx, v.peers[n]); err != nil {
			return nil, err
		}
	}
	if resp.Status != wire.StatusOK {
		return nil, statusError(resp)
	}
	res, err := wire.DecodeBatchPayload(resp.Payload)
	if err != nil {
		return nil, err
	}
	if len(res) != len(items) {
		return nil, fmt.Errorf("batch put: %d results for %d shards", len(res), len(items))
	}
	return res, nil
}

// supersede tells the owners past the width positions of an acknowledged
// version (a small value's replicas) to drop their older shards of key: a
// small value written over a large one would leave the large one readable
// there while the replicas are out of reach. Only an overwrite, shown by
// nodes that kept older versions, needs it.
func (d *Datastore) supersede(v *view, key string, ver coding.Version, width int, kept []peer.ID) {
	owners := v.owners(key)
	if len(kept) == 0 || width >= len(owners) {
		return
	}
	for _, n := range owners[width:] {
		if !v.down[n] {
			d.notify(v.peers[n], wire.OpSupersede, wire.ShardRef{Key: key, Pos: uint8(width), HLC: ver.HLC, Writer: ver.Writer})
		}
	}
}

// dropOlder tells the nodes that kept older versions of key while storing
// version ver that ver is acknowledged, so they drop the older versions.
func (d *Datastore) dropOlder(key string, ver coding.Version, nodes []peer.ID) {
	for _, p := range nodes {
		d.notify(p, wire.OpDropOlder, wire.ShardRef{Key: key, HLC: ver.HLC, Writer: ver.Writer})
	}
}
