package gateway

import (
	"context"
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

func newHTTPMetrics(reg prometheus.Registerer, g *Gateway) (*httpMetrics, error) {
	member := g.deps.Member
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
	cs := []prometheus.Collector{m.requests, m.latency, activations{member}, projectionLag{g}, streamSubscribers{g}}
	if member != nil {
		cs = append(cs, member.Collectors()...)
	}
	for _, c := range cs {
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
// is Proto.Actor's kind counter, which the member's placement actor
// (cluster/placement.go) increments when it spawns an activation and
// decrements when the activation stops (passivation, stop), so it is the number of
// grains this member holds in memory right now.
type activations struct{ member *cluster.Member }

var activationsDesc = prometheus.NewDesc(
	prometheus.BuildFQName(metrics.Namespace, "", "grains_active"),
	"Grains active on this member (in memory now), by kind.", []string{"kind"}, nil)

func (a activations) Describe(ch chan<- *prometheus.Desc) { ch <- activationsDesc }

func (a activations) Collect(ch chan<- prometheus.Metric) {
	if a.member == nil {
		return
	}
	c := a.member.Cluster
	// The kinds map is filled once when the member starts and only read
	// afterwards, so reading it from a scrape is safe.
	for _, kind := range c.GetClusterKinds() {
		if k, ok := c.TryGetClusterKind(kind); ok {
			ch <- prometheus.MustNewConstMetric(activationsDesc, prometheus.GaugeValue, float64(k.Count()), kind)
		}
	}
}

// projectionLag reports each projection's lag (journal head minus its
// checkpoint, in events) as of the scrape: a read of the checkpoints, with
// a deadline of its own so a slow store costs a scrape one second at most
// and then reports nothing for it rather than a stale figure.
type projectionLag struct{ g *Gateway }

var projectionLagDesc = prometheus.NewDesc(
	prometheus.BuildFQName(metrics.Namespace, "", "projection_lag"),
	"Events in the journal the projection has not applied yet, as of the scrape.", []string{"projection"}, nil)

// projectionScrapeTimeout bounds the read behind granary_projection_lag.
const projectionScrapeTimeout = time.Second

func (p projectionLag) Describe(ch chan<- *prometheus.Desc) { ch <- projectionLagDesc }

func (p projectionLag) Collect(ch chan<- prometheus.Metric) {
	if p.g.deps.Summaries == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), projectionScrapeTimeout)
	defer cancel()
	sts, err := p.g.deps.Summaries.Projections(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(projectionLagDesc, fmt.Errorf("read projection status: %w", err))
		return
	}
	for _, st := range sts {
		ch <- prometheus.MustNewConstMetric(projectionLagDesc, prometheus.GaugeValue, float64(st.Lag), st.Name)
	}
}

// streamSubscribers reports the live SSE streams this gateway serves, per
// pool (users, admins).
type streamSubscribers struct{ g *Gateway }

var streamSubscribersDesc = prometheus.NewDesc(
	prometheus.BuildFQName(metrics.Namespace, "", "stream_subscribers"),
	"Live event streams (SSE) open on this gateway, by pool (user, admin).", []string{"pool"}, nil)

func (s streamSubscribers) Describe(ch chan<- *prometheus.Desc) { ch <- streamSubscribersDesc }

func (s streamSubscribers) Collect(ch chan<- prometheus.Metric) {
	if s.g.streams == nil {
		return
	}
	users, admins := s.g.streams.slots.counts()
	ch <- prometheus.MustNewConstMetric(streamSubscribersDesc, prometheus.GaugeValue, float64(users), "user")
	ch <- prometheus.MustNewConstMetric(streamSubscribersDesc, prometheus.GaugeValue, float64(admins), "admin")
}
