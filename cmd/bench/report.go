package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// results is everything one `make bench` measured; it is written as JSON
// under bench/results/.
type results struct {
	StartedAt  time.Time         `json:"started_at"`
	FinishedAt time.Time         `json:"finished_at"`
	DurationS  float64           `json:"duration_s"`
	Config     benchConfig       `json:"config"`
	Host       hostInfo          `json:"host"`
	Notes      []string          `json:"notes"`
	Workloads  []workloadResult  `json:"workloads"`
	Memory     *memoryResult     `json:"memory,omitempty"`
	Activation *activationResult `json:"activation,omitempty"`
	CPUProfile string            `json:"cpu_profile,omitempty"`
	Summary    string            `json:"summary"` // the last line printed
	// ProxySummary is the proxy workload's line (printed before the
	// last), empty when it did not run.
	ProxySummary string `json:"proxy_summary,omitempty"`
}

type benchConfig struct {
	Clients        int      `json:"clients"`
	WarmupS        float64  `json:"warmup_s"`
	WindowS        float64  `json:"window_s"`
	Rounds         int      `json:"rounds"` // per side, alternating baseline/granary
	Accounts       int      `json:"accounts"`
	MemoryAccounts int      `json:"memory_accounts"`
	ActivationFew  int      `json:"activation_events_few"`
	ActivationMany int      `json:"activation_events_many"`
	RedisFsync     string   `json:"redis_appendfsync"`
	GranaryEnv     []string `json:"granary_env"` // without the secret
}

type hostInfo struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	Redis     string `json:"redis_version"`
	Hostname  string `json:"hostname"`
}

// sideSummary is one side over its rounds: the mean of the per-round
// figures, and the range of throughput.
type sideSummary struct {
	OpsPerSec    float64        `json:"ops_per_sec"`
	OpsPerSecMin float64        `json:"ops_per_sec_min"`
	OpsPerSecMax float64        `json:"ops_per_sec_max"`
	P50ms        float64        `json:"p50_ms"`
	P99ms        float64        `json:"p99_ms"`
	P999ms       float64        `json:"p999_ms"`
	Errors       map[string]int `json:"errors"`
	// Mean CPU per 2xx answer of the side's server and of redis-server.
	ServerCPUusPerOp float64 `json:"server_cpu_us_per_op"`
	RedisCPUusPerOp  float64 `json:"redis_cpu_us_per_op"`
}

// ratio is Granary/baseline, taken per round (round i of Granary over
// round i of the baseline) and summarised as mean and min–max.
type ratio struct {
	Mean   float64   `json:"mean"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Rounds []float64 `json:"rounds"`
}

type workloadResult struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Sides names the two arms, A then B, when they are not the baseline
	// and Granary (proxy: the upstream called directly, then through
	// Granary's gateway). Baseline and Granary below are A and B, and the
	// ratios B/A.
	Sides           []string      `json:"sides,omitempty"`
	Rounds          []roundResult `json:"rounds"`
	Baseline        sideSummary   `json:"baseline"`
	Granary         sideSummary   `json:"granary"`
	ThroughputRatio ratio         `json:"throughput_ratio"`
	P99Ratio        ratio         `json:"p99_ratio"`
	// CPURatio compares CPU per answer, server and Redis together: the
	// cost of a request, which others' load on the machine disturbs less
	// than throughput.
	CPURatio ratio `json:"cpu_per_op_ratio"`
}

type memoryResult struct {
	Accounts             int     `json:"accounts"`
	OpenS                float64 `json:"open_s"`
	RSSBefore            int64   `json:"rss_before_bytes"`
	RSSAfter             int64   `json:"rss_after_bytes"`
	RSSPerAccount        float64 `json:"rss_per_account_bytes"`
	HeapInuseBefore      int64   `json:"heap_inuse_before_bytes,omitempty"`
	HeapInuseAfter       int64   `json:"heap_inuse_after_bytes,omitempty"`
	HeapInusePerAccount  float64 `json:"heap_inuse_per_account_bytes,omitempty"`
	HeapMetricsAvailable bool    `json:"heap_metrics_available"`
	// Live heap (go_memstats_heap_alloc_bytes right after a forced GC)
	// before and after, and RSS after that GC: the fixed cost without
	// the collector's headroom (GOGC=100 lets the heap reach twice what
	// is live).
	LiveHeapBefore       int64   `json:"live_heap_before_bytes,omitempty"`
	LiveHeapAfter        int64   `json:"live_heap_after_bytes,omitempty"`
	LiveHeapPerAccount   float64 `json:"live_heap_per_account_bytes,omitempty"`
	RSSAfterGC           int64   `json:"rss_after_gc_bytes,omitempty"`
	RSSAfterGCPerAccount float64 `json:"rss_after_gc_per_account_bytes,omitempty"`
	// StopS is SIGTERM to exit of the node holding these accounts;
	// StopKilled says it had to be SIGKILLed after 30 s.
	StopS      float64 `json:"stop_s"`
	StopKilled bool    `json:"stop_killed"`
}

type activationResult struct {
	FewEvents     int64     `json:"few_events"`
	ManyEvents    int64     `json:"many_events"`
	BuildS        float64   `json:"build_s"`
	RestartS      float64   `json:"restart_s"`
	FirstGetFewMs []float64 `json:"first_get_few_ms"` // one per account
	FirstGetFew   float64   `json:"first_get_few_median_ms"`
	FirstGetMany  float64   `json:"first_get_many_ms"`
	WarmGetMs     float64   `json:"warm_get_median_ms"`
}

// summarise fills a workload's per-side summaries and ratios from its
// rounds.
func summarise(w *workloadResult) {
	var b, g []roundResult
	_, sideB := w.sideNames()
	for _, r := range w.Rounds {
		if r.Side == sideB {
			g = append(g, r)
		} else {
			b = append(b, r)
		}
	}
	w.Baseline, w.Granary = sideOf(b), sideOf(g)
	var tp, p99, cpu []float64
	for i := range min(len(b), len(g)) {
		tp = append(tp, div(g[i].OpsPerSec, b[i].OpsPerSec))
		p99 = append(p99, div(g[i].P99ms, b[i].P99ms))
		cpu = append(cpu, div(g[i].ServerCPUusPerOp+g[i].RedisCPUusPerOp, b[i].ServerCPUusPerOp+b[i].RedisCPUusPerOp))
	}
	w.ThroughputRatio, w.P99Ratio, w.CPURatio = ratioOf(tp), ratioOf(p99), ratioOf(cpu)
}

func sideOf(rs []roundResult) sideSummary {
	s := sideSummary{Errors: map[string]int{}}
	if len(rs) == 0 {
		return s
	}
	s.OpsPerSecMin, s.OpsPerSecMax = rs[0].OpsPerSec, rs[0].OpsPerSec
	for _, r := range rs {
		s.OpsPerSec += r.OpsPerSec / float64(len(rs))
		s.P50ms += r.P50ms / float64(len(rs))
		s.P99ms += r.P99ms / float64(len(rs))
		s.P999ms += r.P999ms / float64(len(rs))
		s.ServerCPUusPerOp += r.ServerCPUusPerOp / float64(len(rs))
		s.RedisCPUusPerOp += r.RedisCPUusPerOp / float64(len(rs))
		s.OpsPerSecMin, s.OpsPerSecMax = min(s.OpsPerSecMin, r.OpsPerSec), max(s.OpsPerSecMax, r.OpsPerSec)
		for k, v := range r.Errors {
			s.Errors[k] += v
		}
	}
	return s
}

// div is a/b, 0 when b is 0 (a side that did nothing has no ratio).
func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ratioOf(xs []float64) ratio {
	r := ratio{Rounds: xs}
	if len(xs) == 0 {
		return r
	}
	r.Min, r.Max = xs[0], xs[0]
	for _, x := range xs {
		r.Mean += x / float64(len(xs))
		r.Min, r.Max = min(r.Min, x), max(r.Max, x)
	}
	return r
}

// sideNames are a workload's two arms, A and B.
func (w *workloadResult) sideNames() (a, b string) {
	if len(w.Sides) == 2 {
		return w.Sides[0], w.Sides[1]
	}
	return "baseline", "granary"
}

// proxySummaryLine is the proxy workload's line, "" when it did not run.
func proxySummaryLine(ws []workloadResult) string {
	for _, w := range ws {
		if w.Name == proxyWorkload {
			return fmt.Sprintf("proxy vs direct: throughput %.2fx (%.2f–%.2f), p99 %.2fx (%.2f–%.2f)",
				w.ThroughputRatio.Mean, w.ThroughputRatio.Min, w.ThroughputRatio.Max, w.P99Ratio.Mean, w.P99Ratio.Min, w.P99Ratio.Max)
		}
	}
	return ""
}

// summaryLine is the last line of the output.
func summaryLine(ws []workloadResult) string {
	for _, w := range ws {
		if w.Name == "deposits-1000" {
			return fmt.Sprintf("deposits vs baseline: throughput %.2fx, p99 %.2fx", w.ThroughputRatio.Mean, w.P99Ratio.Mean)
		}
	}
	return "deposits vs baseline: throughput n/a, p99 n/a"
}

func errorsText(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// printTable writes the human-readable report.
func printTable(w io.Writer, res *results) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tside\tops/s (min–max)\tp50 ms\tp99 ms\tp99.9 ms\tcpu µs/op server+redis\terrors\t")
	for _, wl := range res.Workloads {
		a, b := wl.sideNames()
		for _, s := range []struct {
			name string
			s    sideSummary
		}{{a, wl.Baseline}, {b, wl.Granary}} {
			fmt.Fprintf(tw, "%s\t%s\t%.0f (%.0f–%.0f)\t%.2f\t%.2f\t%.2f\t%.0f+%.0f\t%s\t\n", wl.Name, s.name,
				s.s.OpsPerSec, s.s.OpsPerSecMin, s.s.OpsPerSecMax, s.s.P50ms, s.s.P99ms, s.s.P999ms,
				s.s.ServerCPUusPerOp, s.s.RedisCPUusPerOp, errorsText(s.s.Errors))
		}
		fmt.Fprintf(tw, "%s\t%s/%s\t%.2fx (%.2f–%.2f)\t\tp99 %.2fx (%.2f–%.2f)\t\t%.2fx (%.2f–%.2f)\t\t\n", wl.Name, b, a,
			wl.ThroughputRatio.Mean, wl.ThroughputRatio.Min, wl.ThroughputRatio.Max,
			wl.P99Ratio.Mean, wl.P99Ratio.Min, wl.P99Ratio.Max,
			wl.CPURatio.Mean, wl.CPURatio.Min, wl.CPURatio.Max)
	}
	tw.Flush()
	if m := res.Memory; m != nil {
		fmt.Fprintf(w, "\nmemory, Granary, %d idle activated accounts (opened in %.1fs): RSS %.1f → %.1f MiB = %.0f B/account",
			m.Accounts, m.OpenS, mib(m.RSSBefore), mib(m.RSSAfter), m.RSSPerAccount)
		if m.HeapMetricsAvailable {
			fmt.Fprintf(w, "; heap in use %.1f → %.1f MiB = %.0f B/account", mib(m.HeapInuseBefore), mib(m.HeapInuseAfter), m.HeapInusePerAccount)
		}
		if m.LiveHeapPerAccount > 0 {
			fmt.Fprintf(w, "; after a forced GC: live heap %.0f B/account, RSS %.0f B/account", m.LiveHeapPerAccount, m.RSSAfterGCPerAccount)
		}
		fmt.Fprintf(w, "; SIGTERM to exit %.1fs", m.StopS)
		if m.StopKilled {
			fmt.Fprint(w, " (killed after 30s)")
		}
		fmt.Fprintln(w)
	}
	if a := res.Activation; a != nil {
		fmt.Fprintf(w, "activation after restart, Granary: first GET at %d events %.1f ms (median of %d), at %d events %.1f ms; warm GET %.1f ms (built in %.1fs, restart %.1fs)\n",
			a.FewEvents, a.FirstGetFew, len(a.FirstGetFewMs), a.ManyEvents, a.FirstGetMany, a.WarmGetMs, a.BuildS, a.RestartS)
	}
	for _, n := range res.Notes {
		fmt.Fprintln(w, "note: "+n)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// writeJSON writes res to dir/<UTC timestamp>.json and dir/latest.json and
// returns the first path.
func writeJSON(dir string, res *results) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("results dir: %w", err)
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode results: %w", err)
	}
	b = append(b, '\n')
	path := filepath.Join(dir, res.StartedAt.UTC().Format("20060102T150405Z")+".json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "latest.json"), b, 0o644); err != nil {
		return "", fmt.Errorf("write latest.json: %w", err)
	}
	return path, nil
}
