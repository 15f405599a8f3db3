package bench

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"4KiB": 4096, "256KiB": 262144, "1MiB": 1 << 20, "4096": 4096, "1KB": 1000, "2M": 2 << 20} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
		if in == "4KiB" && FormatSize(got) != "4KiB" {
			t.Errorf("FormatSize(%d) = %s", got, FormatSize(got))
		}
	}
	for _, bad := range []string{"", "KiB", "-4KiB", "x"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func count(t *testing.T, d ds.Datastore) int {
	t.Helper()
	rs, err := d.Query(context.Background(), dsq.Query{KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	all, err := rs.Rest()
	if err != nil {
		t.Fatal(err)
	}
	return len(all)
}

// writesAndDeletes counts the puts and deletes a datastore takes.
type writesAndDeletes struct {
	ds.Datastore
	puts, deletes atomic.Int64
}

func (w *writesAndDeletes) Put(ctx context.Context, k ds.Key, v []byte) error {
	w.puts.Add(1)
	return w.Datastore.Put(ctx, k, v)
}

func (w *writesAndDeletes) Delete(ctx context.Context, k ds.Key) error {
	w.deletes.Add(1)
	return w.Datastore.Delete(ctx, k)
}

// TestRunCountsAndCleansUp runs each workload against an in-memory store:
// the op count is exact, nothing fails, the keys it wrote are gone, and
// it deleted those keys only (a read run once also deleted one key per
// read that nothing wrote, each a probe of every position on a cluster).
func TestRunCountsAndCleansUp(t *testing.T) {
	ctx := context.Background()
	for w, puts := range map[Workload]int64{Put: 200, Get: 200, Mixed: 300, DegradedGet: 200} {
		d := &writesAndDeletes{Datastore: dssync.MutexWrap(ds.NewMapDatastore())}
		r, err := Run(ctx, "mem", d, nil, Config{Workload: w, Size: 1000, Count: 200, Concurrency: 4}, nil)
		if err != nil {
			t.Fatalf("%s: %v", w, err)
		}
		if r.Ops != 200 || r.Errors != 0 || r.OpsPerSec <= 0 || r.P50ms > r.P999ms {
			t.Fatalf("%s: %+v", w, r)
		}
		if n := count(t, d); n != 0 {
			t.Fatalf("%s left %d keys behind", w, n)
		}
		if p, del := d.puts.Load(), d.deletes.Load(); p != puts || del != puts {
			t.Fatalf("%s: %d puts and %d deletes, want %d of each", w, p, del, puts)
		}
	}
}

// TestRunPrepared: Prepared runs once, after the values to read are
// written and before any timed operation; its error stops the run.
func TestRunPrepared(t *testing.T) {
	ctx := context.Background()
	d := dssync.MutexWrap(ds.NewMapDatastore())
	calls, keysThen := 0, 0
	cfg := Config{Workload: DegradedGet, Size: 100, Count: 300, Concurrency: 3, Prepared: func() error {
		calls++
		keysThen = count(t, d)
		return nil
	}}
	r, err := Run(ctx, "mem", d, nil, cfg, nil)
	if err != nil || r.Ops != 300 || r.Errors != 0 {
		t.Fatalf("run: %+v, %v", r, err)
	}
	if calls != 1 || keysThen != 300 {
		t.Fatalf("Prepared called %d times, saw %d keys written; want once, after all 300", calls, keysThen)
	}
	cfg.Prepared = func() error { return errors.New("node would not stop") }
	if _, err := Run(ctx, "mem", d, nil, cfg, nil); err == nil || !strings.Contains(err.Error(), "node would not stop") {
		t.Fatalf("run with a failing Prepared: %v", err)
	}
	if n := count(t, d); n != 0 {
		t.Fatalf("a run stopped by Prepared left %d keys behind", n)
	}
}

type failing struct{ ds.Datastore }

func (failing) Get(context.Context, ds.Key) ([]byte, error) { return nil, errors.New("disk on fire") }

// TestRunReportsErrors: failed operations are counted and returned.
func TestRunReportsErrors(t *testing.T) {
	d := dssync.MutexWrap(ds.NewMapDatastore())
	r, err := Run(context.Background(), "mem", d, failing{d}, Config{Workload: Get, Size: 10, Count: 50, Concurrency: 2}, nil)
	if err == nil || !strings.Contains(err.Error(), "50 of 50 operations failed") || r.Errors != 50 {
		t.Fatalf("err %v, result %+v", err, r)
	}
}

func TestReportRatios(t *testing.T) {
	var r Report
	r.Add(&Result{Workload: "get", Size: 100, OpsPerSec: 50, Target: "cluster"}, &Result{Workload: "get", Size: 100, OpsPerSec: 100, Target: "flatfs"})
	r.Add(&Result{Workload: "degraded-get", Size: 100, OpsPerSec: 40, Target: "cluster"}, nil)
	if r.Rows[0].Ratio != 0.5 || r.Rows[1].VsHealthy != 0.8 {
		t.Fatalf("ratios: %+v %+v", r.Rows[0], r.Rows[1])
	}
	var buf bytes.Buffer
	r.WriteMarkdown(&buf, "dsclient bench")
	if !strings.Contains(buf.String(), "| degraded-get | 100B |") || !strings.Contains(buf.String(), "0.80x") {
		t.Fatalf("markdown:\n%s", buf.String())
	}
}

func TestWriteChart(t *testing.T) {
	var r Report
	r.Add(&Result{Workload: "put", Size: 262144, MBPerSec: 20, P50ms: 200, P99ms: 600}, &Result{Workload: "put", Size: 262144, MBPerSec: 300, P50ms: 10, P99ms: 30})
	r.Add(&Result{Workload: "degraded-get", Size: 262144, MBPerSec: 120, P50ms: 30, P99ms: 60}, nil)
	path := filepath.Join(t.TempDir(), "chart.png")
	if err := r.WriteChart(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 10000 {
		t.Fatalf("chart is not a PNG of a plausible size: %d bytes", len(b))
	}
}

// sized is an in-memory store that reports the bytes it holds as its disk
// usage, doubled, as a store with 2x overhead would.
type sized struct {
	ds.Batching
	mu    sync.Mutex
	bytes uint64
}

func (s *sized) Put(ctx context.Context, k ds.Key, v []byte) error {
	s.mu.Lock()
	s.bytes += 2 * uint64(len(v))
	s.mu.Unlock()
	return s.Batching.Put(ctx, k, v)
}

func (s *sized) DiskUsage(context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes, nil
}

func TestRunDiskPerByte(t *testing.T) {
	d := &sized{Batching: dssync.MutexWrap(ds.NewMapDatastore())}
	r, err := Run(context.Background(), "sized", d, nil, Config{Workload: Put, Size: 4096, Count: 100, Concurrency: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.DiskPerByte != 2 {
		t.Fatalf("disk per byte %.3f, want 2", r.DiskPerByte)
	}
}

// counted is an in-memory store that counts each value it takes as bytes
// sent and each it returns as bytes received, as the front end counts the
// frames it exchanges with nodes.
type counted struct {
	ds.Batching
	sent, received atomic.Uint64
}

func (c *counted) Put(ctx context.Context, k ds.Key, v []byte) error {
	c.sent.Add(uint64(len(v)))
	return c.Batching.Put(ctx, k, v)
}

func (c *counted) Get(ctx context.Context, k ds.Key) ([]byte, error) {
	v, err := c.Batching.Get(ctx, k)
	c.received.Add(uint64(len(v)))
	return v, err
}

func (c *counted) Traffic() (uint64, uint64) { return c.sent.Load(), c.received.Load() }

// TestRunWireBytes: a run's wire bytes per operation are the target's
// traffic during the timed operations only, not while values are written
// beforehand or cleaned up afterwards; a reading front end of its own is
// counted too.
func TestRunWireBytes(t *testing.T) {
	ctx := context.Background()
	d := &counted{Batching: dssync.MutexWrap(ds.NewMapDatastore())}
	for _, w := range []Workload{Put, Get, Mixed} {
		r, err := Run(ctx, "counted", d, nil, Config{Workload: w, Size: 1000, Count: 300, Concurrency: 4}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.WireBytesPerOp != 1000 {
			t.Fatalf("%s: %.1f wire bytes per op, want 1000", w, r.WireBytesPerOp)
		}
	}
	reader := &counted{Batching: d.Batching}
	r, err := Run(ctx, "counted", d, reader, Config{Workload: DegradedGet, Size: 500, Count: 100, Concurrency: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.WireBytesPerOp != 500 || reader.received.Load() != 100*500 {
		t.Fatalf("through a reader: %.1f wire bytes per op, reader received %d", r.WireBytesPerOp, reader.received.Load())
	}
	plain, err := Run(ctx, "mem", dssync.MutexWrap(ds.NewMapDatastore()), nil, Config{Workload: Put, Size: 10, Count: 10}, nil)
	if err != nil || plain.WireBytesPerOp != 0 {
		t.Fatalf("a target that counts nothing: %v, %+v", err, plain)
	}
}

// TestReportCeiling: the ceiling is the machine's cores over the CPU each
// operation's wire bytes cost, and its ratio is over the baseline.
func TestReportCeiling(t *testing.T) {
	r := Report{ChannelNsPerByte: 4, Cores: 2}
	r.Add(&Result{Workload: "put", Size: 262144, OpsPerSec: 400, WireBytesPerOp: 400000, Target: "cluster"},
		&Result{Workload: "put", Size: 262144, OpsPerSec: 2500, Target: "flatfs"})
	r.Add(&Result{Workload: "get", Size: 262144, OpsPerSec: 900, Target: "cluster"}, nil)
	if got := r.Rows[0]; got.Ceiling != 1250 || got.CeilingRatio != 0.5 {
		t.Fatalf("ceiling %.1f (%.3fx), want 1250 (0.5x)", got.Ceiling, got.CeilingRatio)
	}
	if r.Rows[1].Ceiling != 0 {
		t.Fatalf("a ceiling without wire bytes: %.1f", r.Rows[1].Ceiling)
	}
	var buf bytes.Buffer
	r.WriteMarkdown(&buf, "dsclient bench --ceiling")
	if !strings.Contains(buf.String(), "| 1250 (0.50x) |") || !strings.Contains(buf.String(), "4.00 ns of CPU") {
		t.Fatalf("markdown:\n%s", buf.String())
	}
}

// TestMeasureChannel: moving bytes between two hosts through the secure
// channel costs some CPU, and every byte written is read.
func TestMeasureChannel(t *testing.T) {
	ns, err := MeasureChannel(context.Background(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// Both ends run pnet's XSalsa20 and AES-GCM: at least a few tenths of
	// a ns per byte on any machine, and far from a microsecond.
	if ns < 0.1 || ns > 1000 {
		t.Fatalf("%.3f ns of CPU per byte", ns)
	}
}
