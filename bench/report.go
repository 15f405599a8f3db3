package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Case is one workload shape of a suite.
type Case struct {
	Workload    Workload
	Size        int
	Concurrency int
}

// StandardSuite is what `make bench` runs: 4 KiB put and get, 256 KiB put
// and get at concurrency 16, and degraded get with 2 nodes down. The
// healthy 256 KiB get runs just before the degraded one, which is compared
// with it, so that the machine's drift over the run does not enter the
// ratio.
var StandardSuite = []Case{
	{Put, 4 << 10, 16},
	{Get, 4 << 10, 16},
	{Put, 256 << 10, 16},
	{Get, 256 << 10, 16},
	{DegradedGet, 256 << 10, 16},
}

// Row pairs a workload's cluster result with the baseline's.
type Row struct {
	Cluster  *Result `json:"cluster"`
	Baseline *Result `json:"baseline,omitempty"`
	// Ratio is cluster ops/s over baseline ops/s (0 without a baseline).
	Ratio float64 `json:"ratio"`
	// VsHealthy, for degraded-get, is its ops/s over the healthy cluster
	// get of the same size in the same run (0 when there is none).
	VsHealthy float64 `json:"vs_healthy_get,omitempty"`
	// Ceiling is the most cluster ops/s this machine's cores allow when
	// each operation's wire bytes cost Report.ChannelNsPerByte of CPU and
	// nothing else costs anything (0 when either is unknown);
	// CeilingRatio is it over the baseline's ops/s.
	Ceiling      float64 `json:"ceiling_ops_per_sec,omitempty"`
	CeilingRatio float64 `json:"ceiling_ratio,omitempty"`
}

// Report is a whole run: `dsclient bench --json` prints it.
type Report struct {
	Started time.Time `json:"started"`
	Cluster string    `json:"cluster"`
	Policy  string    `json:"policy"`
	Nodes   int       `json:"nodes"`
	Down    int       `json:"degraded_nodes_down"`
	// Stopped is true when degraded-get's nodes were really stopped (their
	// processes), false when a front end only treated them as down.
	Stopped  bool   `json:"degraded_nodes_stopped"`
	Baseline string `json:"baseline"`
	// ChannelNsPerByte is MeasureChannel's figure, and Cores the cores of
	// this machine the ceilings assume the client and the nodes share (both
	// 0 unless `dsclient bench --ceiling`). Set them before Add.
	ChannelNsPerByte float64 `json:"channel_cpu_ns_per_byte,omitempty"`
	Cores            int     `json:"cores,omitempty"`
	Rows             []Row   `json:"rows"`
}

// Add appends a row and computes its ratios.
func (r *Report) Add(cluster, baseline *Result) {
	row := Row{Cluster: cluster, Baseline: baseline}
	if baseline != nil && baseline.OpsPerSec > 0 {
		row.Ratio = cluster.OpsPerSec / baseline.OpsPerSec
	}
	if r.ChannelNsPerByte > 0 && r.Cores > 0 && cluster.WireBytesPerOp > 0 {
		row.Ceiling = float64(r.Cores) * 1e9 / (r.ChannelNsPerByte * cluster.WireBytesPerOp)
		if baseline != nil && baseline.OpsPerSec > 0 {
			row.CeilingRatio = row.Ceiling / baseline.OpsPerSec
		}
	}
	r.Rows = append(r.Rows, row)
	r.linkHealthy()
}

// linkHealthy sets VsHealthy on degraded-get rows.
func (r *Report) linkHealthy() {
	for i := range r.Rows {
		dg := r.Rows[i].Cluster
		if dg.Workload != string(DegradedGet) {
			continue
		}
		for _, h := range r.Rows {
			if h.Cluster.Workload == string(Get) && h.Cluster.Size == dg.Size && h.Cluster.OpsPerSec > 0 {
				r.Rows[i].VsHealthy = dg.OpsPerSec / h.Cluster.OpsPerSec
			}
		}
	}
}

// FormatSize prints 262144 as 256KiB.
func FormatSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// ParseSize reads 4KiB, 256KiB, 1MiB, 4096, 1KB (=1000).
func ParseSize(s string) (int, error) {
	units := []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"K", 1 << 10}, {"M", 1 << 20}, {"B", 1}}
	t := strings.TrimSpace(s)
	mult := 1
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bench: size %q: want a positive number with an optional unit (4KiB, 256KiB, 1MiB)", s)
	}
	return n * mult, nil
}

func disk(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", x)
}

// ceiling prints a row's channel ceiling, with its ratio to the baseline.
func ceiling(row Row) string {
	switch {
	case row.Ceiling == 0:
		return "-"
	case row.CeilingRatio == 0:
		return fmt.Sprintf("%.0f", row.Ceiling)
	}
	return fmt.Sprintf("%.0f (%.2fx)", row.Ceiling, row.CeilingRatio)
}

func ratio(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", x)
}

// eachLine calls f with the cells of every result line, cluster first and
// its baseline after, in report order.
func (r *Report) eachLine(f func(cells []string)) {
	for _, row := range r.Rows {
		for _, res := range []*Result{row.Cluster, row.Baseline} {
			if res == nil {
				continue
			}
			vs, vh, ceil := "", "", ""
			if res == row.Cluster {
				vs, vh, ceil = ratio(row.Ratio), ratio(row.VsHealthy), ceiling(row)
			}
			f([]string{res.Workload, FormatSize(res.Size), strconv.Itoa(res.Concurrency), res.Target,
				fmt.Sprintf("%.0f", res.OpsPerSec), fmt.Sprintf("%.1f", res.MBPerSec),
				fmt.Sprintf("%.2f", res.P50ms), fmt.Sprintf("%.2f", res.P99ms), fmt.Sprintf("%.2f", res.P999ms),
				fmt.Sprintf("%.2f", res.CPUSecPerGB), disk(res.DiskPerByte), vs, ceil, vh})
		}
	}
}

// WriteTable prints the human table.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "cluster %s  policy %s  %d nodes  baseline %s\n", r.Cluster, r.Policy, r.Nodes, r.Baseline)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tsize\tconc\ttarget\tops/s\tMB/s\tp50 ms\tp99 ms\tp999 ms\tCPU s/GB\tdisk/byte\tvs baseline\tceiling\tvs healthy\t")
	r.eachLine(func(cells []string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") })
	tw.Flush()
}

// WriteMarkdown writes the report as markdown.
func (r *Report) WriteMarkdown(w io.Writer, command string) {
	fmt.Fprintf(w, "# go-ds-cluster benchmark\n\n")
	fmt.Fprintf(w, "Run %s on cluster `%s` (policy %s, %d nodes); baseline: %s, in the same process.\n\n",
		r.Started.UTC().Format(time.RFC3339), r.Cluster, r.Policy, r.Nodes, r.Baseline)
	if command != "" {
		fmt.Fprintf(w, "Command: `%s`\n\n", command)
	}
	fmt.Fprintln(w, "| workload | size | conc | target | ops/s | MB/s | p50 ms | p99 ms | p999 ms | CPU s/GB | disk/byte | vs baseline | channel ceiling | vs healthy get |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	r.eachLine(func(cells []string) { fmt.Fprintln(w, "| "+strings.Join(cells, " | ")+" |") })
	fmt.Fprintf(w, "\nCPU s/GB is the benchmarking process's CPU: for the cluster, the client's share only (the nodes run in their own processes).\n")
	fmt.Fprintf(w, "disk/byte, for put, is the growth of the target's reported disk usage over the bytes written.\n")
	if r.ChannelNsPerByte > 0 {
		fmt.Fprintf(w, "channel ceiling is the most ops/s this machine's %d cores allow the cluster (in parentheses, over the baseline) when every byte an operation moves to or from the nodes costs the %.2f ns of CPU measured for the nodes' secure channel (TLS with the cluster secret's gate, and yamux, over loopback, both ends) and nothing else costs anything: it holds while the nodes share this machine's cores.\n", r.Cores, r.ChannelNsPerByte)
	}
	switch {
	case r.Down > 0 && r.Stopped:
		fmt.Fprintf(w, "degraded-get stops %d node processes once its values are written and reads through the same front end, so values are rebuilt from parity.\n", r.Down)
	case r.Down > 0:
		fmt.Fprintf(w, "degraded-get reads through a front end that treats %d nodes as down (never contacted), so values are rebuilt from parity.\n", r.Down)
	}
}
