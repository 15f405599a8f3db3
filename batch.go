package dscluster

import (
	"context"
	"errors"
	"fmt"
	"sync"

	ds "github.com/ipfs/go-datastore"
)

// Batch returns a batch whose operations are applied by Commit. Puts are
// grouped per node, so a batch of small blocks costs a few round trips,
// not one per shard. The last operation on a key within a batch wins.
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
	// go-datastore lets callers reuse value after Put returns.
	return b.set(key, batchOp{value: append([]byte(nil), value...)})
}

func (b *batch) Delete(ctx context.Context, key ds.Key) error { return b.set(key, batchOp{del: true}) }

func (b *batch) set(key ds.Key, op batchOp) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.ops[key]; !ok {
		b.order = append(b.order, key)
	}
	b.ops[key] = op
	return nil
}

// Commit applies every operation and returns the errors of those that
// failed, joined. Operations that succeeded stay applied.
func (b *batch) Commit(ctx context.Context) (err error) {
	defer b.d.track("batch")(&err)
	b.mu.Lock()
	ops, order := b.ops, b.order
	b.ops, b.order = make(map[ds.Key]batchOp), nil
	b.mu.Unlock()

	var errs []error
	var group []*write
	size := 0
	flush := func() {
		b.d.writeAll(ctx, group)
		for _, w := range group {
			if w.err != nil {
				errs = append(errs, w.err)
			}
		}
		group, size = group[:0], 0
	}
	var dels []ds.Key
	for _, k := range order {
		op := ops[k]
		if op.del {
			dels = append(dels, k)
			continue
		}
		w, err := b.d.putWrite(b.d.inner(k), op.value)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		group = append(group, w)
		size += len(op.value)
		if size >= batchGroupBytes {
			flush()
		}
	}
	flush() // writeAll of no writes does nothing
	errs = append(errs, b.d.deleteMany(ctx, dels)...)
	if len(errs) > 0 {
		return fmt.Errorf("batch commit: %d of %d operations failed: %w", len(errs), len(order), errors.Join(errs...))
	}
	return nil
}

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
