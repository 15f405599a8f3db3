package dscluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/prometheus/client_golang/prometheus"
)

// clientMetrics are a front end's Prometheus metrics, registered with
// Options.Metrics (the kubo plugin passes kubo's registry), else unexported.
type clientMetrics struct {
	ops        *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	hedged     prometheus.Counter
	degraded   prometheus.Counter
	writeBacks prometheus.Counter
}

func newClientMetrics(d *Datastore, reg prometheus.Registerer) (*clientMetrics, error) {
	m := &clientMetrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dscluster_client_operations_total",
			Help: "Datastore operations of this front end, by op and result (ok, not_found, unavailable, quorum, canceled, error).",
		}, []string{"op", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dscluster_client_operation_duration_seconds",
			Help:    "Time of this front end's datastore operations, by op.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms to 16 s
		}, []string{"op"}),
		hedged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dscluster_client_hedged_reads_total",
			Help: "Shard reads that waited past HedgeAfter, so that further positions were asked.",
		}),
		degraded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dscluster_client_degraded_reads_total",
			Help: "Values read without all their data shards (rebuilt from parity).",
		}),
		writeBacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dscluster_client_read_write_backs_total",
			Help: "Versions a read wrote to their positions before serving them: deletes seen on fewer positions than their quorum, values of writes that failed after storing k shards.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.ops, m.latency, m.hedged, m.degraded, m.writeBacks,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "dscluster_client_sent_bytes_total",
			Help: "Bytes of the request frames this front end sent and had answered.",
		}, func() float64 { s, _ := d.client.Traffic(); return float64(s) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "dscluster_client_received_bytes_total",
			Help: "Bytes of the response frames this front end received.",
		}, func() float64 { _, r := d.client.Traffic(); return float64(r) }),
	} {
		if err := reg.Register(c); err != nil {
			var dup prometheus.AlreadyRegisteredError
			if errors.As(err, &dup) {
				log.Warnw("another front end's metrics are registered already: this one's are not exported", "err", err)
				return m, nil
			}
			return nil, fmt.Errorf("dscluster: register metrics: %w", err)
		}
	}
	return m, nil
}

// track starts timing an operation; the function it returns records it
// with the error it ended with: defer d.track("get")(&err).
func (d *Datastore) track(op string) func(*error) {
	start := time.Now()
	return func(err *error) {
		d.metrics.ops.WithLabelValues(op, resultOf(*err)).Inc()
		d.metrics.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	}
}

// resultOf is the result label of an operation's error.
func resultOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ds.ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, ErrQuorum):
		return "quorum"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "error"
}
