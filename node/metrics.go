package node

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/filedrive-team/go-ds-cluster/volume"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// metrics are a node's Prometheus metrics, in a registry of its own: the
// nodes of a test cluster share one process.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	bytes    *prometheus.CounterVec
	in, out  prometheus.Counter
	// byAnswer caches the children of requests and latency by op and status:
	// WithLabelValues hashes its labels at each call (1.7% of the CPU of a
	// node serving reads).
	byAnswer [256][maxStatus]atomic.Pointer[answerMetrics]
}

// maxStatus bounds the statuses whose metrics byAnswer keeps.
const maxStatus = 16

type answerMetrics struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

func newMetrics(n *Node) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dscluster_requests_total",
			Help: "Requests this node answered, by op and status.",
		}, []string{"op", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dscluster_request_duration_seconds",
			Help:    "Time from a request's frame read to its answer written, by op.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5 ms to 4 s
		}, []string{"op"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dscluster_request_bytes_total",
			Help: "Bytes of request frames read (in) and response payloads written (out).",
		}, []string{"direction"}),
	}
	m.in, m.out = m.bytes.WithLabelValues("in"), m.bytes.WithLabelValues("out")
	m.reg.MustRegister(m.requests, m.latency, m.bytes, nodeCollector{n},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// served records one answered request.
func (m *metrics) served(resp *wire.Response, in int, took time.Duration) {
	a := m.answer(resp.Op, resp.Status)
	a.requests.Inc()
	a.latency.Observe(took.Seconds())
	m.in.Add(float64(in))
	m.out.Add(float64(len(resp.Payload)))
}

// answer returns the metrics of answers of op with status.
func (m *metrics) answer(op wire.Op, st wire.Status) *answerMetrics {
	var slot *atomic.Pointer[answerMetrics]
	if st < maxStatus {
		slot = &m.byAnswer[op][st]
		if a := slot.Load(); a != nil {
			return a
		}
	}
	a := &answerMetrics{
		requests: m.requests.WithLabelValues(op.String(), st.String()),
		latency:  m.latency.WithLabelValues(op.String()),
	}
	if slot != nil {
		slot.Store(a) // a racing answer stores the same children
	}
	return a
}

// Metrics is the node's Prometheus registry: requests, the shard store,
// repair, scrub, membership and the Go runtime.
func (n *Node) Metrics() *prometheus.Registry { return n.metrics.reg }

// nodeCollector reads the node's figures (Stat) at each scrape.
type nodeCollector struct{ n *Node }

var (
	descKeys       = prometheus.NewDesc("dscluster_store_keys", "Keys this node holds a shard (or a tombstone) of.", nil, nil)
	descTombstones = prometheus.NewDesc("dscluster_store_tombstones", "Tombstones (deletes) this node holds.", nil, nil)
	descShardBytes = prometheus.NewDesc("dscluster_store_shard_bytes", "Bytes of the newest shards this node holds.", nil, nil)
	descDiskUsage  = prometheus.NewDesc("dscluster_store_disk_bytes", "Disk the shard store takes, garbage and previous shards included.", nil, nil)
	descStoreOK    = prometheus.NewDesc("dscluster_store_writable", "1 while the shard store takes writes, 0 once an fsync failed.", nil, nil)
	descDegraded   = prometheus.NewDesc("dscluster_repair_degraded_keys", "Keys below full redundancy at the last repair pass (leader only).", nil, nil)
	descLost       = prometheus.NewDesc("dscluster_repair_lost_keys", "Keys too scarce to rebuild at the last repair pass (leader only).", nil, nil)
	descBacklog    = prometheus.NewDesc("dscluster_repair_backlog_shards", "Repair actions planned and not done yet.", nil, nil)
	descRepaired   = prometheus.NewDesc("dscluster_repair_shards_total", "Repair actions this node carried out, over its life.", nil, nil)
	descMoved      = prometheus.NewDesc("dscluster_repair_bytes_total", "Shard bytes repair moved, over this node's life.", nil, nil)
	descRate       = prometheus.NewDesc("dscluster_repair_rate_bytes_per_second", "Bytes per second of the last repair pass that moved any.", nil, nil)
	descScanned    = prometheus.NewDesc("dscluster_scrub_shards_checked", "Shards the last complete scrub pass checked.", nil, nil)
	descBad        = prometheus.NewDesc("dscluster_scrub_bad_shards_total", "Bad shards scrub found and removed, since the node started.", nil, nil)
	descEpoch      = prometheus.NewDesc("dscluster_map_epoch", "Epoch of the cluster map this node holds.", nil, nil)
	descLeader     = prometheus.NewDesc("dscluster_raft_leader", "1 when this node is the raft leader.", nil, nil)
	descRaftTerm   = prometheus.NewDesc("dscluster_raft_term", "The raft term this node is in: it grows with every election.", nil, nil)
	descRaftRole   = prometheus.NewDesc("dscluster_raft_role", "1 for this node's raft role (Leader, Follower, Candidate, Shutdown).", []string{"role"}, nil)
	descMembers    = prometheus.NewDesc("dscluster_members", "Members of the cluster by state, as this node's description has them.", []string{"state"}, nil)

	// Volume store commits: writes per group and fsync latency are ratios.
	descGroups       = prometheus.NewDesc("dscluster_store_commit_groups_total", "Commit groups the volume store committed: one fsync of the log and one index commit each.", nil, nil)
	descGroupWrites  = prometheus.NewDesc("dscluster_store_commit_writes_total", "Writes those groups carried.", nil, nil)
	descFsyncs       = prometheus.NewDesc("dscluster_store_fsyncs_total", "Fsyncs of volume files by commit groups.", nil, nil)
	descFsyncSeconds = prometheus.NewDesc("dscluster_store_fsync_seconds_total", "Time spent in those fsyncs.", nil, nil)
	descIndexCommits = prometheus.NewDesc("dscluster_store_index_commits_total", "Index transactions committed by commit groups (bbolt, without fsyncs).", nil, nil)
	descGarbage      = prometheus.NewDesc("dscluster_store_garbage_bytes", "Bytes of dead records in the volume store (overwritten, deleted, failed), which compaction gives back.", nil, nil)
)

func (nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descKeys, descTombstones, descShardBytes, descDiskUsage, descStoreOK,
		descDegraded, descLost, descBacklog, descRepaired, descMoved, descRate, descScanned, descBad,
		descEpoch, descLeader, descRaftTerm, descRaftRole, descMembers, descGroups, descGroupWrites, descFsyncs, descFsyncSeconds, descIndexCommits, descGarbage} {
		ch <- d
	}
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.n.Stat(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descKeys, err)
		return
	}
	gauge(descKeys, float64(st.Keys))
	gauge(descTombstones, float64(st.Tombstones))
	gauge(descShardBytes, float64(st.ShardBytes))
	gauge(descDiskUsage, float64(st.DiskUsage))
	gauge(descStoreOK, oneIf(st.StoreError == ""))
	if v, ok := c.n.store.(*volume.Store); ok {
		vs := v.Stats()
		counter(descGroups, float64(vs.Groups))
		counter(descGroupWrites, float64(vs.Writes))
		counter(descFsyncs, float64(vs.Syncs))
		counter(descFsyncSeconds, vs.SyncTime.Seconds())
		counter(descIndexCommits, float64(vs.IndexCommits))
		if g, err := v.Garbage(); err == nil {
			gauge(descGarbage, float64(g))
		}
	}
	if r := st.Repair; r != nil {
		gauge(descDegraded, float64(r.Degraded))
		gauge(descLost, float64(r.Lost))
		gauge(descBacklog, float64(r.Backlog))
		counter(descRepaired, float64(r.Done))
		counter(descMoved, float64(r.BytesMoved))
		gauge(descRate, r.Rate)
	}
	gauge(descScanned, float64(st.Scrub.Scanned))
	counter(descBad, float64(st.Scrub.Total))
	gauge(descEpoch, float64(st.Epoch))
	gauge(descLeader, oneIf(st.IsLeader))
	gauge(descRaftTerm, float64(c.n.raft.Term()))
	gauge(descRaftRole, 1, c.n.raft.Role())
	states := map[string]int{}
	for _, m := range c.n.cluster.Load().Members {
		states[m.State]++
	}
	for s, k := range states {
		gauge(descMembers, float64(k), s)
	}
}

func oneIf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
