package dscluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// Batch sizing: a batch commit encodes up to batchGroupBytes of values at
// a time and sends each node its shards of the group in requests of at most
// batchRequestBytes, so memory stays bounded whatever the batch holds.
const (
	batchGroupBytes   = 32 << 20
	batchRequestBytes = 8 << 20
)

// Batch returns a batch whose operations are applied by Commit. Puts are
// grouped per node: one request carries many shards, so a batch of small
// blocks costs a few round trips instead of one per shard. The last
// operation on a key within a batch wins.
func (d *Datastore) Batch(ctx context.Context) (ds.Batch, error) {
	return &batch{d: d, ops: make(map[ds.Key]batchOp)}, nil
}

type batchOp struct {
	del   bool
	value []byte
}

type batch struct {
	d     *Datastore
	mu    sync.Mutex
	ops   map[ds.Key]batchOp
	order []ds.Key
}

func (b *batch) Put(ctx context.Context, key ds.Key, value []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.ops[key]; !ok {
		b.order = append(b.order, key)
	}
	// go-datastore lets callers reuse value after Put returns.
	b.ops[key] = batchOp{value: append([]byte(nil), value...)}
	return nil
}

func (b *batch) Delete(ctx context.Context, key ds.Key) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.ops[key]; !ok {
		b.order = append(b.order, key)
	}
	b.ops[key] = batchOp{del: true}
	return nil
}

// Commit applies every operation and returns the errors of those that
// failed, joined. Operations that succeeded stay applied.
func (b *batch) Commit(ctx context.Context) error {
	b.mu.Lock()
	ops, order := b.ops, b.order
	b.ops, b.order = make(map[ds.Key]batchOp), nil
	b.mu.Unlock()

	var errs []error
	var group []ds.Key
	size := 0
	flush := func() {
		errs = append(errs, b.d.putGroup(ctx, group, ops)...)
		group, size = group[:0], 0
	}
	var dels []ds.Key
	for _, k := range order {
		op := ops[k]
		if op.del {
			dels = append(dels, k)
			continue
		}
		group = append(group, k)
		size += len(op.value)
		if size >= batchGroupBytes {
			flush()
		}
	}
	if len(group) > 0 {
		flush()
	}
	errs = append(errs, b.d.deleteMany(ctx, dels)...)
	if len(errs) > 0 {
		return fmt.Errorf("batch commit: %d of %d operations failed: %w", len(errs), len(order), errors.Join(errs...))
	}
	return nil
}

// deleteMany deletes keys in parallel.
func (d *Datastore) deleteMany(ctx context.Context, keys []ds.Key) []error {
	sem := make(chan struct{}, d.opts.BatchConcurrency)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, k := range keys {
		sem <- struct{}{}
		wg.Add(1)
		go func(k ds.Key) {
			defer func() { <-sem; wg.Done() }()
			if err := d.Delete(ctx, k); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}(k)
	}
	wg.Wait()
	return errs
}

// groupWrite tracks one value's shards within a batch commit.
type groupWrite struct {
	dsKey   ds.Key
	key     string
	width   int // shards of the value
	k       int // shards a read needs
	quorum  int
	stored  int  // answers that the node holds this version or a newer one
	holding int  // of them, this version
	newer   bool // a node held a newer version: write again, ordered
	failed  []NodeError
	ver     coding.Version
	kept    []peer.ID // nodes that kept the previous value's shard (dropPrevs)
}

type nodeShard struct {
	w     *groupWrite
	shard *coding.Shard
}

// putGroup encodes the values of keys and sends every node its shards in
// batch requests, all nodes in parallel. Like writeShards, it does not wait
// for nodes marked slow once every value has its quorum.
func (d *Datastore) putGroup(ctx context.Context, keys []ds.Key, ops map[ds.Key]batchOp) []error {
	v := d.view.Load()
	var errs []error
	writes := make([]*groupWrite, 0, len(keys))
	perNode := make(map[int][]nodeShard)
	for _, key := range keys {
		k, val := key.String(), ops[key].value
		if len(k) > coding.MaxKeyLen {
			errs = append(errs, fmt.Errorf("put %.64s…: %w (%d bytes, limit %d)", k, ErrKeyTooLong, len(k), coding.MaxKeyLen))
			continue
		}
		if len(val) > MaxValueSize {
			errs = append(errs, fmt.Errorf("put %s: %w (%d bytes, limit %d)", k, ErrValueTooLarge, len(val), MaxValueSize))
			continue
		}
		p := v.policyFor(len(val))
		shards, err := coding.Encode(k, val, p, d.clock.Next())
		if err != nil {
			errs = append(errs, fmt.Errorf("put %s: %w", k, err))
			continue
		}
		w := &groupWrite{dsKey: key, key: k, width: len(shards), k: p.DataShards, quorum: v.c.Quorum(p), ver: shards[0].Header.Version}
		writes = append(writes, w)
		owners := v.owners(k)
		for i, sh := range shards {
			n := int(owners[i])
			perNode[n] = append(perNode[n], nodeShard{w: w, shard: sh})
		}
	}
	sendCtx, keep, sent := outliving(ctx)
	defer keep()
	var (
		mu      sync.Mutex // guards the groupWrites
		wg      sync.WaitGroup
		done    = make(chan int, len(perNode)) // a node whose requests all ended
		pending = map[int]bool{}
	)
	send := func(n int, items []nodeShard) {
		pending[n] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			for len(items) > 0 {
				chunk := takeChunk(items)
				items = items[len(chunk):]
				res, err := d.batchPut(sendCtx, v, n, chunk)
				mu.Lock()
				for i, it := range chunk {
					switch {
					case err != nil:
						it.w.failed = append(it.w.failed, NodeError{Node: v.nodeName(n), Err: err})
					case res[i].Status != wire.StatusOK:
						it.w.failed = append(it.w.failed, NodeError{Node: v.nodeName(n), Err: statusErr(res[i].Status, res[i].Message)})
					default:
						it.w.stored++
						if res[i].Message == wire.PrevKept {
							it.w.kept = append(it.w.kept, v.peers[n])
						}
						if hlc, wr, ok := wire.ParseSuperseded(res[i].Message); ok && it.shard.Header.Version.Less(coding.Version{HLC: hlc, Writer: wr}) {
							d.clock.Observe(coding.Version{HLC: hlc, Writer: wr})
							it.w.newer = true
						} else {
							it.w.holding++
						}
					}
				}
				mu.Unlock()
			}
			done <- n
		}()
	}
	// As writeShards: a slow node with a full backlog is not sent its
	// shards while every write can make its quorum on the others, nobody
	// waits for slow nodes once every write has its quorum, and the rest
	// get HedgeAfter.
	unsent := d.slowBacklogged(v, perNode)
	for n, items := range perNode {
		if !unsent[n] {
			send(n, items)
		}
	}
	allQuorum := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, w := range writes {
			if w.stored < w.quorum {
				return false
			}
		}
		return true
	}
	// needUnsent reports a value that cannot make its quorum without the
	// shards held back: its failures and held-back shards leave too few.
	needUnsent := func() bool {
		held := map[*groupWrite]int{}
		for n := range unsent {
			for _, it := range perNode[n] {
				held[it.w]++
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for w, h := range held {
			if w.width-len(w.failed)-h < w.quorum {
				return true
			}
		}
		return false
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
		case len(unsent) > 0 && needUnsent():
			// Other nodes failed: the shards held back may make the quorum.
			for n := range unsent {
				send(n, perNode[n])
			}
			clear(unsent)
		case len(pending) > 0 && allQuorum():
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
	release := func() {
		for _, items := range perNode {
			for _, it := range items {
				if it.shard.Header.Index == 0 {
					coding.Release([]*coding.Shard{it.shard})
				}
			}
		}
	}
	sending := map[*groupWrite]int{} // shards still on their way, by value
	for n := range pending {
		for _, it := range perNode[n] {
			sending[it.w]++
		}
	}
	mu.Lock()
	for n := range unsent {
		for _, it := range perNode[n] {
			it.w.failed = append(it.w.failed, NodeError{Node: v.nodeName(n), Err: errSlow})
		}
	}
	var again []ds.Key
	failed := undos{}
	dropped := map[*groupWrite]int{} // acknowledged values: how many of kept were dropped
	moved := d.view.Load() != v
	for _, w := range writes {
		newer := w.newer && !ownsQuorum(w.holding, w.quorum, w.width)
		if (w.stored < w.quorum || newer) && w.holding < w.k {
			// Undone before anything else, also before a write again:
			// that one keeps this version's shard as the previous one.
			failed.add(w.key, w.ver, w.kept)
		}
		if newer && w.stored >= w.quorum {
			again = append(again, w.dsKey)
			continue
		}
		if w.stored < w.quorum && moved {
			// Nodes refused the shards for a stale map (a rebalance was
			// committed), or the map was only refreshed: a plain Put
			// sends them by the current one.
			again = append(again, w.dsKey)
			continue
		}
		if w.stored < w.quorum {
			errs = append(errs, &QuorumError{Op: "put", Key: w.key, Stored: w.stored, Quorum: w.quorum, Failed: slices.Clone(w.failed)})
			continue
		}
		if len(w.failed) > 0 || sending[w] > 0 {
			d.degraded.report("put", w.key, w.stored, w.width, sending[w], w.failed)
		}
		d.dropPrevs(w.key, w.ver, w.kept)
		d.supersede(v, w.key, w.ver, w.width, w.kept)
		dropped[w] = len(w.kept)
	}
	mu.Unlock()
	d.undo(ctx, failed)
	if len(pending) == 0 {
		sent()
		release()
	} else {
		// Answers still on their way may say a node kept a previous
		// shard: for acknowledged values it goes once they arrive.
		go func() {
			wg.Wait()
			sent()
			release()
			mu.Lock()
			defer mu.Unlock()
			for w, n := range dropped {
				d.dropPrevs(w.key, w.ver, w.kept[n:])
			}
		}()
	}
	// Another writer got there first within our clock's reach, or the map
	// moved: a plain Put orders these values after it, by the new map.
	for _, k := range again {
		if err := d.Put(ctx, k, ops[k].value); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// slowBacklogged returns the nodes of perNode that are marked slow with
// maxSlowInFlight requests in flight, when every write of the group can
// make its quorum without them (else none).
func (d *Datastore) slowBacklogged(v *view, perNode map[int][]nodeShard) map[int]bool {
	out := map[int]bool{}
	for n := range perNode {
		if d.backlogged(v.peers[n]) {
			out[n] = true
		}
	}
	if len(out) == 0 {
		return out
	}
	lost := map[*groupWrite]int{}
	for n := range out {
		for _, it := range perNode[n] {
			lost[it.w]++
		}
	}
	for w, l := range lost {
		if w.width-l < w.quorum {
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

// batchPut sends shards to node n in one request and returns one result per
// shard. The shards are encoded straight into the request frame.
func (d *Datastore) batchPut(ctx context.Context, v *view, n int, items []nodeShard) ([]wire.BatchResult, error) {
	if v.down[n] {
		return nil, errDown
	}
	size := 16
	for _, it := range items {
		size += 4 + it.shard.Size()
	}
	body := wire.NewBody(make([]byte, 0, size), wire.OpBatchPut).U64(v.c.Map.Epoch).U32(uint32(len(items))).Bytes()
	for _, it := range items {
		body = binary.BigEndian.AppendUint32(body, uint32(it.shard.Size()))
		body = it.shard.AppendBinary(body)
	}
	resp, err := d.client.DoBody(ctx, v.peers[n], wire.OpBatchPut, body, nil)
	if err != nil {
		return nil, err
	}
	if resp.Status == wire.StatusStaleEpoch {
		// These shards fail here; putGroup writes the values that miss
		// their quorum again by the new map.
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
