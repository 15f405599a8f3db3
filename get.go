package dscluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	ds "github.com/ipfs/go-datastore"

	"github.com/filedrive-team/go-ds-cluster/coding"
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

// framePool recycles the response buffers of shard reads: a Get reads k
// shards into them, and Decode copies the value out, so once Get returns
// no byte of them is referenced.
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
func (d *Datastore) Get(ctx context.Context, key ds.Key) ([]byte, error) {
	k := key.String()
	if len(k) > coding.MaxKeyLen {
		return nil, ds.ErrNotFound
	}
	return readAgain(d, func(v *view, skip bool) ([]byte, error) { return d.get(ctx, v, k, skip) })
}

// readAgain runs read by the current map, skipping nodes whose last dial
// failed, and runs it again (once for each reason) when:
//   - a node said the map is stale and the front end moved to the new one
//     during the read: the answers of old owners (which may have dropped
//     their copies) do not count; read again by the new map;
//   - nodes were skipped and the others were not enough: they may be back
//     (a restart); dial them this time.
func readAgain[T any](d *Datastore, read func(v *view, skip bool) (T, error)) (T, error) {
	skip, moved := true, false
	for {
		v := d.view.Load()
		out, err := read(v, skip)
		if !moved && d.view.Load() != v {
			moved = true
			continue
		}
		if skip && skippedUnreachable(err) {
			skip = false
			continue
		}
		return out, err
	}
}

// skippedUnreachable reports an UnavailableError to which a node skipped
// as unreachable (transport.ErrUnreachable) contributed.
func skippedUnreachable(err error) bool {
	var ue *UnavailableError
	if !errors.As(err, &ue) {
		return false
	}
	for _, f := range ue.Failed {
		if errors.Is(f.Err, transport.ErrUnreachable) {
			return true
		}
	}
	return false
}

func (d *Datastore) get(ctx context.Context, v *view, k string, skip bool) ([]byte, error) {
	if skip {
		ctx = transport.SkipUnreachable(ctx) // other positions can answer
	}
	owners := v.owners(k)
	p := v.c.Policy
	res := make([]fetched, p.Width())
	defer putFrames(res) // the value is a copy (see coding.Decode)
	// First the positions every acknowledged write reaches (a replicated
	// value is done there), then the rest of the data positions, then
	// parity.
	var (
		val []byte
		err error
	)
	ends := []int{min(v.reach(), p.Width()), max(p.DataShards, min(v.reach(), p.Width())), p.Width()}
	askInWaves(d.readOrder(v, owners, p.Width()), ends, d.opts.HedgeAfter,
		func(pos int) fetched { return d.fetchShard(ctx, v, k, int(owners[pos]), pos) },
		func(pos int, f fetched) { res[pos] = f },
		func(final bool) bool {
			var done bool
			val, err, done = d.evaluate(v, k, owners, res, final)
			return done
		},
		func(pos int) { d.client.MarkSlow(v.peers[owners[pos]]) })
	return val, err
}

// readOrder is the order in which a read asks the first width positions
// of owners: by position (data before parity, so a healthy read decodes
// nothing), except that nodes the client marked slow go last. The answers
// are judged as a set (view.sees), so any order is correct; this one keeps
// a hung node from costing every read a hedge.
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

func (d *Datastore) fetchShard(ctx context.Context, v *view, key string, n, pos int) fetched {
	resp, frame, err := d.doInto(ctx, v, n, &wire.Request{Op: wire.OpGet, Key: key}, getFrame())
	f := d.fetchFrom(resp, err, key, pos)
	f.frame = frame
	return f
}

func (d *Datastore) fetchFrom(resp *wire.Response, err error, key string, pos int) fetched {
	if err != nil {
		return fetched{state: fetchFailed, err: err}
	}
	switch resp.Status {
	case wire.StatusOK:
	case wire.StatusNotFound:
		return fetched{state: fetchNotFound}
	default:
		return fetched{state: fetchFailed, err: fmt.Errorf("%s: %s", resp.Status, resp.Message)}
	}
	// The data is verified once, by Decode, which checks every shard it
	// uses and the value's own checksum; the header is checked here.
	sh, err := coding.ParseShardUnverified(resp.Payload)
	if err != nil {
		return fetched{state: fetchFailed, err: err}
	}
	if sh.Header.Key != key || int(sh.Header.Index) != pos {
		return fetched{state: fetchFailed, err: fmt.Errorf("%w: node sent shard %d of %q for shard %d of %q",
			coding.ErrCorrupt, sh.Header.Index, sh.Header.Key, pos, key)}
	}
	return fetched{state: fetchOK, shard: sh}
}

// need is the number of shards that make a version of policy p readable:
// DataShards rebuild a value; a tombstone carries no data, so any one
// shard of it is the whole of it (as the repair planner counts it, see
// package repair). A delete that reached fewer than DataShards positions
// therefore still hides the older value, as it will once repaired.
func need(p coding.Policy, tombstone bool) int {
	if tombstone {
		return 1
	}
	return p.DataShards
}

// provesAbsent reports whether the answers of n positions so far show the
// key absent: none holds a shard (or an entry) of it, and those that said
// "not found" leave no room for an acknowledged write (mayExist).
func (d *Datastore) provesAbsent(v *view, n int, state func(pos int) fetchState) bool {
	var absent []int
	for pos := 0; pos < n; pos++ {
		switch state(pos) {
		case fetchOK:
			return false
		case fetchNotFound:
			absent = append(absent, pos)
		}
	}
	return !d.mayExist(v, absent)
}

// evaluate picks the newest version with enough valid shards. With final
// false it reports done only when the answer cannot change by asking the
// remaining positions: when the positions that answered meet every set of
// positions an acknowledged write can be on (view.sees), a version
// complete there is the newest acknowledged one.
func (d *Datastore) evaluate(v *view, key string, owners []uint16, res []fetched, final bool) (val []byte, err error, done bool) {
	if !final && !v.sees(func(pos int) bool { return res[pos].state == fetchOK }) {
		// A newer version may hide behind a position not asked, failed or
		// without the key: "not found" may be a shard lost (scrubbed, or
		// on a new owner not yet repaired), so it shows no version. Done
		// early only when the positions without the key prove it absent.
		if d.provesAbsent(v, len(res), func(pos int) fetchState { return res[pos].state }) {
			return nil, ds.ErrNotFound, true
		}
		return nil, nil, false
	}
	type group struct {
		ver    coding.Version
		policy coding.Policy
		tomb   bool
		shards []*coding.Shard
		count  int
	}
	byVer := map[coding.Version]*group{}
	for pos, r := range res {
		if r.state != fetchOK {
			continue
		}
		h := &r.shard.Header
		g := byVer[h.Version]
		if g == nil {
			g = &group{ver: h.Version, policy: h.Policy, tomb: h.Tombstone, shards: make([]*coding.Shard, h.Policy.Width())}
			byVer[h.Version] = g
		}
		if h.Policy != g.policy || h.Tombstone != g.tomb || pos >= len(g.shards) {
			continue // inconsistent headers within one version: ignore the odd one
		}
		g.shards[pos] = r.shard
		g.count++
	}
	groups := make([]*group, 0, len(byVer))
	for _, g := range byVer {
		groups = append(groups, g)
		// A later write from this front end must outrank every version it
		// has seen, whatever its wall clock says.
		d.clock.Observe(g.ver)
	}
	sort.Slice(groups, func(i, j int) bool { return groups[j].ver.Less(groups[i].ver) })

	best, bestNeed := 0, need(v.c.Policy, false)
	var decodeErrs []NodeError
	for _, g := range groups {
		if g.count < need(g.policy, g.tomb) {
			if g.count > best {
				best, bestNeed = g.count, need(g.policy, g.tomb)
			}
			if !final {
				return nil, nil, false // a newer version may complete with more positions
			}
			continue
		}
		if g.tomb {
			return nil, ds.ErrNotFound, true
		}
		out, err := coding.Decode(g.shards)
		if err == nil {
			return out, nil, true
		}
		// Shards that passed their own checksums but do not rebuild the
		// value: never serve it; an older version may still be intact.
		decodeErrs = append(decodeErrs, NodeError{Node: "decode " + g.ver.String(), Err: err})
		if !final {
			return nil, nil, false
		}
	}
	if !final {
		return nil, nil, false // no version complete yet among enough answers
	}
	var failed []NodeError
	var absent []int
	for pos, r := range res {
		switch r.state {
		case fetchNotFound:
			absent = append(absent, pos)
		case fetchFailed:
			failed = append(failed, NodeError{Node: v.nodeName(int(owners[pos])), Err: r.err})
		}
	}
	failed = append(failed, decodeErrs...)
	if best == 0 && len(decodeErrs) == 0 && !d.mayExist(v, absent) {
		return nil, ds.ErrNotFound, true
	}
	return nil, &UnavailableError{Key: key, Found: best, Need: bestNeed, Failed: failed}, true
}

// reach is how many positions, from the first, every acknowledged write
// is on at least once: an erasure write is on a quorum of the policy's
// positions, a replicated one on a quorum of the first m+1. With the
// defaults (4+2, quorum 5; 3 replicas, quorum 2) it is 2.
func (v *view) reach() int {
	all, replicas := v.meets()
	return max(all, replicas)
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
// positions an acknowledged write can be on, so that the newest version
// among their answers is the newest acknowledged one.
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

// mayExist reports whether an acknowledged write could hide on the
// positions that did not say "not found" (absent lists those that did): an
// erasure write is on at least its quorum of positions, a replicated one on
// at least its quorum of the first m+1 positions. It takes "not found" at
// its word: a key whose shards those positions lost (scrubbed, or on a new
// owner before repair) reads as absent until repair restores them. Which
// version is newest is never judged from "not found" (see evaluate).
func (d *Datastore) mayExist(v *view, absent []int) bool {
	p := v.c.Policy
	r := coding.Replicas(p.ParityShards + 1)
	absentReplica := 0
	for _, pos := range absent {
		if pos < r.Width() {
			absentReplica++
		}
	}
	return p.Width()-len(absent) >= v.c.Quorum(p) || r.Width()-absentReplica >= v.c.Quorum(r)
}

// probe asks the first k positions for index metadata of key and returns
// the newest entry, or found=false when no acknowledged write can exist.
func (d *Datastore) probe(ctx context.Context, key string) (le wire.ListEntry, found bool, err error) {
	type probed struct {
		le    wire.ListEntry
		found bool
	}
	r, err := readAgain(d, func(v *view, skip bool) (probed, error) {
		le, found, err := d.probeView(ctx, v, key, skip)
		return probed{le, found}, err
	})
	return r.le, r.found, err
}

func (d *Datastore) probeView(ctx context.Context, v *view, key string, skip bool) (le wire.ListEntry, found bool, err error) {
	if skip {
		ctx = transport.SkipUnreachable(ctx) // other positions can answer
	}
	owners := v.owners(key)
	p := v.c.Policy
	ans := make([]headerAnswer, p.Width())
	// The positions every acknowledged write reaches; the rest only when
	// some of those do not answer (in time).
	answered := make([]bool, p.Width())
	askInWaves(d.readOrder(v, owners, p.Width()), []int{min(v.reach(), p.Width()), p.Width()}, d.opts.HedgeAfter,
		func(pos int) headerAnswer { return d.askHeader(ctx, v, key, int(owners[pos])) },
		func(pos int, a headerAnswer) { ans[pos], answered[pos] = a, true },
		func(final bool) bool {
			// As in evaluate: only entries show versions.
			state := func(pos int) fetchState {
				switch a := ans[pos]; {
				case !answered[pos] || a.err != nil:
					return fetchFailed
				case a.status == wire.StatusOK:
					return fetchOK
				case a.status == wire.StatusNotFound:
					return fetchNotFound
				}
				return fetchFailed
			}
			return final || v.sees(func(pos int) bool { return state(pos) == fetchOK }) || d.provesAbsent(v, len(ans), state)
		},
		func(pos int) { d.client.MarkSlow(v.peers[owners[pos]]) })
	var failed []NodeError
	var absent []int
	for pos, a := range ans {
		switch {
		case !answered[pos]:
			// Not asked or not answered: unknown, like a failed one, but
			// not an error to report.
		case a.err != nil:
			failed = append(failed, NodeError{Node: v.nodeName(int(owners[pos])), Err: a.err})
		case a.status == wire.StatusNotFound:
			absent = append(absent, pos)
		case !found || versionLess(le, a.le):
			le, found = a.le, true
		}
		if a.err == nil && a.status == wire.StatusOK {
			d.clock.Observe(coding.Version{HLC: a.le.HLC, Writer: a.le.Writer})
		}
	}
	if found {
		return le, !le.Tombstone, nil
	}
	// Positions not asked count as unknown, like failed ones.
	if !d.mayExist(v, absent) {
		return le, false, nil
	}
	return le, false, &UnavailableError{Key: key, Found: 0, Need: 1, Failed: failed}
}

type headerAnswer struct {
	le     wire.ListEntry
	status wire.Status
	err    error
}

// askHeader asks node n for key's index entry.
func (d *Datastore) askHeader(ctx context.Context, v *view, key string, n int) (a headerAnswer) {
	resp, err := d.do(ctx, v, n, &wire.Request{Op: wire.OpGet, Key: key, HeaderOnly: true})
	if err != nil {
		a.err = err
		return a
	}
	a.status = resp.Status
	switch resp.Status {
	case wire.StatusOK:
		es, _, err := wire.DecodeListPayload(resp.Payload)
		if err != nil || len(es) != 1 {
			a.err = fmt.Errorf("bad metadata answer: %v", err)
			return a
		}
		a.le = es[0]
	case wire.StatusNotFound:
	default:
		a.err = fmt.Errorf("%s: %s", resp.Status, resp.Message)
	}
	return a
}

func versionLess(a, b wire.ListEntry) bool {
	if a.HLC != b.HLC {
		return a.HLC < b.HLC
	}
	return a.Writer < b.Writer
}

// Has reports whether key has a live value, from the nodes' indexes.
func (d *Datastore) Has(ctx context.Context, key ds.Key) (bool, error) {
	k := key.String()
	if len(k) > coding.MaxKeyLen {
		return false, nil
	}
	_, found, err := d.probe(ctx, k)
	if err != nil {
		return false, fmt.Errorf("has %s: %w", k, err)
	}
	return found, nil
}

// GetSize returns the size of key's value, from the nodes' indexes.
func (d *Datastore) GetSize(ctx context.Context, key ds.Key) (int, error) {
	k := key.String()
	if len(k) > coding.MaxKeyLen {
		return -1, ds.ErrNotFound
	}
	le, found, err := d.probe(ctx, k)
	if err != nil {
		return -1, fmt.Errorf("getsize %s: %w", k, err)
	}
	if !found {
		return -1, ds.ErrNotFound
	}
	return int(le.ValueLen), nil
}
