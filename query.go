package dscluster

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"

	"github.com/filedrive-team/go-ds-cluster/wire"
)

// queryPage is how many index entries one list request asks a node for.
const queryPage = 1000

// queryChunk is how many merged keys are resolved at once, and
// queryParallel how many of them in parallel.
const (
	queryChunk    = 64
	queryParallel = 16
)

// resolve turns merged index entries into results, reading the values in
// parallel unless keysOnly. Keys deleted meanwhile are dropped. Without
// values, a key whose newest version too few nodes hold is judged as Has
// judges it, and listed when that cannot tell: an enumeration must not
// miss a key that may be there.
func (d *Datastore) resolve(ctx context.Context, ms []merged, keysOnly bool) []dsq.Result {
	out := make([]dsq.Result, len(ms))
	skip := make([]bool, len(ms))
	sem := make(chan struct{}, queryParallel)
	var wg sync.WaitGroup
	for i, m := range ms {
		if keysOnly && m.sure {
			out[i] = dsq.Result{Entry: dsq.Entry{Key: m.le.Key, Size: int(m.le.ValueLen)}}
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(i int, key string) {
			defer func() { <-sem; wg.Done() }()
			if keysOnly {
				le, found, err := d.probe(ctx, key, true)
				switch {
				case err != nil:
					log.Debugw("query: list a key whose versions cannot be judged", "key", key, "err", err)
					out[i] = dsq.Result{Entry: dsq.Entry{Key: key, Size: int(ms[i].le.ValueLen)}}
				case !found:
					skip[i] = true
				default:
					out[i] = dsq.Result{Entry: dsq.Entry{Key: key, Size: int(le.ValueLen)}}
				}
				return
			}
			val, err := d.Get(ctx, ds.RawKey(key))
			switch {
			case errors.Is(err, ds.ErrNotFound):
				skip[i] = true
			case err != nil:
				out[i] = dsq.Result{Error: fmt.Errorf("query: %w", err)}
			default:
				out[i] = dsq.Result{Entry: dsq.Entry{Key: key, Value: val, Size: len(val)}}
			}
		}(i, m.le.Key)
	}
	wg.Wait()
	kept := out[:0]
	for i, r := range out {
		if !skip[i] {
			kept = append(kept, r)
		}
	}
	return kept
}

// Query lists keys from every node's index (of the front end's namespace
// only, with the namespace taken off), merged by key with the newest
// version of each key deciding whether it is live. Filters, orders, offset
// and limit are applied by go-datastore's reference implementation on top
// of the key-ordered stream. Values, when asked for, are read with Get. It
// fails when more nodes are unreachable than the policy tolerates: keys
// could then be missing.
func (d *Datastore) Query(ctx context.Context, q dsq.Query) (_ dsq.Results, err error) {
	defer d.track("query")(&err)
	v := d.view.Load()
	// The node prefix is a plain string prefix; NaiveQueryApply narrows it to
	// go-datastore's path semantics ("/a" matches "/a/b", not "/ab").
	prefix := nodePrefix(q.Prefix)
	if d.ns != "" {
		prefix = d.nsPrefix() + strings.TrimPrefix(prefix, "/")
	}
	m, err := d.openMerger(ctx, v, prefix)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	var pending []dsq.Result
	it := dsq.Iterator{
		Next: func() (dsq.Result, bool) {
			for len(pending) == 0 {
				les, err := m.nextChunk(ctx, queryChunk)
				if err != nil {
					return dsq.Result{Error: err}, true
				}
				if len(les) == 0 {
					return dsq.Result{}, false
				}
				pending = d.resolve(ctx, les, q.KeysOnly)
			}
			r := pending[0]
			pending = pending[1:]
			r.Key = strings.TrimPrefix(r.Key, d.ns)
			return r, true
		},
	}
	return dsq.NaiveQueryApply(q, dsq.ResultsFromIterator(q, it)), nil
}

// nodePrefix cleans a query prefix the way go-datastore's NaiveQueryApply
// does ("/a/../b" is "/b", "/." is everything) and turns it into the plain
// string prefix that node indexes match: "/b/".
func nodePrefix(p string) string {
	if p == "" {
		return ""
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	p = path.Clean(p)
	if p == "/" {
		return ""
	}
	return p + "/"
}

// openMerger opens a list cursor on every node that answers, and fails as
// Query does when too many do not.
func (d *Datastore) openMerger(ctx context.Context, v *view, prefix string) (*merger, error) {
	m := &merger{v: v}
	var failed []NodeError
	for i := range v.peers {
		c := &listCursor{d: d, v: v, node: i, prefix: prefix}
		if err := c.fill(ctx); err != nil {
			failed = append(failed, NodeError{Node: v.nodeName(i), Err: err})
			continue
		}
		m.curs = append(m.curs, c)
	}
	if len(failed) > v.c.Policy.ParityShards {
		return nil, fmt.Errorf("%d nodes unreachable, the policy %s tolerates %d: %s",
			len(failed), v.c.Policy, v.c.Policy.ParityShards, joinNodeErrors(failed))
	}
	return m, nil
}

// listCursor pages through one node's index entries in key order.
type listCursor struct {
	d      *Datastore
	v      *view
	node   int
	prefix string
	buf    []wire.ListEntry
	more   bool
	after  string
}

func (c *listCursor) fill(ctx context.Context) error {
	resp, err := c.d.do(ctx, c.v, c.node, &wire.Request{Op: wire.OpList, Prefix: c.prefix, After: c.after, Limit: queryPage})
	if err != nil {
		return err
	}
	if resp.Status != wire.StatusOK {
		return fmt.Errorf("list: %w", statusError(resp))
	}
	es, more, err := wire.DecodeListPayload(resp.Payload)
	if err != nil {
		return err
	}
	if len(es) == 0 && more {
		// Asked again from the same key, it would say the same forever.
		return fmt.Errorf("list: %w: an empty page with more to come", wire.ErrMalformed)
	}
	c.buf, c.more = es, more
	if len(es) > 0 {
		c.after = es[len(es)-1].Key
	}
	return nil
}

// head returns the cursor's next entry, fetching a page when needed.
func (c *listCursor) head(ctx context.Context) (*wire.ListEntry, error) {
	for len(c.buf) == 0 {
		if !c.more {
			return nil, nil
		}
		if err := c.fill(ctx); err != nil {
			return nil, err
		}
	}
	return &c.buf[0], nil
}

// merger merges node cursors by key; the newest version of a key wins and
// tombstoned keys are skipped.
type merger struct {
	v    *view
	curs []*listCursor
}

// merged is a key the merge found live: its newest entry, and whether
// enough nodes hold that version for Get to read it (sure).
type merged struct {
	le   wire.ListEntry
	sure bool
}

// nextChunk returns up to n live entries in key order.
func (m *merger) nextChunk(ctx context.Context, n int) ([]merged, error) {
	var out []merged
	for len(out) < n {
		le, ok, err := m.next(ctx)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		out = append(out, le)
	}
	return out, nil
}

func (m *merger) next(ctx context.Context) (merged, bool, error) {
	for {
		es, _, ok, err := m.nextKey(ctx)
		if err != nil || !ok {
			return merged{}, false, err
		}
		best := newest(es)
		if best.Tombstone {
			continue
		}
		held := 0
		for _, e := range es {
			if e.HLC == best.HLC && e.Writer == best.Writer {
				held++
			}
		}
		return merged{best, held >= m.v.policyFor(int(best.ValueLen)).DataShards}, true, nil
	}
}

// nextKey returns the entries of every node for the smallest key left, and
// the map node index each came from.
func (m *merger) nextKey(ctx context.Context) (es []wire.ListEntry, from []int, ok bool, err error) {
	var minKey string
	found := false
	for _, c := range m.curs {
		h, err := c.head(ctx)
		if err != nil {
			return nil, nil, false, fmt.Errorf("query: %w", err)
		}
		if h != nil && (!found || h.Key < minKey) {
			minKey, found = h.Key, true
		}
	}
	if !found {
		return nil, nil, false, nil
	}
	for _, c := range m.curs {
		if len(c.buf) > 0 && c.buf[0].Key == minKey {
			es = append(es, c.buf[0])
			from = append(from, c.node)
			c.buf = c.buf[1:]
		}
	}
	return es, from, true, nil
}

func newest(es []wire.ListEntry) wire.ListEntry {
	best := es[0]
	for _, e := range es[1:] {
		if versionLess(best, e) {
			best = e
		}
	}
	return best
}
