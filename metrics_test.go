package dscluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/clustertest"
)

// gathered sums the samples of family name in reg whose labels include
// want (histograms count their observations).
func gathered(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !hasLabels(m, want) {
				continue
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
			return false
		}
	}
	return true
}

// TestFrontEndMetrics: a front end's metrics count its operations by
// result, time them, count reads rebuilt from parity and the bytes it
// moved; a second front end on the same registry opens all the same.
func TestFrontEndMetrics(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	reg := prometheus.NewRegistry()
	d := c.Client(&dscluster.Options{Metrics: reg})
	const puts = 8
	keys := make([]ds.Key, puts)
	for i := range keys {
		keys[i] = ds.NewKey(fmt.Sprintf("/fe-metrics/%d", i))
		if err := d.Put(ctx, keys[i], bytes.Repeat([]byte{byte(i)}, 100<<10)); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range keys[:3] {
		if _, err := d.Get(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Get(ctx, ds.NewKey("/fe-metrics/none")); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("get of a missing key: %v", err)
	}
	if err := d.Delete(ctx, keys[7]); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		op, result string
		want       float64
	}{{"put", "ok", puts}, {"get", "ok", 3}, {"get", "not_found", 1}, {"delete", "ok", 1}} {
		if got := gathered(t, reg, "dscluster_client_operations_total", map[string]string{"op": tc.op, "result": tc.result}); got != tc.want {
			t.Fatalf("%s %s: %v, want %v", tc.op, tc.result, got, tc.want)
		}
	}
	if got := gathered(t, reg, "dscluster_client_operation_duration_seconds", map[string]string{"op": "put"}); got != puts {
		t.Fatalf("put latencies observed: %v, want %d", got, puts)
	}
	if got := gathered(t, reg, "dscluster_client_sent_bytes_total", nil); got < puts*100<<10 {
		t.Fatalf("bytes sent: %v, want at least the %d bytes of values put", got, puts*100<<10)
	}
	if got := gathered(t, reg, "dscluster_client_degraded_reads_total", nil); got != 0 {
		t.Fatalf("degraded reads with every node up: %v", got)
	}

	// A second front end on the same registry, which treats node 0 as
	// down: it opens, and its reads of values with a data shard on node 0
	// are rebuilt from parity (counted by its own, unexported metrics, so
	// the registry's figures stay the first front end's).
	reg2 := prometheus.NewRegistry()
	down := c.Client(&dscluster.Options{Metrics: reg2, Down: []int{0}})
	if _, err := dscluster.New(c.Node(0).Host(), c.Current(), &dscluster.Options{Metrics: reg}); err != nil {
		t.Fatalf("a second front end on a registry in use: %v", err)
	}
	wantDegraded := 0
	for _, k := range keys[:7] {
		if p := slices.Index(c.Owners(k.String()), 0); p >= 0 && p < 4 {
			wantDegraded++
		}
		if _, err := down.Get(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if wantDegraded == 0 {
		t.Fatal("no key has a data shard on node 0: pick others")
	}
	if got := gathered(t, reg2, "dscluster_client_degraded_reads_total", nil); got != float64(wantDegraded) {
		t.Fatalf("degraded reads with node 0 down: %v, want %d", got, wantDegraded)
	}
}
