package gateway

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"granary/cluster"
	"granary/metrics"
)

// unmatchedRoute labels requests no route matched, so that scanners cannot
// grow the label set.
const unmatchedRoute = "unmatched"

// httpMetrics are the gateway's request metrics.
type httpMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer, member *cluster.Member) (*httpMetrics, error) {
	labels := []string{"method", "route", "status"}
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Name: "http_requests_total",
			Help: "HTTP requests answered, by method, route template and status.",
		}, labels),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metrics.Namespace, Name: "http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by method, route template and status.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, labels),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, activations{member}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("gateway: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *httpMetrics) observe(method, route string, status int, took time.Duration) {
	s := strconv.Itoa(status)
	m.requests.WithLabelValues(method, route, s).Inc()
	m.latency.WithLabelValues(method, route, s).Observe(took.Seconds())
}

// activations reports the grains live on this member, per kind. The count
// is Proto.Actor's own: the disthash placement actor increments a kind's
// counter when it spawns an activation and decrements it when the
// activation terminates (passivation, stop), so it is the number of
// grains this member holds in memory right now.
type activations struct{ member *cluster.Member }

var activationsDesc = prometheus.NewDesc(
	prometheus.BuildFQName(metrics.Namespace, "", "grain_activations"),
	"Grains active on this member, by kind.", []string{"kind"}, nil)

func (a activations) Describe(ch chan<- *prometheus.Desc) { ch <- activationsDesc }

func (a activations) Collect(ch chan<- prometheus.Metric) {
	c := a.member.Cluster
	// The kinds map is filled once when the member starts and only read
	// afterwards, so reading it from a scrape is safe.
	for _, kind := range c.GetClusterKinds() {
		if k, ok := c.TryGetClusterKind(kind); ok {
			ch <- prometheus.MustNewConstMetric(activationsDesc, prometheus.GaugeValue, float64(k.Count()), kind)
		}
	}
}
