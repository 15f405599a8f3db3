package dscluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/transport"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// fetchState is what one shard position answered.
type fetchState uint8

const (
	fetchNone     fetchState = iota // not asked
	fetchOK                         // a valid shard
	fetchNotFound                   // the node holds nothing for the key
	fetchFailed                     // unreachable, corrupt or invalid
)

type fetched struct {
	state fetchState
	shard *coding.Shard // aliases frame
	err   error
	frame []byte // the response buffer, back to framePool after the Get
}

// framePool recycles the response buffers of shard reads: Decode copies
// the value out, so once Get returns no byte of them is referenced.
var framePool sync.Pool

// maxPooledFrame keeps buffers of huge shards out of the pool.
const maxPooledFrame = 4 << 20

func getFrame() []byte {
	if b, ok := framePool.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return nil
}

func putFrames(res []fetched) {
	for i := range res {
		if b := res[i].frame; b != nil && cap(b) <= maxPooledFrame {
			b = b[:0]
			framePool.Put(&b)
		}
		res[i] = fetched{}
	}
}

// Get returns the newest value of key that can be rebuilt; see the package
// doc for the read path and its errors.
func (d *Datastore) Get(ctx context.Context, key ds.Key) (_ []byte, err error) {
	defer d.track("get")(&err)
	k := d.inner(key)
	if len(k) > coding.MaxKeyLen {
		return nil, ds.ErrNotFound
	}
	verify := func([]byte) error { return nil }
	if !d.opts.SkipCIDCheck {
		verify = func(val []byte) error { return checkCID(key, val) }
	}
	val, err := readAgain(ctx, d, func(ctx context.Context, v *view) ([]byte, error) { return d.get(ctx, v, k, verify) })
	if err != nil {
		if cm := failedWith(err, ErrCIDMismatch); cm != nil {
			return nil, cm // says more than a count of shards
		}
		return nil, err
	}
	return val, nil
}

// readAgain runs read by the current map, skipping nodes whose last dial
// failed, and runs it again, once for each reason, when the map moved
// during the read (old owners may have dropped their copies), when skipped
// nodes were needed (they may be back), or when unfilled owners left too
// few positions (repair may have filled them since: lookUpFilled). A node
// is waited for at most once in all that (withTimedOut).
func readAgain[T any](ctx context.Context, d *Datastore, read func(ctx context.Context, v *view) (T, error)) (T, error) {
	ctx = withTimedOut(ctx)
	skip, moved, looked := true, false, false
	for {
		v, readCtx := d.view.Load(), ctx
		if skip {
			readCtx = transport.SkipUnreachable(ctx)
		}
		out, err := read(readCtx, v)
		if !moved && d.view.Load() != v {
			moved = true
			continue
		}
		if skip && failedWith(err, transport.ErrUnreachable) != nil {
			skip = false
			continue
		}
		if !looked && failedWith(err, errUnfilled) != nil && d.lookUpFilled(ctx, v) {
			looked = true
			continue
		}
		return out, err
	}
}

// fillLookupEvery bounds how often lookUpFilled refetches the description.
const fillLookupEvery = time.Second

// lookUpFilled fetches the cluster description again, at most once per
// fillLookupEvery, and reports whether it fills owners that v did not.
func (d *Datastore) lookUpFilled(ctx context.Context, v *view) bool {
	now, last := time.Now().UnixNano(), d.lastFillLookup.Load()
	if now-last >= int64(fillLookupEvery) && d.lastFillLookup.CompareAndSwap(last, now) {
		// A node that hangs must not hold the read up for long.
		ctx, cancel := context.WithTimeout(ctx, fillLookupEvery)
		defer cancel()
		if err := d.refreshAny(ctx); err != nil {
			log.Debugw("look up the cluster description again", "err", err)
		}
	}
	return v.c.Unfilled != nil && !bytes.Equal(d.view.Load().c.Unfilled, v.c.Unfilled)
}

// failedWith returns the first failure of an UnavailableError's positions
// that is target, or nil.
func failedWith(err, target error) error {
	var ue *UnavailableError
	if errors.As(err, &ue) {
		for _, f := range ue.Failed {
			if errors.Is(f.Err, target) {
				return f.Err
			}
		}
	}
	return nil
}

// get reads key k by v. A value verify refuses counts as corrupt: it is
// never served, and an older version may be read instead.
func (d *Datastore) get(ctx context.Context, v *view, k string, verify func([]byte) error) ([]byte, error) {
	owners := v.owners(k)
	p := v.c.Policy
	res := make([]fetched, p.Width())
	defer putFrames(res) // the value is a copy (see coding.Decode)
	var g *versionGroup
	var val []byte
	var err error
	decode := func(g *versionGroup) (err error) {
		shards := make([]*coding.Shard, g.policy.Width())
		for _, pos := range g.pos {
			shards[pos] = res[pos].shard
		}
		if val, err = coding.Decode(shards); err == nil && slices.Contains(shards[:g.policy.DataShards], nil) {
			d.metrics.degraded.Inc()
		}
		if err == nil {
			err = verify(val)
		}
		return err
	}
	askInWaves(d.readOrder(v, owners, p.Width()), readWaves(v), d.opts.HedgeAfter,
		func(pos int) fetched { return d.fetchShard(ctx, v, k, int(owners[pos]), pos, coding.Version{}) },
		func(pos int, f fetched) { res[pos] = f },
		func(final bool) bool {
			var done bool
			val = nil
			g, err, done = d.pick(v, k, owners, fetchedAnswers(res), final, decode)
			return done
		},
		func(pos int) { d.metrics.hedged.Inc(); d.client.MarkSlow(v.peers[owners[pos]]) })
	if g != nil && (g.tomb || err == nil && missedBy(fetchedAnswers(res), g) > 0) {
		d.writeBack(ctx, v, k, g, val)
	}
	if olderMayResolve(err, fetchedAnswers(res)) {
		if older, err, ok := d.valueFromOlder(ctx, v, k, owners, verify); ok {
			return older, err
		}
	}
	return val, err
}

// readOrder is the order in which a read asks the first width positions:
// data before parity, so a healthy read decodes nothing, and nodes marked
// slow last, so a hung node does not cost every read a hedge. Answers are
// judged as a set, so any order is correct.
func (d *Datastore) readOrder(v *view, owners []uint16, width int) []int {
	order := make([]int, 0, width)
	var slow []int
	for pos := 0; pos < width; pos++ {
		if d.client.Slow(v.peers[owners[pos]]) {
			slow = append(slow, pos)
		} else {
			order = append(order, pos)
		}
	}
	return append(order, slow...)
}

// errUnfilled fails a position whose owner holds nothing of a key but
// took it over since repair last filled it (config.Cluster.Vouches).
var errUnfilled = errors.New("holds nothing of the key, but took its position over since repair last filled every owner")

// fetchShard reads key's shard at position pos from node n: of the newest
// version it holds, or of version at unless that is zero (see older.go).
func (d *Datastore) fetchShard(ctx context.Context, v *view, key string, n, pos int, at coding.Version) fetched {
	resp, frame, err := d.doInto(ctx, v, n, &wire.Request{Op: wire.OpGet, Key: key, Pos: uint8(pos), HLC: at.HLC, Writer: at.Writer}, getFrame())
	f := fetched{state: fetchFailed, frame: frame}
	switch {
	case err != nil:
		f.err = err
	case resp.Status == wire.StatusNotFound && !v.c.Vouches(placement.Slot(key), pos):
		f.err = errUnfilled
	case resp.Status == wire.StatusNotFound:
		f.state = fetchNotFound
	case resp.Status != wire.StatusOK:
		f.err = statusError(resp)
	default:
		// The data is verified once, by Decode, which checks every shard it
		// uses and the value's own checksum; the header is checked here.
		sh, err := coding.ParseShardUnverified(resp.Payload)
		switch {
		case err != nil:
			f.err = err
		case sh.Header.Key != key || int(sh.Header.Index) != pos:
			f.err = fmt.Errorf("%w: node sent shard %d of %q for shard %d of %q",
				coding.ErrCorrupt, sh.Header.Index, sh.Header.Key, pos, key)
		default:
			f.state, f.shard = fetchOK, sh
		}
	}
	return f
}

// need is the number of shards that make a version of policy p readable:
// one for a tombstone, which carries no data (as repair counts it).
func need(p coding.Policy, tombstone bool) int {
	if tombstone {
		return 1
	}
	return p.DataShards
}

// missedBy counts the positions whose answers show that version g is not
// there: an older version, or nothing (fetchShard counts "not found" from
// an owner that does not vouch for its position as failed).
func missedBy(a answers, g *versionGroup) int {
	n := 0
	for pos := range min(a.n(), g.policy.Width()) {
		if a.state(pos) == fetchNotFound || a.state(pos) == fetchOK && keptWithout(a.held(pos), g.ver) {
			n++
		}
	}
	return n
}

// writeBack writes version g, which a read is about to serve (val is its
// value; nil for a tombstone), to every position of key unless the read saw
// it on its quorum, so that no later read serves an older version: the
// write-back of a linearizable register read (ABD). A tombstone is served
// from one shard, and a failed write's value from k, which a later read
// that sees one fewer would pass over. Positions that hold g answer
// without writing. The write-back gets twice HedgeAfter: with m nodes down
// or hung the read serves g anyway. A tombstone past the grace is left
// alone: the garbage collector may be purging it.
func (d *Datastore) writeBack(ctx context.Context, v *view, key string, g *versionGroup, val []byte) {
	if len(g.pos) >= v.c.Quorum(g.policy) {
		return // on its quorum already
	}
	var shards []*coding.Shard
	if g.tomb {
		if g.ver.HLC <= d.graceCutoff() {
			return
		}
		shards = coding.Tombstone(key, g.policy, g.ver)
	} else {
		var err error
		if shards, err = coding.Encode(key, val, g.policy, g.ver); err != nil {
			log.Debugw("write back a version a read serves", "key", key, "err", err)
			return
		}
	}
	if len(shards) == 0 || len(shards) > len(v.owners(key)) {
		coding.Release(shards)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*d.opts.HedgeAfter)
	defer cancel()
	w := &write{op: "write back", key: key}
	a := &attempt{w: w, shards: shards, t: newTally(&shards[0].Header, len(shards), v.c.Quorum(g.policy))}
	d.writeRound(ctx, v, []*attempt{a})
	d.metrics.writeBacks.Inc()
	if w.err != nil {
		log.Debugw("a read serves a version it could not make durable", "key", key, "version", g.ver.String(), "err", w.err)
	}
}

// answers is what the positions of one read said.
type answers interface {
	n() int
	state(pos int) fetchState
	failure(pos int) error // of a fetchFailed position
	// version is the header of a fetchOK position's shard.
	version(pos int) (ver coding.Version, p coding.Policy, tomb bool)
	// held lists the versions a fetchOK position holds, newest first: the
	// one version gives, then the older ones a header answer names.
	held(pos int) []held
}

// versionGroup is one version among a read's answers.
type versionGroup struct {
	ver    coding.Version
	policy coding.Policy
	tomb   bool
	pos    []int // the positions that hold a shard of it
}

// groupVersions groups the positions that answered with a shard header by
// version, newest first. A header that disagrees with its version's first
// one, or names a position outside its policy, is left out.
func groupVersions(a answers) []*versionGroup {
	byVer := map[coding.Version]*versionGroup{}
	var groups []*versionGroup
	for pos := 0; pos < a.n(); pos++ {
		if a.state(pos) != fetchOK {
			continue
		}
		ver, p, tomb := a.version(pos)
		g := byVer[ver]
		if g == nil {
			g = &versionGroup{ver: ver, policy: p, tomb: tomb}
			byVer[ver] = g
			groups = append(groups, g)
		}
		if p == g.policy && tomb == g.tomb && pos < p.Width() {
			g.pos = append(g.pos, pos)
		}
	}
	sort.Slice(groups, func(i, j int) bool { return groups[j].ver.Less(groups[i].ver) })
	return groups
}

// pick serves the newest version among a's answers when it has enough
// shards: use (nil: any) is called on it unless it is a tombstone. It
// returns that version; the tombstone and ds.ErrNotFound when it is one;
// ds.ErrNotFound when the key is absent; or an UnavailableError. With final
// false it is done only when asking the other positions cannot change that.
//
// It never serves an older version: under a failed write a position may
// keep an acknowledged version newer than any other position shows, and
// only the versions every position lists can tell (olderVersion).
func (d *Datastore) pick(v *view, key string, owners []uint16, a answers, final bool, use func(g *versionGroup) error) (*versionGroup, error, bool) {
	slot := placement.Slot(key)
	notFound := func(pos int) bool { return a.state(pos) == fetchNotFound }
	// Only a shard from an owner that vouches for its position shows which
	// versions reached it; "not found" may be a lost shard and shows none.
	if !final && !v.sees(func(pos int) bool { return a.state(pos) == fetchOK && v.c.Vouches(slot, pos) }) {
		if !anyHeld(a) && v.sees(notFound) {
			return nil, ds.ErrNotFound, true
		}
		return nil, nil, false
	}
	groups := groupVersions(a)
	for _, g := range groups {
		// A later write from this front end must outrank every version it
		// has seen, whatever its wall clock says.
		d.clock.Observe(g.ver)
	}
	best, bestNeed := 0, need(v.c.Policy, false)
	var useErrs []NodeError
	if len(groups) > 0 {
		switch g := groups[0]; {
		case len(g.pos) < need(g.policy, g.tomb):
			best, bestNeed = len(g.pos), need(g.policy, g.tomb)
		case g.tomb:
			return g, ds.ErrNotFound, true
		case use == nil:
			return g, nil, true
		default:
			err := use(g)
			if err == nil {
				return g, nil, true
			}
			// Never serve it; an older version may still be intact.
			useErrs = append(useErrs, NodeError{Node: "decode " + g.ver.String(), Err: err})
		}
	}
	if !final {
		return nil, nil, false // more positions may complete the newest, or show a newer one
	}
	if best == 0 && len(useErrs) == 0 && v.sees(notFound) {
		return nil, ds.ErrNotFound, true
	}
	var failed []NodeError
	for pos := range a.n() {
		if a.state(pos) == fetchFailed {
			failed = append(failed, NodeError{Node: v.nodeName(int(owners[pos])), Err: a.failure(pos)})
		}
	}
	failed = append(failed, useErrs...)
	return nil, &UnavailableError{Key: key, Found: best, Need: bestNeed, Failed: failed}, true
}

// fetchedAnswers are the answers of a Get.
type fetchedAnswers []fetched

func (f fetchedAnswers) n() int                   { return len(f) }
func (f fetchedAnswers) state(pos int) fetchState { return f[pos].state }
func (f fetchedAnswers) failure(pos int) error    { return f[pos].err }
func (f fetchedAnswers) version(pos int) (coding.Version, coding.Policy, bool) {
	h := &f[pos].shard.Header
	return h.Version, h.Policy, h.Tombstone
}
func (f fetchedAnswers) held(pos int) []held {
	h := &f[pos].shard.Header
	return []held{{ver: h.Version, policy: h.Policy, tomb: h.Tombstone, valueLen: h.ValueLen}}
}

// readWaves is where a read's waves end: the positions every acknowledged
// write is on at least once (2 with the defaults; a replicated value is
// done there), the other data positions, then parity.
func readWaves(v *view) []int {
	p := v.c.Policy
	all, replicas := v.meets()
	first := min(max(all, replicas), p.Width())
	return []int{first, max(p.DataShards, first), p.Width()}
}

// meets returns how many of all the policy's positions, and of the first
// m+1 (a replicated value's), every acknowledged write is on at least
// one of: width - quorum + 1 of each.
func (v *view) meets() (all, replicas int) {
	p := v.c.Policy
	r := coding.Replicas(p.ParityShards + 1)
	return p.Width() - v.c.Quorum(p) + 1, r.Width() - v.c.Quorum(r) + 1
}

// sees reports whether the positions that answered meet every set of
// positions an acknowledged write can be on: the newest version among
// their shards is the newest acknowledged one, and if they all said "not
// found" there is none. "Not found" counts only from an owner that vouches
// for its position (fetchShard).
func (v *view) sees(answered func(pos int) bool) bool {
	needAll, needReplicas := v.meets()
	r := coding.Replicas(v.c.Policy.ParityShards + 1)
	all, replicas := 0, 0
	for pos := 0; pos < v.c.Policy.Width(); pos++ {
		if answered(pos) {
			all++
			if pos < r.Width() {
				replicas++
			}
		}
	}
	return all >= needAll && replicas >= needReplicas
}

// probe judges key's versions from the nodes' index entries as Get judges
// them from shards (pick): it returns the entry of the newest version with
// enough shards to be read, with found=false when that is a tombstone; a
// zero entry and found=false when no acknowledged write can exist; or the
// UnavailableError Get would give. With writeBack it writes back a
// tombstone as Get does; Delete, which writes a newer one, does not.
func (d *Datastore) probe(ctx context.Context, key string, writeBack bool) (le wire.ListEntry, found bool, err error) {
	_, err = readAgain(ctx, d, func(ctx context.Context, v *view) (struct{}, error) {
		var err error
		le, found, err = d.probeView(ctx, v, key, writeBack)
		return struct{}{}, err
	})
	return le, found, err
}

func (d *Datastore) probeView(ctx context.Context, v *view, key string, writeBack bool) (le wire.ListEntry, found bool, err error) {
	owners := v.owners(key)
	p := v.c.Policy
	ans := make(headerAnswers, p.Width())
	var g *versionGroup
	askInWaves(d.readOrder(v, owners, p.Width()), readWaves(v), d.opts.HedgeAfter,
		func(pos int) headerAnswer { return d.askHeaderOf(ctx, v, key, owners, pos) },
		func(pos int, a headerAnswer) { ans[pos] = a },
		func(final bool) bool {
			var done bool
			g, err, done = d.pick(v, key, owners, ans, final, nil)
			return done
		},
		func(pos int) { d.client.MarkSlow(v.peers[owners[pos]]) })
	switch {
	case g != nil:
		if g.tomb && writeBack {
			d.writeBack(ctx, v, key, g, nil)
		}
		return ans[g.pos[0]].h.ListEntry, !g.tomb, nil
	case errors.Is(err, ds.ErrNotFound):
		return le, false, nil
	case olderMayResolve(err, ans):
		if older, found, ok := d.entryFromOlder(ctx, v, key, ans, writeBack); ok {
			return older, found, nil
		}
	}
	return le, false, err
}

// headerAnswer is one position's answer to a header-only get.
type headerAnswer struct {
	state fetchState
	h     wire.HeaderEntry
	err   error
}

// askHeaderOf asks the node at position pos for its index entry of key:
// the versions it holds.
func (d *Datastore) askHeaderOf(ctx context.Context, v *view, key string, owners []uint16, pos int) (a headerAnswer) {
	resp, err := d.do(ctx, v, int(owners[pos]), &wire.Request{Op: wire.OpGet, Key: key, Pos: uint8(pos), HeaderOnly: true})
	switch {
	case err != nil:
	case resp.Status == wire.StatusNotFound:
		if !v.c.Vouches(placement.Slot(key), pos) {
			return headerAnswer{state: fetchFailed, err: errUnfilled}
		}
		return headerAnswer{state: fetchNotFound}
	case resp.Status != wire.StatusOK:
		err = statusError(resp)
	default:
		a.h, err = wire.DecodeHeaderPayload(resp.Payload)
		if err == nil && a.h.Key != key {
			err = fmt.Errorf("%w: node sent its entry of %q for %q", coding.ErrCorrupt, a.h.Key, key)
		}
		newer := a.h.ListEntry
		for i, h := range append([]wire.HeaderEntry{a.h}, a.h.Older...) {
			switch p := entryPolicy(h); {
			case err != nil:
			case int(h.Index) != pos:
				err = fmt.Errorf("%w: node holds shard %d of %q for shard %d", coding.ErrCorrupt, h.Index, key, pos)
			case i > 0 && !versionLess(h.ListEntry, newer):
				// keptWithout relies on the order; one out of it proves too much.
				err = fmt.Errorf("%w: node's entry of %q lists older versions out of order", coding.ErrCorrupt, key)
			case p.Validate() != nil || pos >= p.Width():
				// Checked here, unlike a shard's header, which is checked
				// as parsed: a policy of no shards makes a version of none.
				err = fmt.Errorf("%w: node's entry of %q for shard %d names policy %d+%d of kind %d", coding.ErrCorrupt, key, h.Index, p.DataShards, p.ParityShards, p.Kind)
			}
			newer = h.ListEntry
		}
	}
	if err != nil {
		return headerAnswer{state: fetchFailed, err: err}
	}
	a.state = fetchOK
	return a
}

// headerAnswers are the answers of Has and GetSize.
type headerAnswers []headerAnswer

func (h headerAnswers) n() int                   { return len(h) }
func (h headerAnswers) state(pos int) fetchState { return h[pos].state }
func (h headerAnswers) failure(pos int) error    { return h[pos].err }
func (h headerAnswers) version(pos int) (coding.Version, coding.Policy, bool) {
	e := &h[pos].h
	return coding.Version{HLC: e.HLC, Writer: e.Writer}, entryPolicy(*e), e.Tombstone
}

func (h headerAnswers) held(pos int) []held {
	var out []held
	for _, e := range append([]wire.HeaderEntry{h[pos].h}, h[pos].h.Older...) {
		out = append(out, held{ver: coding.Version{HLC: e.HLC, Writer: e.Writer}, policy: entryPolicy(e), tomb: e.Tombstone, valueLen: e.ValueLen})
	}
	return out
}

// entryPolicy is the policy a node's header entry names.
func entryPolicy(h wire.HeaderEntry) coding.Policy {
	return coding.Policy{Kind: coding.Kind(h.Kind), DataShards: int(h.K), ParityShards: int(h.M)}
}

func versionLess(a, b wire.ListEntry) bool {
	return coding.Version{HLC: a.HLC, Writer: a.Writer}.Less(coding.Version{HLC: b.HLC, Writer: b.Writer})
}

// Has reports whether Get would return a value for key, from the nodes'
// indexes: the newest version with enough shards, not an entry of a write
// that failed (kubo does not put a block its datastore says it has).
func (d *Datastore) Has(ctx context.Context, key ds.Key) (_ bool, err error) {
	defer d.track("has")(&err)
	k := d.inner(key)
	if len(k) > coding.MaxKeyLen {
		return false, nil
	}
	_, found, err := d.probe(ctx, k, true)
	if err != nil {
		return false, opError("has", k, err)
	}
	return found, nil
}

// GetSize returns the size of the value Get would return, from the nodes'
// indexes.
func (d *Datastore) GetSize(ctx context.Context, key ds.Key) (_ int, err error) {
	defer d.track("get-size")(&err)
	k := d.inner(key)
	if len(k) > coding.MaxKeyLen {
		return -1, ds.ErrNotFound
	}
	le, found, err := d.probe(ctx, k, true)
	if err != nil {
		return -1, opError("getsize", k, err)
	}
	if !found {
		return -1, ds.ErrNotFound
	}
	return int(le.ValueLen), nil
}
