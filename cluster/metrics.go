package cluster

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"granary/actors/saga"
	"granary/messages"
	"granary/metrics"
)

// memberMetrics are what a member measures of its grain calls and sagas.
// The member makes them; the gateway registers them (Collectors) on the
// process's registry, so a member in a test owns no global state.
type memberMetrics struct {
	callSeconds *prometheus.HistogramVec
	callRetries *prometheus.CounterVec
	sagas       *prometheus.HistogramVec
}

func newMemberMetrics() *memberMetrics {
	return &memberMetrics{
		callSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metrics.Namespace, Name: "grain_call_duration_seconds",
			Help:    "Grain calls from this member, by kind and result (ok, timeout, unavailable, failed), attempts included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"kind", "result"}),
		callRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Name: "grain_call_retries_total",
			Help: "Grain call attempts re-sent after one got no answer or found no member, by kind.",
		}, []string{"kind"}),
		sagas: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metrics.Namespace, Name: "saga_duration_seconds",
			Help:    "Sagas that finished on this member, by kind and outcome (completed, compensated, cancelled), from start to finish; its _count is the outcomes' count.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"kind", "status"}),
	}
}

// Collectors are the member's metrics, for the process's registry.
func (m *Member) Collectors() []prometheus.Collector {
	if m.metrics == nil {
		return nil
	}
	return []prometheus.Collector{m.metrics.callSeconds, m.metrics.callRetries, m.metrics.sagas}
}

// observeCall records one Call: its kinds are the cluster's own (a closed
// set), and the result one of four words.
func (mm *memberMetrics) observeCall(kind string, took time.Duration, attempts int, err error) {
	result := "ok"
	var f *messages.Failure
	switch {
	case err == nil:
	case errors.As(err, &f) && f.GetCode() == messages.CodeTimeout:
		result = "timeout"
	case errors.As(err, &f) && f.GetCode() == messages.CodeServiceUnavailable:
		result = "unavailable"
	default:
		result = "failed"
	}
	mm.callSeconds.WithLabelValues(kind, result).Observe(took.Seconds())
	if attempts > 1 {
		mm.callRetries.WithLabelValues(kind).Add(float64(attempts - 1))
	}
}

// sagaOutcomes feeds saga.Config.Outcomes (nil for a member made without
// metrics, as some tests make one).
func (m *Member) sagaOutcomes() saga.Outcomes {
	if m.metrics == nil {
		return nil
	}
	return sagaOutcomes{m.metrics.sagas}
}

type sagaOutcomes struct{ h *prometheus.HistogramVec }

func (s sagaOutcomes) SagaFinished(kind, status string, took time.Duration) {
	s.h.WithLabelValues(kind, status).Observe(took.Seconds())
}
