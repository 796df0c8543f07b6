package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestSummariseRatiosPerRound(t *testing.T) {
	w := workloadResult{Name: "deposits-1000", Rounds: []roundResult{
		{Side: "baseline", Round: 1, OpsPerSec: 1000, P99ms: 10, Errors: map[string]int{"503": 1}, ServerCPUusPerOp: 60, RedisCPUusPerOp: 40},
		{Side: "granary", Round: 1, OpsPerSec: 1500, P99ms: 5, ServerCPUusPerOp: 150, RedisCPUusPerOp: 50},
		{Side: "baseline", Round: 2, OpsPerSec: 2000, P99ms: 20},
		{Side: "granary", Round: 2, OpsPerSec: 2000, P99ms: 30, Errors: map[string]int{"504": 2}},
	}}
	summarise(&w)
	if !near(w.Baseline.OpsPerSec, 1500) || !near(w.Baseline.OpsPerSecMin, 1000) || !near(w.Baseline.OpsPerSecMax, 2000) {
		t.Errorf("baseline summary %+v", w.Baseline)
	}
	if !near(w.Granary.P99ms, 17.5) || w.Granary.Errors["504"] != 2 || w.Baseline.Errors["503"] != 1 {
		t.Errorf("granary summary %+v", w.Granary)
	}
	// Throughput ratios per round: 1.5 and 1.0.
	if tr := w.ThroughputRatio; !near(tr.Mean, 1.25) || !near(tr.Min, 1) || !near(tr.Max, 1.5) || len(tr.Rounds) != 2 {
		t.Errorf("throughput ratio %+v", tr)
	}
	// p99 ratios per round: 0.5 and 1.5.
	if pr := w.P99Ratio; !near(pr.Mean, 1) || !near(pr.Min, 0.5) || !near(pr.Max, 1.5) {
		t.Errorf("p99 ratio %+v", pr)
	}
	// CPU per op, server + Redis: 200/100 in round 1, nothing in round 2.
	if cr := w.CPURatio; !near(cr.Rounds[0], 2) || !near(cr.Rounds[1], 0) {
		t.Errorf("cpu ratio %+v", cr)
	}
	if got, want := summaryLine([]workloadResult{w}), "deposits vs baseline: throughput 1.25x, p99 1.00x"; got != want {
		t.Errorf("summary line %q, want %q", got, want)
	}
}

func TestRatioOfNothing(t *testing.T) {
	if r := ratioOf(nil); r.Mean != 0 || r.Min != 0 || r.Max != 0 {
		t.Fatalf("%+v", r)
	}
	if div(1, 0) != 0 {
		t.Fatal("a ratio over a side that did nothing must be 0, not Inf")
	}
	if !strings.Contains(summaryLine(nil), "n/a") {
		t.Fatal("no deposits workload should say n/a")
	}
}

func TestResultsJSONShape(t *testing.T) {
	dir := t.TempDir()
	w := workloadResult{Name: "deposits-1000", Rounds: []roundResult{
		{Side: "baseline", Round: 1, OpsPerSec: 10, Errors: map[string]int{}}, {Side: "granary", Round: 1, OpsPerSec: 5, Errors: map[string]int{}}}}
	summarise(&w)
	res := &results{StartedAt: time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC), Workloads: []workloadResult{w},
		Memory: &memoryResult{Accounts: 10, RSSPerAccount: 100}, Activation: &activationResult{FewEvents: 100, ManyEvents: 100000}}
	res.Summary = summaryLine(res.Workloads)
	path, err := writeJSON(dir, res)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "20261202T140000Z.json" {
		t.Errorf("written to %s", path)
	}
	for _, p := range []string{path, filepath.Join(dir, "latest.json")} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"started_at", "config", "workloads", "memory", "activation", "summary", "notes"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%s has no %q", p, k)
			}
		}
		wl := m["workloads"].([]any)[0].(map[string]any)
		for _, k := range []string{"name", "rounds", "baseline", "granary", "throughput_ratio", "p99_ratio"} {
			if _, ok := wl[k]; !ok {
				t.Errorf("workload has no %q", k)
			}
		}
		r := wl["rounds"].([]any)[0].(map[string]any)
		for _, k := range []string{"side", "round", "ops_per_sec", "p50_ms", "p99_ms", "p999_ms", "errors"} {
			if _, ok := r[k]; !ok {
				t.Errorf("round has no %q", k)
			}
		}
		if tr := wl["throughput_ratio"].(map[string]any)["mean"].(float64); !near(tr, 0.5) {
			t.Errorf("throughput ratio mean %v", tr)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); !near(got, c.want) {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestCPUTimeOfThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	d, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d < 0 {
		t.Fatalf("negative CPU time %v", d)
	}
	if _, err := cpuTime(-1); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}
