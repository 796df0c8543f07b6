package instrumented_test

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"granary/internal/leakcheck"
	"granary/persistence"
	"granary/persistence/instrumented"
	"granary/persistence/journaltest"
	"granary/persistence/memory"
)

// The decorator keeps the journal contract: the conformance suite passes
// through it.
func TestConformance(t *testing.T) {
	journaltest.Run(t, func(t *testing.T, partitions int) persistence.Store {
		s, err := instrumented.New(memory.New(partitions), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestAppendMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := instrumented.New(memory.New(1), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ev := []persistence.EventData{{Type: "A"}, {Type: "B"}}
	if _, err := s.Append(ctx, "s", 0, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "s", 0, ev); !errors.Is(err, persistence.ErrConflict) {
		t.Fatalf("stale append: %v", err)
	}
	if _, err := s.Append(ctx, "", 0, ev); err == nil {
		t.Fatal("append to an empty stream name succeeded")
	}
	counts := map[string]uint64{}
	var appended float64
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "granary_journal_append_duration_seconds":
				counts[label(m, "result")] = m.GetHistogram().GetSampleCount()
			case "granary_journal_appended_events_total":
				appended = m.GetCounter().GetValue()
			}
		}
	}
	if counts["ok"] != 1 || counts["conflict"] != 1 || counts["error"] != 1 || appended != 2 {
		t.Fatalf("append samples %v, appended events %v; want one of each result and 2 events", counts, appended)
	}
	if _, err := instrumented.New(memory.New(1), reg); err == nil {
		t.Fatal("registering twice on one registry succeeded")
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestMain(m *testing.M) { leakcheck.Main(m) }
