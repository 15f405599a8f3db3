package node_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/filedrive-team/go-ds-cluster/clustertest"
	"github.com/filedrive-team/go-ds-cluster/node"
)

// scrape serves n's registry as dscluster --metrics does, fetches /metrics
// and parses the text format.
func scrape(t *testing.T, n *node.Node) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(n.Metrics(), promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value sums the samples of family name whose labels include want (0
// when there are none: a counter vector has no family before its first
// sample).
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f, ok := fams[name]
	if !ok {
		return 0
	}
	sum := 0.0
	for _, m := range f.GetMetric() {
		match := true
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// TestMetricsMoveWithTheWork: the nodes' /metrics count the writes and
// reads a front end makes (one batch put per shard, at least k gets per
// read), the keys they store, and describe the cluster each node holds.
func TestMetricsMoveWithTheWork(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	d := c.Client(nil)
	const puts, gets = 12, 5
	sum := func(name string, labels map[string]string) float64 {
		total := 0.0
		for i := range c.Len() {
			total += value(scrape(t, c.Node(i)), name, labels)
		}
		return total
	}
	before := sum("dscluster_requests_total", map[string]string{"op": "batch-put", "status": "ok"})
	getsBefore := sum("dscluster_requests_total", map[string]string{"op": "get", "status": "ok"})
	for i := range puts {
		// Erasure coded (above the small-value threshold): six shards.
		if err := d.Put(ctx, ds.NewKey(fmt.Sprintf("/metrics/%d", i)), bytes.Repeat([]byte{byte(i)}, 100<<10)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range gets {
		if _, err := d.Get(ctx, ds.NewKey(fmt.Sprintf("/metrics/%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if got := sum("dscluster_requests_total", map[string]string{"op": "batch-put", "status": "ok"}) - before; got != puts*6 {
		t.Fatalf("batch puts answered ok: %v, want %d (6 shards a put)", got, puts*6)
	}
	if got := sum("dscluster_request_duration_seconds", map[string]string{"op": "batch-put"}); got < puts*6 {
		t.Fatalf("batch put latencies observed: %v, want at least %d", got, puts*6)
	}
	if got := sum("dscluster_requests_total", map[string]string{"op": "get", "status": "ok"}) - getsBefore; got < gets*4 || got > gets*6 {
		t.Fatalf("shard gets answered: %v, want %d to %d (4 of 6 shards a read, and hedges)", got, gets*4, gets*6)
	}
	if got := sum("dscluster_store_keys", nil); got != puts*6 {
		t.Fatalf("keys held over all nodes: %v, want %d", got, puts*6)
	}
	if got := sum("dscluster_request_bytes_total", map[string]string{"direction": "in"}); got < puts*100<<10*6/4 {
		t.Fatalf("request bytes in: %v, want at least the %d bytes of shards written", got, puts*100<<10*6/4)
	}
	fams := scrape(t, c.Node(0))
	if got := value(fams, "dscluster_members", map[string]string{"state": "up"}); got != float64(c.Len()) {
		t.Fatalf("members up on node 0: %v, want %d", got, c.Len())
	}
	if got := value(fams, "dscluster_map_epoch", nil); got != float64(c.Current().Map.Epoch) {
		t.Fatalf("map epoch on node 0: %v, want %d", got, c.Current().Map.Epoch)
	}
	eventually(t, 30*time.Second, "one raft leader in the nodes' metrics", func() error {
		if got := sum("dscluster_raft_leader", nil); got != 1 {
			return fmt.Errorf("%v raft leaders over all nodes, want 1", got)
		}
		if got := sum("dscluster_raft_role", map[string]string{"role": "Follower"}); got != float64(c.Len()-1) {
			return fmt.Errorf("%v raft followers over all nodes, want %d", got, c.Len()-1)
		}
		return nil
	})
	if got := value(fams, "dscluster_raft_term", nil); got < 1 {
		t.Fatalf("raft term on node 0: %v, want at least the first election's", got)
	}
	if got := value(fams, "go_goroutines", nil); got <= 0 {
		t.Fatalf("go_goroutines: %v, want the Go collector's figure", got)
	}
}

// TestOneFsyncPerCommitGroup: on the volume store, a node pays one fsync
// and one index commit for each commit group, and concurrent writes share
// groups; the node's /metrics shows it.
func TestOneFsyncPerCommitGroup(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{Store: "volume", Sync: true, RepairInterval: time.Hour})
	d := c.Client(nil)
	const writers, each = 16, 8
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range each {
				if err := d.Put(ctx, ds.NewKey(fmt.Sprintf("/fsync/%d/%d", w, i)), bytes.Repeat([]byte{byte(i)}, 64<<10)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var groups, writes, fsyncs, commits float64
	eventually(t, 30*time.Second, "the nodes' commits settle", func() error {
		var g, w, f, ic float64
		for i := range c.Len() {
			fams := scrape(t, c.Node(i))
			g += value(fams, "dscluster_store_commit_groups_total", nil)
			w += value(fams, "dscluster_store_commit_writes_total", nil)
			f += value(fams, "dscluster_store_fsyncs_total", nil)
			ic += value(fams, "dscluster_store_index_commits_total", nil)
		}
		if g != groups || f != g || ic != g {
			groups, writes, fsyncs, commits = g, w, f, ic
			return fmt.Errorf("%v groups, %v fsyncs, %v index commits", g, f, ic)
		}
		return nil
	})
	t.Logf("%v writes in %v groups, %v fsyncs, %v index commits, on %d nodes", writes, groups, fsyncs, commits, c.Len())
	garbage := func() float64 {
		g := 0.0
		for i := range c.Len() {
			g += value(scrape(t, c.Node(i)), "dscluster_store_garbage_bytes", nil)
		}
		return g
	}
	before := garbage()
	// Once a delete is acknowledged, the value's shards go: their records
	// are garbage.
	if err := d.Delete(ctx, ds.NewKey("/fsync/0/0")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the deleted value's shards go", func() error {
		if got := garbage() - before; got < 64<<10*6/4 {
			return fmt.Errorf("garbage grew by %v bytes after a delete of 64 KiB stored 4+2, want at least its %d bytes of shards", got, 64<<10*6/4)
		}
		return nil
	})
	if writes < float64(writers*each*6) || groups >= writes {
		t.Fatalf("%v writes in %v groups: want at least %d writes (a shard each), sharing groups", writes, groups, writers*each*6)
	}
}

// TestWriterNoticesAreBatched: once a batch of overwrites is acknowledged,
// the writer has each node drop the older versions it kept, all keys in
// one request per node rather than one per key.
func TestWriterNoticesAreBatched(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	d := c.Client(nil)
	const keys = 64
	for round := range 2 {
		b, err := d.Batch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range keys {
			if err := b.Put(ctx, ds.NewKey(fmt.Sprintf("/notices/%d", i)), bytes.Repeat([]byte{byte(round)}, 100<<10)); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	older := func() (n int) {
		for i := range c.Len() {
			es, err := c.Node(i).IndexEntries()
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				n += len(e.Older)
			}
		}
		return n
	}
	deadline := time.Now().Add(5 * time.Second)
	for older() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := older(); n > 0 {
		t.Fatalf("%d older versions kept 5 s after the overwrites were acknowledged", n)
	}
	requests := 0.0
	for i := range c.Len() {
		requests += value(scrape(t, c.Node(i)), "dscluster_requests_total", map[string]string{"op": "drop-older", "status": "ok"})
	}
	// 64 keys at 6 positions each: 384 notices.
	if requests < 1 || requests > 4*float64(c.Len()) {
		t.Fatalf("%v drop-older requests for %d overwritten keys on %d nodes; want a few per node", requests, keys, c.Len())
	}
}
