package gateway

import (
	"math"
	"testing"
	"time"
)

// TestHistoryBetween: rates per second over the interval, and a p99
// interpolated within its bucket from the interval's own requests.
func TestHistoryBetween(t *testing.T) {
	t0 := time.Unix(1_000, 0)
	inf := math.Inf(1)
	bounds := []float64{.01, .1, 1, inf}
	tests := []struct {
		name         string
		a, b         counters
		rps          float64
		p99, appends *float64
	}{
		{
			name: "all fast but one slow in a hundred",
			a:    counters{at: t0, requests: 10, bounds: bounds, buckets: []float64{10, 10, 10, 10}, appends: 5},
			// 100 more: 98 under 10 ms, 2 between 100 ms and 1 s.
			b:   counters{at: t0.Add(2 * time.Second), requests: 110, bounds: bounds, buckets: []float64{108, 108, 110, 110}, appends: 25},
			rps: 50, p99: ptr(.1 + .9*(99-98)/2.0), appends: ptr(10.0),
		},
		{
			name: "no request observed before",
			a:    counters{at: t0, appends: -1},
			b:    counters{at: t0.Add(time.Second), requests: 4, bounds: bounds, buckets: []float64{4, 4, 4, 4}, appends: -1},
			rps:  4, p99: ptr(.01 * 3.96 / 4),
		},
		{
			name: "beyond the last bound",
			a:    counters{at: t0, bounds: bounds, buckets: []float64{0, 0, 0, 0}, appends: -1},
			b:    counters{at: t0.Add(time.Second), requests: 1, bounds: bounds, buckets: []float64{0, 0, 0, 1}, appends: -1},
			rps:  1, p99: ptr(1.0),
		},
		{
			name:    "quiet",
			a:       counters{at: t0, bounds: bounds, buckets: []float64{3, 3, 3, 3}, appends: 0},
			b:       counters{at: t0.Add(time.Second), requests: 0, bounds: bounds, buckets: []float64{3, 3, 3, 3}, appends: 0},
			appends: ptr(0.0),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := between(tt.a, tt.b)
			if math.Abs(s.RequestsPerSecond-tt.rps) > 1e-9 {
				t.Errorf("requests/s = %v, want %v", s.RequestsPerSecond, tt.rps)
			}
			if !sameFloat(s.P99Seconds, tt.p99) {
				t.Errorf("p99 = %v, want %v", deref(s.P99Seconds), deref(tt.p99))
			}
			if !sameFloat(s.AppendsPerSecond, tt.appends) {
				t.Errorf("appends/s = %v, want %v", deref(s.AppendsPerSecond), deref(tt.appends))
			}
		})
	}
}

// TestHistoryIsBounded: the ring keeps the last historySamples intervals.
func TestHistoryIsBounded(t *testing.T) {
	t0 := time.Unix(1_000, 0)
	h := &history{last: counters{at: t0, appends: -1}}
	for i := 1; i <= historySamples+50; i++ {
		h.add(counters{at: t0.Add(time.Duration(i) * historyInterval), requests: float64(i), appends: -1})
	}
	got, measured := h.view(h.last)
	if len(got) != historySamples || measured {
		t.Fatalf("%d samples (measured %v), want %d unmeasured", len(got), measured, historySamples)
	}
	if want := t0.Add((historySamples + 50) * historyInterval).UTC().Format(time.RFC3339Nano); got[len(got)-1].At != want {
		t.Fatalf("newest sample at %s, want %s", got[len(got)-1].At, want)
	}
}

// A gateway asked before its first interval ended has no sample: an
// empty list, not a missing one (JSON null breaks the contract).
func TestHistoryViewBeforeTheFirstSample(t *testing.T) {
	t0 := time.Unix(1_000, 0)
	h := &history{last: counters{at: t0, appends: -1}}
	got, _ := h.view(counters{at: t0.Add(historyMinTail / 2), appends: -1})
	if got == nil || len(got) != 0 {
		t.Fatalf("samples %#v, want an empty non-nil list", got)
	}
}

func ptr(f float64) *float64 { return &f }

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

func sameFloat(a, b *float64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return math.Abs(*a-*b) < 1e-9
}
