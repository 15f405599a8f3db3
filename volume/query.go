package volume

import (
	"bytes"
	"context"
	"errors"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	bolt "go.etcd.io/bbolt"
)

// scanPage is how many index entries one read transaction returns. Short
// transactions keep a slow consumer from holding back bbolt's remaps.
const scanPage = 256

// scan calls fn for every index entry whose key starts with prefix, in key
// order, until fn returns false. Entries are read a page at a time, so the
// view is not a snapshot: concurrent writes may or may not be seen.
func (s *Store) scan(ctx context.Context, prefix []byte, fn func(k string, l loc) bool) error {
	var after []byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		keys, locs, more, err := s.scanPageAfter(prefix, after)
		if err != nil {
			return err
		}
		for i := range keys {
			if !fn(keys[i], locs[i]) {
				return nil
			}
		}
		if !more {
			return nil
		}
		after = []byte(keys[len(keys)-1])
	}
}

// scanPageAfter returns up to scanPage entries with the prefix and a key
// greater than after (nil: from the start).
func (s *Store) scanPageAfter(prefix, after []byte) (keys []string, locs []loc, more bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketKeys).Cursor()
		var k, v []byte
		if after == nil {
			k, v = c.Seek(prefix)
		} else {
			k, v = c.Seek(after)
			if k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(keys) == scanPage {
				more = true
				return nil
			}
			l, err := decodeLoc(v)
			if err != nil {
				return err
			}
			keys = append(keys, string(k))
			locs = append(locs, l)
		}
		return nil
	})
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		err = ErrClosed
	}
	return keys, locs, more, err
}

// Query iterates the index in key order. Values are read lazily, one Get per
// entry, unless KeysOnly; a key deleted after its page was read is skipped.
// Sizes come from the index.
func (s *Store) Query(ctx context.Context, q dsq.Query) (dsq.Results, error) {
	qNaive := q
	var prefix []byte
	if p := ds.NewKey(q.Prefix).String(); p != "/" {
		prefix = []byte(p + "/")
		qNaive.Prefix = ""
	}
	if len(q.Orders) > 0 {
		switch q.Orders[0].(type) {
		case dsq.OrderByKey, *dsq.OrderByKey:
			qNaive.Orders = nil
		}
	}
	var (
		keys  []string
		locs  []loc
		more  = true
		after []byte
	)
	next := func() (dsq.Result, bool) {
		for {
			if len(keys) == 0 {
				if !more {
					return dsq.Result{}, false
				}
				var err error
				keys, locs, more, err = s.scanPageAfter(prefix, after)
				if err != nil {
					more = false
					return dsq.Result{Error: err}, true
				}
				if len(keys) == 0 {
					return dsq.Result{}, false
				}
				after = []byte(keys[len(keys)-1])
			}
			k, l := keys[0], locs[0]
			keys, locs = keys[1:], locs[1:]
			e := dsq.Entry{Key: k, Size: l.valueLen(k)}
			if !q.KeysOnly {
				v, _, err := s.getInto(k, nil)
				if errors.Is(err, ds.ErrNotFound) {
					continue
				}
				if err != nil {
					return dsq.Result{Error: err}, true
				}
				e.Value, e.Size = v, len(v)
			}
			return dsq.Result{Entry: e}, true
		}
	}
	r := dsq.ResultsFromIterator(q, dsq.Iterator{Next: next})
	return dsq.NaiveQueryApply(qNaive, r), nil
}

// Batch returns a batch whose Commit applies all its operations as one group:
// one run of appends, one fsync and one index transaction.
func (s *Store) Batch(ctx context.Context) (ds.Batch, error) {
	return &batch{s: s}, nil
}

type batch struct {
	s   *Store
	ops []op
}

// Put records the write; value is copied at once.
func (b *batch) Put(ctx context.Context, key ds.Key, value []byte) error {
	k := key.String()
	if err := checkSizes(k, len(value)); err != nil {
		return err
	}
	b.ops = append(b.ops, newOp(opPut, k, value))
	return nil
}

// Delete records the delete. A key no Put could have stored (empty, or
// longer than MaxKeySize) is left out: its delete record would not check
// out, and a rebuild would take it for a torn tail.
func (b *batch) Delete(ctx context.Context, key ds.Key) error {
	if k := key.String(); checkSizes(k, 0) == nil {
		b.ops = append(b.ops, newOp(opDelete, k, nil))
	}
	return nil
}

// Commit applies the batch and returns when it is durable. The batch is
// empty afterwards and may be reused.
func (b *batch) Commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ops := b.ops
	b.ops = nil
	if len(ops) == 0 {
		return nil
	}
	if b.s.opts.Owner != nil && len(ops) > 0 {
		return errOwned
	}
	return b.s.apply(ops, nil)
}
