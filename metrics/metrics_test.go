package metrics_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"granary/metrics"
)

func TestRegisterRemindersExposesThePoller(t *testing.T) {
	reg := metrics.NewRegistry()
	claimed := uint64(3)
	if err := metrics.RegisterReminders(reg, func() (uint64, uint64, uint64, uint64) { return claimed, 2, 1, 0 }, func() float64 { return 7 }); err != nil {
		t.Fatal(err)
	}
	claimed = 5
	got := gather(t, reg)
	for name, want := range map[string]float64{"granary_reminders_claimed_total": 5, "granary_reminders_woken_total": 2,
		"granary_reminders_wake_errors_total": 1, "granary_reminders_claim_errors_total": 0, "granary_reminders_pending": 7} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	if err := metrics.RegisterReminders(reg, func() (uint64, uint64, uint64, uint64) { return 0, 0, 0, 0 }, func() float64 { return 0 }); err == nil {
		t.Fatal("registering twice did not fail")
	}
}

func TestRegisterPipelineExposesItsCounts(t *testing.T) {
	reg := metrics.NewRegistry()
	pipelines, calls := uint64(2), uint64(9)
	for _, name := range []string{"journal", "idempotency"} {
		if err := metrics.RegisterPipeline(reg, name, func() (uint64, uint64) { return pipelines, calls }); err != nil {
			t.Fatal(err)
		}
	}
	pipelines, calls = 4, 30
	got := gather(t, reg)
	for _, pipe := range []string{"journal", "idempotency"} {
		if got["granary_redis_pipelines_total/"+pipe] != 4 || got["granary_redis_pipelined_calls_total/"+pipe] != 30 {
			t.Fatalf("%s: %v", pipe, got)
		}
	}
	if err := metrics.RegisterPipeline(reg, "journal", func() (uint64, uint64) { return 0, 0 }); err == nil {
		t.Fatal("registering one pipe twice did not fail")
	}
}

// gather is every counter and gauge of reg by name, and its label values
// after a slash when it has labels ("granary_x/journal").
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				got[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[key] = m.GetGauge().GetValue()
			}
		}
	}
	return got
}
