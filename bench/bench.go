package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	ds "github.com/ipfs/go-datastore"
)

// Workload names a benchmark workload.
type Workload string

// Workloads.
const (
	Put         Workload = "put"
	Get         Workload = "get"
	Mixed       Workload = "mixed"
	DegradedGet Workload = "degraded-get"
)

// ParseWorkload checks a workload name.
func ParseWorkload(s string) (Workload, error) {
	switch w := Workload(s); w {
	case Put, Get, Mixed, DegradedGet:
		return w, nil
	}
	return "", fmt.Errorf("bench: unknown workload %q (want put, get, mixed or degraded-get)", s)
}

// Config describes one run.
type Config struct {
	Workload    Workload
	Size        int           // bytes per value
	Count       int           // operations; 0 means run for Duration
	Duration    time.Duration // used when Count is 0
	Concurrency int           // parallel operations
	// Prefix namespaces the keys of the run (they are deleted afterwards).
	// Keys are Prefix + "_" + a number, in flatfs's alphabet (upper case,
	// digits, - _ =) so the raw flatfs baseline takes them like IPFS block
	// keys.
	Prefix string
	// Prepared, if set, is called once the values a read workload reads are
	// written and before the clock starts: degraded-get stops nodes here.
	Prepared func() error
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	if _, err := ParseWorkload(string(c.Workload)); err != nil {
		return err
	}
	if c.Size <= 0 {
		return fmt.Errorf("bench: size %d must be positive", c.Size)
	}
	if c.Count < 0 || (c.Count == 0 && c.Duration <= 0) {
		return errors.New("bench: give a positive count or duration")
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 1
	}
	if c.Prefix == "" {
		c.Prefix = "/BENCH"
	}
	return nil
}

// Result is one workload's figures against one target. JSON field names
// are part of `dsclient bench --json` and documented in docs/benchmarks.md.
type Result struct {
	Target      string  `json:"target"`
	Workload    string  `json:"workload"`
	Size        int     `json:"size"`
	Concurrency int     `json:"concurrency"`
	Ops         int     `json:"ops"`
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	MBPerSec    float64 `json:"mb_per_sec"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	P999ms      float64 `json:"p999_ms"`
	CPUSecPerGB float64 `json:"cpu_sec_per_gb"`
	// DiskPerByte, for put, is the growth of the target's DiskUsage over
	// the bytes written (0 when the target does not report usage).
	DiskPerByte float64 `json:"disk_per_byte,omitempty"`
	// WireBytesPerOp is the frame bytes the target sent to and received
	// from its nodes per operation (0 when it does not count them): what
	// each operation moves through the nodes' secure channel.
	WireBytesPerOp float64 `json:"wire_bytes_per_op,omitempty"`
}

// Trafficked is a target that counts the bytes it exchanges with its
// nodes (the cluster front end does).
type Trafficked interface {
	Traffic() (sent, received uint64)
}

// traffic sums the bytes the targets that count them exchanged.
func traffic(targets []ds.Datastore) (uint64, bool) {
	var n uint64
	counted := false
	for _, d := range targets {
		if t, ok := d.(Trafficked); ok {
			s, r := t.Traffic()
			n += s + r
			counted = true
		}
	}
	return n, counted
}

// Progress is called with the operations done so far and the total (0
// when the run is bounded by time).
type Progress func(done, total int)

// Run executes cfg against d. For get and degraded-get, read is the
// datastore the timed Gets go through (nil: d); the values are written
// through d first, untimed.
func Run(ctx context.Context, target string, d, read ds.Datastore, cfg Config, progress Progress) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	targets := []ds.Datastore{d, read}
	if read == nil {
		read, targets = d, targets[:1]
	}
	value := make([]byte, cfg.Size)
	if _, err := rand.Read(value); err != nil {
		return nil, err
	}
	key := func(i int) ds.Key { return ds.RawKey(fmt.Sprintf("%s_%08d", cfg.Prefix, i)) }

	// Reads need values to read: write a pool of keys first (untimed).
	pool := cfg.Count
	if pool == 0 || pool > 1024 {
		pool = 1024
	}
	written := 0
	if cfg.Workload != Put {
		if err := parallel(ctx, pool, cfg.Concurrency, func(i int) error { return d.Put(ctx, key(i), value) }); err != nil {
			return nil, fmt.Errorf("bench: prepare %d values: %w", pool, err)
		}
		written = pool
	}
	if cfg.Prepared != nil {
		if err := cfg.Prepared(); err != nil {
			_ = parallel(context.Background(), written, cfg.Concurrency, func(i int) error {
				return d.Delete(context.Background(), key(i))
			})
			return nil, fmt.Errorf("bench: %w", err)
		}
	}

	lat := make([]time.Duration, 0, max(cfg.Count, 1024))
	var (
		mu      sync.Mutex
		errs    atomic.Int64
		done    atomic.Int64
		lastErr atomic.Pointer[error] // atomic.Value refuses errors of different types
		next    atomic.Int64
	)
	deadline := time.Time{}
	if cfg.Count == 0 {
		deadline = time.Now().Add(cfg.Duration)
	}
	pd, _ := d.(ds.PersistentDatastore)
	var du0 uint64
	if pd != nil && cfg.Workload == Put {
		du0, _ = pd.DiskUsage(ctx)
	}
	wire0, _ := traffic(targets)
	cpu0 := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if cfg.Count > 0 && i >= cfg.Count || cfg.Count == 0 && time.Now().After(deadline) {
					return
				}
				t0 := time.Now()
				var err error
				switch {
				case cfg.Workload == Put || cfg.Workload == Mixed && i%2 == 0:
					err = d.Put(ctx, key(pool+i), value)
				default:
					var got []byte
					got, err = read.Get(ctx, key(i%pool))
					if err == nil && len(got) != len(value) {
						err = fmt.Errorf("bench: got %d bytes, want %d", len(got), len(value))
					}
				}
				el := time.Since(t0)
				if err != nil {
					errs.Add(1)
					lastErr.Store(&err)
				}
				mu.Lock()
				lat = append(lat, el)
				mu.Unlock()
				n := int(done.Add(1))
				if progress != nil && n%16 == 0 {
					progress(n, cfg.Count)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	cpu := cpuTime() - cpu0
	wire1, counted := traffic(targets)
	if progress != nil {
		progress(int(done.Load()), cfg.Count)
	}
	var grew uint64
	if pd != nil && cfg.Workload == Put {
		if du1, err := pd.DiskUsage(ctx); err == nil && du1 > du0 {
			grew = du1 - du0
		}
	}

	// Clean up what the run wrote (untimed): the values read, and those
	// the timed puts wrote (not the keys a read run never wrote: each
	// would cost a delete's probe of every position).
	total := int(next.Load())
	if cfg.Count > 0 {
		total = min(total, cfg.Count)
	}
	var wrote []int
	for i := range written {
		wrote = append(wrote, i)
	}
	for i := range total {
		if cfg.Workload == Put || cfg.Workload == Mixed && i%2 == 0 {
			wrote = append(wrote, pool+i)
		}
	}
	_ = parallel(context.Background(), len(wrote), cfg.Concurrency, func(i int) error {
		return d.Delete(context.Background(), key(wrote[i]))
	})
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	r := &Result{Target: target, Workload: string(cfg.Workload), Size: cfg.Size, Concurrency: cfg.Concurrency,
		Ops: len(lat), Errors: int(errs.Load()), Seconds: elapsed}
	if r.Ops > 0 && elapsed > 0 {
		r.OpsPerSec = float64(r.Ops) / elapsed
		r.MBPerSec = r.OpsPerSec * float64(cfg.Size) / 1e6
		gb := float64(r.Ops) * float64(cfg.Size) / 1e9
		r.CPUSecPerGB = cpu.Seconds() / gb
		r.DiskPerByte = float64(grew) / (float64(r.Ops) * float64(cfg.Size))
		if counted {
			r.WireBytesPerOp = float64(wire1-wire0) / float64(r.Ops)
		}
	}
	slices.Sort(lat)
	r.P50ms, r.P99ms, r.P999ms = quantile(lat, 0.50), quantile(lat, 0.99), quantile(lat, 0.999)
	if r.Errors > 0 {
		return r, fmt.Errorf("bench: %s on %s: %d of %d operations failed, the last: %v", cfg.Workload, target, r.Errors, r.Ops, *lastErr.Load())
	}
	return r, nil
}

// quantile of sorted latencies, in milliseconds.
func quantile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i].Microseconds()) / 1000
}

// parallel runs f(0..n-1) on up to conc goroutines; the first error wins.
func parallel(ctx context.Context, n, conc int, f func(i int) error) error {
	var (
		next  atomic.Int64
		first error
		once  sync.Once
		wg    sync.WaitGroup
	)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
