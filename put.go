package dscluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/transport"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// Put stores value under key. It returns once the write quorum of shards is
// durable; see the package doc.
func (d *Datastore) Put(ctx context.Context, key ds.Key, value []byte) error {
	k := key.String()
	if len(k) > coding.MaxKeyLen {
		return fmt.Errorf("put %.64s…: %w (%d bytes, limit %d)", k, ErrKeyTooLong, len(k), coding.MaxKeyLen)
	}
	if len(value) > MaxValueSize {
		return fmt.Errorf("put %s: %w (%d bytes, limit %d)", k, ErrValueTooLarge, len(value), MaxValueSize)
	}
	v := d.view.Load()
	p := v.policyFor(len(value))
	shards, err := coding.Encode(k, value, p, d.clock.Next())
	if err != nil {
		return fmt.Errorf("put %s: %w", k, err)
	}
	return d.writeOrdered(ctx, v, "put", k, shards, v.c.Quorum(p), func(ver coding.Version) ([]*coding.Shard, error) {
		return coding.Encode(k, value, p, ver)
	})
}

// writeOrdered writes shards (and releases them) and, while a node already
// held a version at least as new (another front end wrote within the same
// clock tick, or with a clock ahead of ours), writes again with a version
// after it: a write that starts after another one returned must win,
// whatever the clocks say. An attempt is acknowledged once no node held a
// newer version, or once its own version alone holds a majority quorum
// (writeShards): answers for a newer version do not count toward it, or an
// acknowledged write could rest on a newer one that then failed and was
// undone, and be left too scarce to read. Writers racing on one key pause
// a random moment between attempts, and give up with ErrQuorum after
// maxOrdered.
func (d *Datastore) writeOrdered(ctx context.Context, v *view, op, key string, shards []*coding.Shard, quorum int,
	reencode func(coding.Version) ([]*coding.Shard, error)) error {
	for attempt := 1; ; attempt++ {
		newer, err := d.writeShards(ctx, v, op, key, shards, quorum)
		if err != nil || newer.IsZero() {
			return err
		}
		if attempt == maxOrdered {
			return fmt.Errorf("%s %s: %w: a node held a newer version after each of %d attempts (other writers keep writing the key); retry",
				op, key, ErrQuorum, attempt)
		}
		d.clock.Observe(newer)
		if attempt > 1 {
			t := time.NewTimer(rand.N(time.Duration(attempt) * time.Millisecond))
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%s %s: %w", op, key, ctx.Err())
			case <-t.C:
			}
		}
		if shards, err = reencode(d.clock.Next()); err != nil {
			return fmt.Errorf("%s %s: %w", op, key, err)
		}
	}
}

// absentEverywhere reports whether every position of key's slot either
// answers within HedgeAfter that it holds no entry of key or was certainly
// not reached (marked down in this front end, or its dial failed). Get
// takes a key for absent once two positions say so (no acknowledged write
// can miss both), but they may have lost their shards (bit rot scrubbed,
// not yet repaired) while the others hold the value: a delete that wrote
// nothing then would see it come back once repaired. A position that
// answers with an entry, or that was reached but did not answer in time
// (or is marked slow, and is not asked), may hold the value: the delete
// writes its tombstone. Deleting a missing key thus stays no error while
// nodes are down, and a slow node costs a tombstone, never a value that
// comes back.
func (d *Datastore) absentEverywhere(ctx context.Context, key string) bool {
	v := d.view.Load()
	owners := v.owners(key)
	ctx, cancel := context.WithTimeout(ctx, d.opts.HedgeAfter)
	defer cancel()
	ans := askAll(v.c.Policy.Width(), func(pos int) headerAnswer {
		if d.client.Slow(v.peers[owners[pos]]) {
			return headerAnswer{state: fetchFailed, err: errSlow}
		}
		return d.askHeaderOf(transport.SkipUnreachable(ctx), v, key, owners, pos, false)
	})
	for _, a := range ans {
		notReached := errors.Is(a.err, errDown) || errors.Is(a.err, transport.ErrUnreachable) || errors.Is(a.err, transport.ErrDialFailed)
		if a.state != fetchNotFound && !(a.state == fetchFailed && notReached) {
			return false
		}
	}
	return true
}

// maxOrdered bounds writeOrdered's attempts.
const maxOrdered = 8

// Delete removes key by writing a tombstone version to every shard position.
// Deleting a missing key is not an error. A key whose newest entry is
// already a tombstone is deleted again: that tombstone may be what is left
// of a delete that failed its quorum, and this one must be durable once
// acknowledged. A key Get would find absent gets a tombstone all the same
// when a position that answers holds an entry of it (absentEverywhere).
func (d *Datastore) Delete(ctx context.Context, key ds.Key) error {
	k := key.String()
	if len(k) > coding.MaxKeyLen {
		return nil // such a key cannot have been stored
	}
	le, found, err := d.probe(ctx, k)
	var ue *UnavailableError
	switch {
	case errors.As(err, &ue) && ue.Found > 0:
		// Shards of writes that failed and no readable version: the
		// tombstone hides them.
	case err != nil:
		return opError("delete", k, err)
	case !found && !le.Tombstone && d.absentEverywhere(ctx, k):
		return nil // no entry: nothing was ever acknowledged under key
	}
	v := d.view.Load()
	p := v.c.Policy
	return d.writeOrdered(ctx, v, "delete", k, coding.Tombstone(k, p, d.clock.Next()), v.c.Quorum(p), func(ver coding.Version) ([]*coding.Shard, error) {
		return coding.Tombstone(k, p, ver), nil
	})
}

// maxSlowInFlight bounds the writes left waiting on a node marked slow:
// past it, writes do not send it their shard (repair restores those), so a
// hung node holds at most this many writes' buffers until they time out. A
// write skips such nodes only when the others can make its quorum.
const maxSlowInFlight = 64

// backlogged reports whether p is marked slow with maxSlowInFlight
// requests unanswered: writes hold its shards back when they can.
func (d *Datastore) backlogged(p peer.ID) bool {
	return d.client.Slow(p) && d.client.InFlight(p) >= maxSlowInFlight
}

// errSlow is the error of a shard not sent to a node marked slow that
// already has maxSlowInFlight requests unanswered.
var errSlow = errors.New("not sent: the node has left requests unanswered past the hedge and has too many in flight")

// writeShards sends shard i to node i of the key's slot, all in parallel,
// and waits for every answer (each bounded by the request timeout), or,
// once the write quorum has answered, for HedgeAfter more, or not at all
// when the nodes still to answer are marked slow: a node that hangs does
// not hold the write, its shard is still sent, and repair restores it if
// it never lands. It returns the newest version a node reported holding
// instead of ours (zero when none did), and releases the shards once every
// request is done with them.
func (d *Datastore) writeShards(ctx context.Context, v *view, op, key string, shards []*coding.Shard, quorum int) (coding.Version, error) {
	owners := v.owners(key)
	sendCtx, keep, sent := outliving(ctx)
	defer keep()
	type answer struct {
		pos  int
		held coding.Version
		kept peer.ID // the node that kept the previous shard, or ""
		err  error
	}
	answers := make(chan answer, len(shards))
	waiting := make([]bool, len(shards)) // by position: sent, not answered
	pending := 0
	send := func(i int) {
		waiting[i] = true
		pending++
		go func(n int, sh *coding.Shard) {
			held, kept, err := d.putShard(sendCtx, v, n, sh)
			answers <- answer{i, held, kept, err}
		}(int(owners[i]), shards[i])
	}
	// Slow nodes with a full backlog are not sent their shard while the
	// others can make the quorum: when most nodes are slow (an overloaded
	// cluster) writes go everywhere, and when other nodes fail, the shards
	// held back are sent after all.
	var unsent []int
	for i := range shards {
		if d.backlogged(v.peers[owners[i]]) {
			unsent = append(unsent, i)
		}
	}
	if len(shards)-len(unsent) < quorum {
		unsent = nil
	}
	for i := range shards {
		if !slices.Contains(unsent, i) {
			send(i)
		}
	}
	// onlySlowLeft reports whether every node still to answer is marked slow.
	onlySlowLeft := func() bool {
		for i, w := range waiting {
			if w && !d.client.Slow(v.peers[owners[i]]) {
				return false
			}
		}
		return true
	}
	var (
		stored  int // answers that the node holds this version or a newer one
		holding int // of them, this version
		newer   coding.Version
		hedge   <-chan time.Time
		failed  []NodeError
		kept    []peer.ID // nodes that kept the previous value's shard
	)
collect:
	for pending > 0 {
		select {
		case a := <-answers:
			pending--
			waiting[a.pos] = false
			if a.err != nil {
				failed = append(failed, NodeError{Node: v.nodeName(int(owners[a.pos])), Err: a.err})
				if stored+pending < quorum {
					for _, i := range unsent {
						send(i)
					}
					unsent = nil
				}
				continue
			}
			stored++
			if a.kept != "" {
				kept = append(kept, a.kept)
			}
			// An equal version is our own write seen twice (a retry).
			if !shards[a.pos].Header.Version.Less(a.held) {
				holding++
			} else if newer.Less(a.held) {
				newer = a.held
			}
			if stored >= quorum && pending > 0 {
				if onlySlowLeft() {
					break collect
				}
				if hedge == nil {
					t := time.NewTimer(d.opts.HedgeAfter)
					defer t.Stop()
					hedge = t.C
				}
			}
		case <-hedge:
			break collect
		}
	}
	for _, i := range unsent {
		failed = append(failed, NodeError{Node: v.nodeName(int(owners[i])), Err: errSlow})
	}
	h := &shards[0].Header // read before the shards are released
	ver, tomb, k := h.Version, h.Tombstone, h.Policy.DataShards
	if !newer.IsZero() && ownsQuorum(holding, quorum, len(shards)) {
		d.clock.Observe(newer)
		newer = coding.Version{}
	}
	// The previous shards are dropped once the write is acknowledged, and
	// not when a node holds a newer version: then this write is written
	// again after it, and may yet fail.
	acked := stored >= quorum && newer.IsZero()
	if pending == 0 {
		sent()
		coding.Release(shards)
	} else {
		go func(n int) {
			var late []peer.ID
			for ; n > 0; n-- {
				if a := <-answers; a.err == nil && a.kept != "" {
					late = append(late, a.kept)
				}
			}
			sent()
			coding.Release(shards)
			if acked {
				d.dropPrevs(key, ver, late)
			}
		}(pending)
	}
	// A failed write, or one about to be written again after a newer
	// version (that attempt keeps this one's shard as the previous one),
	// is undone while too scarce for anyone to have read it.
	if (stored < quorum || !newer.IsZero()) && !tomb && holding < k {
		u := undos{}
		u.add(key, ver, kept)
		d.undo(ctx, u)
	}
	if stored < quorum {
		return newer, &QuorumError{Op: op, Key: key, Stored: stored, Quorum: quorum, Failed: failed}
	}
	if len(failed) > 0 || pending > 0 {
		d.degraded.report(op, key, stored, len(shards), pending, failed)
	}
	if acked {
		d.dropPrevs(key, ver, kept)
		d.supersede(v, key, ver, len(shards), kept)
	}
	return newer, nil
}

// ownsQuorum reports whether a version that holding of its width positions
// hold (answers for newer versions not counted) is acknowledged even though
// some nodes held a newer one: a quorum that is a majority of the positions
// no other version can also hold, so the newer one is a concurrent write's,
// which may be ordered after this one.
func ownsQuorum(holding, quorum, width int) bool {
	return holding >= quorum && 2*quorum > width
}

// supersede tells the nodes past the positions of an acknowledged version
// of width positions (the replicas of a small value) to drop older shards
// of key (OpSupersede): a small value written over a large one leaves the
// large one's shards there, whole enough to read while the replicas are
// out of reach. Only overwrites need it, which the nodes that kept a
// previous shard show; in the background, as dropPrevs. A node that misses
// it keeps those shards until repair drops them.
func (d *Datastore) supersede(v *view, key string, ver coding.Version, width int, kept []peer.ID) {
	owners := v.owners(key)
	if len(kept) == 0 || width >= len(owners) {
		return
	}
	req := &wire.Request{Op: wire.OpSupersede, Drop: []wire.ShardRef{{Key: key, Pos: uint8(width), HLC: ver.HLC, Writer: ver.Writer}}}
	for _, n := range owners[width:] {
		if v.down[n] {
			continue
		}
		p := v.peers[n]
		d.background(func(ctx context.Context) {
			if _, err := d.client.Do(ctx, p, req); err != nil {
				log.Debugw("drop older shards past a narrower version", "key", key, "node", p.String(), "err", err)
			}
		})
	}
}

// dropPrevs tells the nodes that kept the previous value's shard of key
// while storing version ver that ver is acknowledged, so they drop it (in
// the background: the write has returned). A node that misses it keeps the
// shard until the key's next write or delete.
func (d *Datastore) dropPrevs(key string, ver coding.Version, nodes []peer.ID) {
	if len(nodes) == 0 {
		return
	}
	req := &wire.Request{Op: wire.OpDropPrev, Drop: []wire.ShardRef{{Key: key, HLC: ver.HLC, Writer: ver.Writer}}}
	for _, p := range nodes {
		d.background(func(ctx context.Context) {
			if _, err := d.client.Do(ctx, p, req); err != nil {
				log.Debugw("drop a previous shard", "key", key, "node", p.String(), "err", err)
			}
		})
	}
}

// undoChunk bounds the keys of one undo request: a node restores them one
// at a time, each a durable write, within one request timeout.
const undoChunk = 256

// undos lists, per node, the failed writes (key and version) for which it
// kept the shard of the value the write replaced.
type undos map[peer.ID][]wire.ShardRef

func (u undos) add(key string, ver coding.Version, nodes []peer.ID) {
	for _, p := range nodes {
		u[p] = append(u[p], wire.ShardRef{Key: key, HLC: ver.HLC, Writer: ver.Writer})
	}
}

// undo takes back failed writes before their error goes to the caller,
// and attempts about to be written again after a newer version before the
// next attempt: each node that kept the shard such a write replaced puts
// it back as its current one (OpUndo), so the key is as it was before. A
// failed overwrite left alone holds the older value only in previous
// shards, one write deep: a second failed overwrite of the same positions
// (a client retrying while nodes are down) used to lose it. Callers undo
// only writes that reached fewer than k positions: no read can have
// returned those, so no reader sees the key go back, and a failed write on
// k or more is readable, and newest, so it hides nothing. Undo is best
// effort: a node that misses it, or answers "unknown op" (an older
// version), keeps the failed version, which readers skip while it is too
// scarce to read and repair rolls back. Each request waits at most a
// request timeout (not the caller's context, which may be what failed the
// write), and carries at most undoChunk keys. Nodes that stored the write
// without keeping a shard have nothing to put back and are not asked.
func (d *Datastore) undo(ctx context.Context, u undos) {
	if d.opts.KeepFailedWrites || len(u) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for p, refs := range u {
		wg.Go(func() {
			for len(refs) > 0 {
				chunk := refs[:min(len(refs), undoChunk)]
				refs = refs[len(chunk):]
				resp, err := d.client.Do(ctx, p, &wire.Request{Op: wire.OpUndo, Drop: chunk})
				if err == nil && resp.Status != wire.StatusOK {
					err = statusError(resp)
				}
				if err != nil {
					log.Infow("undo a failed write: the node keeps it for repair", "node", p.String(), "keys", len(chunk), "first", chunk[0].Key, "err", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// putShard stores sh on node n. When the node holds the key at a newer or
// equal version it acknowledges without storing and says which: held. kept
// is the node that stored it and kept the previous value's shard, or "".
func (d *Datastore) putShard(ctx context.Context, v *view, n int, sh *coding.Shard) (held coding.Version, kept peer.ID, err error) {
	if v.down[n] {
		return held, kept, errDown
	}
	for attempt := 0; ; attempt++ {
		// The frame is the shard's encoding (header, then data) after the
		// op's fields; the data goes out from the encoder's buffer.
		head := wire.NewBody(make([]byte, 0, 16+sh.Header.Size()), wire.OpPut).U64(v.c.Map.Epoch).Bytes()
		head = sh.Header.AppendBinary(head)
		resp, err := d.client.DoBody(ctx, v.peers[n], wire.OpPut, head, sh.Data)
		if err != nil {
			return held, kept, err
		}
		switch {
		case resp.Status == wire.StatusOK:
			if hlc, w, ok := wire.ParseSuperseded(resp.Message); ok {
				held = coding.Version{HLC: hlc, Writer: w}
			}
			if resp.Message == wire.PrevKept {
				kept = v.peers[n]
			}
			return held, kept, nil
		case resp.Status == wire.StatusStaleEpoch && attempt == 0:
			// The node has a newer map: adopt it and send the shard (which
			// does not depend on the epoch) to the owner of its position
			// in that map, which may be another node.
			if err := d.refreshFrom(ctx, v.peers[n]); err != nil {
				return held, kept, err
			}
			v = d.view.Load()
			owners := v.owners(sh.Header.Key)
			if int(sh.Header.Index) >= len(owners) {
				return held, kept, fmt.Errorf("shard %d: the new map has %d positions per slot", sh.Header.Index, len(owners))
			}
			if n = int(owners[sh.Header.Index]); v.down[n] {
				return held, kept, errDown
			}
			continue
		}
		return held, kept, statusError(resp)
	}
}
