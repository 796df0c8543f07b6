// Package metrics owns Granary's Prometheus conventions: the registry every
// part of a process registers on (never the global default one, so tests
// and several gateways in one process do not collide), the metric
// namespace, and the hooks other parts use to publish their state.
//
// Metric names, all under the "granary_" namespace:
//
//	granary_http_requests_total{method,route,status}            gateway (http/gateway)
//	granary_http_request_duration_seconds{method,route,status}  gateway
//	granary_build_info{version,revision,goversion}               NewRegistry (always 1)
//	granary_grains_active{kind}                                  gateway, from the member's cluster kinds
//	granary_grain_call_duration_seconds{kind,result}             cluster (Member.Call), registered by the gateway
//	granary_grain_call_retries_total{kind}                       same
//	granary_saga_duration_seconds{kind,status}                   cluster (saga outcomes), registered by the gateway
//	granary_projection_lag{projection}                           gateway, from the projections' status at scrape
//	granary_stream_subscribers{pool}                             gateway (live SSE streams: user, admin)
//	granary_ratelimit_rejected_total{by}                         http/ratelimit
//	granary_ratelimit_errors_total                               http/ratelimit (Redis failed; request let through)
//	granary_idempotency_requests_total{outcome}                  http/idempotency
//	granary_journal_append_duration_seconds{result}              persistence/instrumented
//	granary_breaker_state{service}                               RegisterBreaker (service clients)
package metrics

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every Granary metric.
const Namespace = "granary"

// NewRegistry returns a registry holding the Go runtime and process
// collectors and granary_build_info; each part of the process registers its
// own metrics on it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(ThisBuild()),
	)
	return reg
}

// Handler serves reg in the Prometheus text (or negotiated) format. A
// collector that fails is reported in the answer rather than hiding the
// other metrics.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:          reg, // counts scrape errors in promhttp_metric_handler_errors_total
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: false,
	})
}

// Breaker states as granary_breaker_state reports them; they follow the
// usual closed → open → half-open cycle, ordered by how much traffic gets
// through.
const (
	BreakerClosed   = 0
	BreakerHalfOpen = 1
	BreakerOpen     = 2
)

// RegisterBreaker publishes the state of one service's circuit breaker as
// granary_breaker_state{service}; state is read at every scrape, so it
// must be cheap and safe for concurrent use (gobreaker's State() is) and
// return one of the Breaker* values. Registering the same service twice
// on one registry is an error.
func RegisterBreaker(reg prometheus.Registerer, service string, state func() float64) error {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace:   Namespace,
		Name:        "breaker_state",
		Help:        "Circuit breaker state per service: 0 closed, 1 half-open, 2 open.",
		ConstLabels: prometheus.Labels{"service": service},
	}, state)
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("register breaker gauge of %s: %w", service, err)
	}
	return nil
}

// RegisterReminders exposes the member's reminder poller: how many due
// timers it claimed, woke and failed to wake, and how many are scheduled
// in the cluster (pending, read from the store at scrape time).
func RegisterReminders(reg prometheus.Registerer, counters func() (claimed, woken, wakeErrors, claimErrors uint64), pending func() float64) error {
	cs := []struct {
		name, help string
		pick       func(a, b, c, d uint64) uint64
	}{
		{"reminders_claimed_total", "Due reminders this member claimed.", func(a, _, _, _ uint64) uint64 { return a }},
		{"reminders_woken_total", "Reminders whose grain this member woke.", func(_, b, _, _ uint64) uint64 { return b }},
		{"reminders_wake_errors_total", "Wakes that failed (the reminder fires again after its lease).", func(_, _, c, _ uint64) uint64 { return c }},
		{"reminders_claim_errors_total", "Failed claims of due reminders.", func(_, _, _, d uint64) uint64 { return d }},
	}
	for _, c := range cs {
		pick := c.pick
		m := prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: c.name, Help: c.help}, func() float64 {
			return float64(pick(counters()))
		})
		if err := reg.Register(m); err != nil {
			return fmt.Errorf("register %s: %w", c.name, err)
		}
	}
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "reminders_pending",
		Help: "Reminders scheduled in the cluster (-1 when the store does not answer)."}, pending)
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("register reminders_pending: %w", err)
	}
	return nil
}

// RegisterPipeline exposes one Redis pipeliner of the member (name: what
// it carries, e.g. "journal"): how many pipelines it sent and how many
// calls went in them; calls / pipelines is its mean batch, the group
// commit's gain.
func RegisterPipeline(reg prometheus.Registerer, name string, stats func() (pipelines, calls uint64)) error {
	labels := prometheus.Labels{"pipe": name}
	for _, c := range []struct {
		name, help string
		calls      bool
	}{
		{"redis_pipelines_total", "Pipelines a Redis pipeliner sent (one round trip each).", false},
		{"redis_pipelined_calls_total", "Calls that went to Redis in those pipelines.", true},
	} {
		calls := c.calls
		m := prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: c.name, Help: c.help, ConstLabels: labels}, func() float64 {
			p, n := stats()
			if calls {
				return float64(n)
			}
			return float64(p)
		})
		if err := reg.Register(m); err != nil {
			return fmt.Errorf("register %s{pipe=%s}: %w", c.name, name, err)
		}
	}
	return nil
}
