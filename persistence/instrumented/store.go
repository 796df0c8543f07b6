// Package instrumented decorates a persistence.Store with Prometheus
// metrics, so every backend is measured the same way and none of them
// needs to know about metrics.
package instrumented

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"granary/metrics"
	"granary/persistence"
)

var (
	_ persistence.Store        = (*Store)(nil)
	_ persistence.StreamLoader = (*Store)(nil)
)

// Results of an append, as labelled.
const (
	resultOK       = "ok"
	resultConflict = "conflict" // another writer appended first (expected under failover)
	resultError    = "error"    // outcome unknown: storage trouble
)

// Store is a persistence.Store whose appends are timed. Everything else
// passes straight through; it adds no behaviour and keeps the wrapped
// store's error contract.
type Store struct {
	persistence.Store
	appendSeconds *prometheus.HistogramVec
	appended      prometheus.Counter
}

// New wraps s, registering the metrics on reg:
// granary_journal_append_duration_seconds{result} and
// granary_journal_appended_events_total.
func New(s persistence.Store, reg prometheus.Registerer) (*Store, error) {
	st := &Store{
		Store: s,
		appendSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metrics.Namespace, Name: "journal_append_duration_seconds",
			Help: "Time of journal appends, by result (ok, conflict, error).",
			// Redis round trips are sub-millisecond to a few; fsync'd
			// AOF and outages reach the store timeout.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"result"}),
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Name: "journal_appended_events_total",
			Help: "Events stored by successful journal appends.",
		}),
	}
	for _, c := range []prometheus.Collector{st.appendSeconds, st.appended} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("instrumented store: register metrics: %w", err)
		}
	}
	return st, nil
}

// Append implements persistence.Journal.
func (s *Store) Append(ctx context.Context, stream string, expectedVersion uint64, events []persistence.EventData, opts ...persistence.AppendOption) (persistence.AppendResult, error) {
	start := time.Now()
	res, err := s.Store.Append(ctx, stream, expectedVersion, events, opts...)
	result := resultOK
	switch {
	case errors.Is(err, persistence.ErrConflict):
		result = resultConflict
	case err != nil:
		result = resultError
	default:
		s.appended.Add(float64(len(events)))
	}
	s.appendSeconds.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return res, err
}

// LoadStream implements persistence.StreamLoader with what it wraps, which
// an embedded Store would hide.
func (s *Store) LoadStream(ctx context.Context, stream string, limit int) (persistence.Snapshot, bool, []persistence.Event, error) {
	return persistence.LoadStream(ctx, s.Store, stream, limit)
}
