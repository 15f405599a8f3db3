package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
)

// Workload is a seeded random mix of operations on a datastore. The zero
// value of each field takes its default.
type Workload struct {
	Seed    uint64
	Workers int // concurrent clients (default 8)
	// Keys is the number of keys: each worker's own (single-writer, the
	// default), or shared by every worker (MultiWriter). Default 16 per
	// worker, or 8 shared.
	Keys        int
	MultiWriter bool
	// SmallThreshold is the cluster's replication threshold: values are
	// drawn on both sides of it (default 16 KiB).
	SmallThreshold int
	// MaxValue is the largest value (default 1 MiB).
	MaxValue int
	// Prefix is the key prefix (default "/chaos").
	Prefix string
	// OpTimeout bounds one operation (default 30 s).
	OpTimeout time.Duration
	// Pause is a worker's wait between operations (default none).
	Pause time.Duration
}

func (w Workload) withDefaults() Workload {
	if w.Workers <= 0 {
		w.Workers = 8
	}
	if w.Keys <= 0 {
		w.Keys = 16
		if w.MultiWriter {
			w.Keys = 8
		}
	}
	if w.SmallThreshold <= 0 {
		w.SmallThreshold = 16 << 10
	}
	if w.MaxValue <= 0 {
		w.MaxValue = 1 << 20
	}
	if w.Prefix == "" {
		w.Prefix = "/chaos"
	}
	if w.OpTimeout <= 0 {
		w.OpTimeout = 30 * time.Second
	}
	return w
}

// keysOf returns the keys worker i writes.
func (w Workload) keysOf(i int) []string {
	keys := make([]string, w.Keys)
	for j := range keys {
		if w.MultiWriter {
			keys[j] = fmt.Sprintf("%s/shared/k%03d", w.Prefix, j)
		} else {
			keys[j] = fmt.Sprintf("%s/w%02d/k%03d", w.Prefix, i, j)
		}
	}
	return keys
}

// AllKeys returns every key the workload writes.
func (w Workload) AllKeys() []string {
	w = w.withDefaults()
	if w.MultiWriter {
		return w.keysOf(0)
	}
	var out []string
	for i := 0; i < w.Workers; i++ {
		out = append(out, w.keysOf(i)...)
	}
	return out
}

// Run runs the workload on d until ctx is done, recording every operation
// in h. Operations under way when ctx ends finish (within OpTimeout).
func (w Workload) Run(ctx context.Context, d ds.Batching, h *History) {
	w = w.withDefaults()
	var writes atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < w.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &worker{w: w, id: i, d: d, h: h, writes: &writes, keys: w.keysOf(i),
				rnd: rand.New(rand.NewPCG(w.Seed, uint64(i)))}
			for ctx.Err() == nil {
				c.step()
				if w.Pause > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(w.Pause):
					}
				}
			}
		}()
	}
	wg.Wait()
}

type worker struct {
	w      Workload
	id     int
	d      ds.Batching
	h      *History
	writes *atomic.Int64
	keys   []string
	rnd    *rand.Rand
}

// step runs one operation drawn at random: put 35%, get 35%, delete 10%,
// batch 12%, query 8%.
func (c *worker) step() {
	ctx, cancel := context.WithTimeout(context.Background(), c.w.OpTimeout)
	defer cancel()
	key := c.keys[c.rnd.IntN(len(c.keys))]
	switch p := c.rnd.IntN(100); {
	case p < 35:
		c.put(ctx, key)
	case p < 70:
		Get(ctx, c.d, c.h, c.id, key)
	case p < 80:
		c.delete(ctx, key)
	case p < 92:
		c.batch(ctx)
	default:
		c.query(ctx)
	}
}

// size draws a value size: a third small (replicated), the rest
// erasure-coded, a few up to MaxValue.
func (c *worker) size() int {
	small := c.w.SmallThreshold
	switch p := c.rnd.IntN(100); {
	case p < 33:
		return 1 + c.rnd.IntN(small-1)
	case p < 90:
		return small + c.rnd.IntN(max(1, min(256<<10, c.w.MaxValue)-small))
	default:
		return small + c.rnd.IntN(max(1, c.w.MaxValue-small))
	}
}

// newWrite returns a write's number and, for a put, its value.
func (c *worker) newWrite(put bool) (int, []byte) {
	n := int(c.writes.Add(1))
	if !put {
		return n, nil
	}
	return n, valueFor(c.w.Seed, n, c.size())
}

// valueFor is the value of write n: bytes no other write of the run has.
func valueFor(seed uint64, n, size int) []byte {
	b := make([]byte, size)
	r := rand.NewChaCha8([32]byte{0: byte(n), 1: byte(n >> 8), 2: byte(n >> 16), 3: byte(n >> 24),
		8: byte(seed), 9: byte(seed >> 8), 10: byte(seed >> 16), 11: byte(seed >> 24)})
	_, _ = r.Read(b)
	return b
}

func valueOf(b []byte) Value { return Value{Len: len(b), Hash: xxhash.Sum64(b)} }

// outcomeOf classifies a read's or a write's error.
func outcomeOf(err error) Outcome {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, ds.ErrNotFound):
		return NotFound
	}
	return Failed
}

func (c *worker) put(ctx context.Context, key string) {
	n, val := c.newWrite(true)
	o := c.h.Invoke(Op{Worker: c.id, Kind: KindPut, Key: key, Write: n, Value: valueOf(val)})
	err := c.d.Put(ctx, ds.NewKey(key), val)
	c.h.Complete(o, outcomeOf(err), err)
}

func (c *worker) delete(ctx context.Context, key string) {
	n, _ := c.newWrite(false)
	o := c.h.Invoke(Op{Worker: c.id, Kind: KindDelete, Key: key, Write: n})
	err := c.d.Delete(ctx, ds.NewKey(key))
	c.h.Complete(o, outcomeOf(err), err)
}

// Get reads key through d and records it in h as worker's.
func Get(ctx context.Context, d ds.Datastore, h *History, worker int, key string) *Op {
	o := h.Invoke(Op{Worker: worker, Kind: KindGet, Key: key})
	val, err := d.Get(ctx, ds.NewKey(key))
	if err == nil {
		o.Value = valueOf(val)
	}
	h.Complete(o, outcomeOf(err), err)
	return o
}

// batch writes two to four distinct keys of the worker in one batch, a
// fifth of them deletes.
func (c *worker) batch(ctx context.Context) {
	b, err := c.d.Batch(ctx)
	if err != nil {
		return
	}
	perm := c.rnd.Perm(len(c.keys))
	n := min(len(perm), 2+c.rnd.IntN(3))
	ops := make([]*Op, 0, n)
	for _, j := range perm[:n] {
		key := c.keys[j]
		put := c.rnd.IntN(5) > 0
		no, val := c.newWrite(put)
		kind := KindDelete
		if put {
			kind = KindPut
		}
		ops = append(ops, c.h.Invoke(Op{Worker: c.id, Kind: kind, Key: key, Write: no, Value: valueOf(val), Batch: true}))
		if put {
			err = b.Put(ctx, ds.NewKey(key), val)
		} else {
			err = b.Delete(ctx, ds.NewKey(key))
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		err = b.Commit(ctx)
	}
	for _, o := range ops {
		c.h.Complete(o, okOrFailed(err), err)
	}
}

// okOrFailed is a write's outcome: a delete of a missing key is no error.
func okOrFailed(err error) Outcome {
	if err == nil {
		return OK
	}
	return Failed
}

// query lists the worker's keys with their values (a query of the shared
// prefix in multi-writer mode) and records each entry as a read.
func (c *worker) query(ctx context.Context) {
	prefix := fmt.Sprintf("%s/w%02d", c.w.Prefix, c.id)
	if c.w.MultiWriter {
		prefix = c.w.Prefix + "/shared"
	}
	start := c.h.Invoke(Op{Worker: c.id, Kind: KindList, Key: prefix})
	res, err := c.d.Query(ctx, dsq.Query{Prefix: prefix})
	var entries []dsq.Entry
	if err == nil {
		for r := range res.Next() {
			if r.Error != nil {
				err = r.Error
				break
			}
			entries = append(entries, r.Entry)
		}
		_ = res.Close()
	}
	c.h.Complete(start, okOrFailed(err), err)
	if err != nil {
		return
	}
	for _, e := range entries {
		c.h.Record(Op{Worker: c.id, Kind: KindQuery, Key: e.Key, Value: valueOf(e.Value),
			Invoke: start.Invoke, Return: start.Return, Outcome: OK, Impaired: start.Impaired})
	}
}
