package dscluster

import (
	"context"
	"errors"
	"fmt"
	"sync"

	ds "github.com/ipfs/go-datastore"
)

// Batch returns a batch whose operations are applied, in parallel, by
// Commit. The last operation on a key within a batch wins.
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

// Commit applies every operation; it returns the errors of those that
// failed, joined. Operations that succeeded stay applied.
func (b *batch) Commit(ctx context.Context) error {
	b.mu.Lock()
	ops, order := b.ops, b.order
	b.ops, b.order = make(map[ds.Key]batchOp), nil
	b.mu.Unlock()

	sem := make(chan struct{}, b.d.opts.BatchConcurrency)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, k := range order {
		op := ops[k]
		sem <- struct{}{}
		wg.Add(1)
		go func(k ds.Key, op batchOp) {
			defer func() { <-sem; wg.Done() }()
			var err error
			if op.del {
				err = b.d.Delete(ctx, k)
			} else {
				err = b.d.Put(ctx, k, op.value)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}(k, op)
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("batch commit: %d of %d operations failed: %w", len(errs), len(order), errors.Join(errs...))
	}
	return nil
}
