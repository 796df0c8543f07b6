package gateway

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	dto "github.com/prometheus/client_model/go"
)

// The dashboard's charts: a bounded in-process history of what the
// process's own Prometheus collectors measure, so the page draws the last
// minutes at once instead of collecting them while it is open.
const (
	historyInterval = 2 * time.Second
	historySamples  = 300 // 10 minutes at historyInterval
	// historyMinTail is the shortest stretch since the last sample worth a
	// live point: shorter ones give rates from too few requests.
	historyMinTail = 200 * time.Millisecond
)

// Metric names the history reads (see package metrics).
const (
	requestsMetric = "granary_http_requests_total"
	latencyMetric  = "granary_http_request_duration_seconds"
	appendsMetric  = "granary_journal_appended_events_total"
)

// counters is one reading of the collectors: cumulative totals.
type counters struct {
	at       time.Time
	requests float64
	// buckets are cumulative counts per upper bound (le), summed over
	// every route but the streams; +Inf is the last.
	bounds, buckets []float64
	// appends is negative when this process does not measure its
	// journal (no instrumented store on the registry).
	appends float64
}

// historySample is one interval of the history, as the page gets it.
type historySample struct {
	At                string   `json:"at"`
	RequestsPerSecond float64  `json:"requests_per_second"`
	P99Seconds        *float64 `json:"p99_seconds"` // null without requests in the interval
	AppendsPerSecond  *float64 `json:"journal_appends_per_second"`
}

// history keeps the last historySamples intervals in a ring.
type history struct {
	mu      sync.Mutex
	last    counters
	samples []historySample // oldest first, at most historySamples
}

// startHistory reads the collectors every historyInterval until the
// gateway closes its streams (Close and Shutdown both do).
func (g *Gateway) startHistory() {
	g.history = &history{last: g.readCounters(time.Now())}
	g.streams.wg.Add(1)
	go func() {
		defer g.streams.wg.Done()
		t := time.NewTicker(historyInterval)
		defer t.Stop()
		for {
			select {
			case <-g.streams.ctx.Done():
				return
			case now := <-t.C:
				g.history.add(g.readCounters(now))
			}
		}
	}()
}

func (h *history) add(c counters) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.samples = append(h.samples, between(h.last, c))
	if len(h.samples) > historySamples {
		h.samples = slices.Delete(h.samples, 0, len(h.samples)-historySamples)
	}
	h.last = c
}

// view is the stored samples plus, when enough time passed since the
// last one, a live one up to now: a page opened a moment after the
// process started still draws a point.
func (h *history) view(now counters) ([]historySample, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// Never nil: a gateway asked right after it started has no sample
	// yet, and the contract's "samples" is an array, never null.
	out := append(make([]historySample, 0, len(h.samples)+1), h.samples...)
	if now.at.Sub(h.last.at) >= historyMinTail {
		out = append(out, between(h.last, now))
	}
	return out, now.appends >= 0
}

// between is the interval from a to b: rates per second and the p99 of
// the requests answered in it, interpolated within its bucket as
// Prometheus's histogram_quantile does.
func between(a, b counters) historySample {
	secs := b.at.Sub(a.at).Seconds()
	s := historySample{At: b.at.UTC().Format(time.RFC3339Nano)}
	if secs <= 0 {
		return s
	}
	s.RequestsPerSecond = math.Max(0, b.requests-a.requests) / secs
	if b.appends >= 0 && a.appends >= 0 {
		r := math.Max(0, b.appends-a.appends) / secs
		s.AppendsPerSecond = &r
	}
	if len(b.bounds) == 0 || (len(a.bounds) > 0 && !slices.Equal(a.bounds, b.bounds)) {
		return s
	}
	delta := slices.Clone(b.buckets)
	if len(a.bounds) > 0 { // else nothing was observed before b
		for i := range delta {
			delta[i] -= a.buckets[i]
		}
	}
	total := delta[len(delta)-1]
	if total <= 0 {
		return s
	}
	rank := 0.99 * total
	for i, cum := range delta {
		if cum < rank {
			continue
		}
		if math.IsInf(b.bounds[i], 1) {
			// Beyond the last finite bound: that bound is all we know.
			q := b.bounds[max(0, i-1)]
			s.P99Seconds = &q
			return s
		}
		lo, below := 0.0, 0.0
		if i > 0 {
			lo, below = b.bounds[i-1], delta[i-1]
		}
		q := b.bounds[i]
		if in := cum - below; in > 0 {
			q = lo + (b.bounds[i]-lo)*(rank-below)/in
		}
		s.P99Seconds = &q
		return s
	}
	return s
}

// readCounters gathers the registry once. A gathering error leaves what
// could be read: the history is a view, never a reason to fail.
func (g *Gateway) readCounters(now time.Time) counters {
	c := counters{at: now, appends: -1}
	families, _ := g.registry.Gather()
	for _, f := range families {
		switch f.GetName() {
		case requestsMetric:
			for _, m := range f.GetMetric() {
				c.requests += m.GetCounter().GetValue()
			}
		case latencyMetric:
			for _, m := range f.GetMetric() {
				if isStreamRoute(m) {
					continue // a stream's "latency" is how long it stayed open
				}
				c.addHistogram(m.GetHistogram())
			}
		case appendsMetric:
			c.appends = 0
			for _, m := range f.GetMetric() {
				c.appends += m.GetCounter().GetValue()
			}
		}
	}
	return c
}

func isStreamRoute(m *dto.Metric) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == "route" {
			return strings.HasSuffix(l.GetValue(), "/stream")
		}
	}
	return false
}

func (c *counters) addHistogram(h *dto.Histogram) {
	bs := h.GetBucket()
	if c.bounds == nil {
		c.bounds = make([]float64, 0, len(bs)+1)
		for _, b := range bs {
			c.bounds = append(c.bounds, b.GetUpperBound())
		}
		c.bounds = append(c.bounds, math.Inf(1))
		c.buckets = make([]float64, len(c.bounds))
	}
	if len(bs)+1 != len(c.bounds) {
		return // every series of one histogram has the same buckets
	}
	for i, b := range bs {
		c.buckets[i] += float64(b.GetCumulativeCount())
	}
	c.buckets[len(bs)] += float64(h.GetSampleCount())
}

// dashboardRoutes are the endpoints only the dashboard needs.
func (g *Gateway) dashboardRoutes(e *echo.Echo) {
	e.GET("/api/v1/dashboard/metrics", g.dashboardMetrics, g.authenticate, requireAdmin)
}

// memberGrains is one member's activations by kind, or when it left.
type memberGrains struct {
	Grains map[string]int64 `json:"grains,omitempty"`
	LeftAt string           `json:"left_at,omitempty"`
}

// dashboardMetrics answers the charts' history and each member's grain
// counts: this member's now, the others' as they last gossiped them.
func (g *Gateway) dashboardMetrics(c echo.Context) error {
	samples, measured := g.history.view(g.readCounters(time.Now()))
	m := g.deps.Member
	members := map[string]memberGrains{}
	for id, hb := range m.Heartbeats() {
		members[id] = memberGrains{Grains: hb.Grains}
	}
	own := map[string]int64{}
	for _, kind := range m.Cluster.GetClusterKinds() {
		if k, ok := m.Cluster.TryGetClusterKind(kind); ok {
			own[kind] = int64(k.Count())
		}
	}
	members[m.ID()] = memberGrains{Grains: own}
	for _, d := range m.Departed() {
		members[d.ID] = memberGrains{LeftAt: d.LeftAt.UTC().Format(time.RFC3339Nano)}
	}
	res := c.Response()
	res.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	res.Header().Set(echo.HeaderCacheControl, "no-store")
	res.WriteHeader(http.StatusOK)
	// Sent without a Content-Length: the body is live (a HEAD a moment
	// later would promise another length), as /metrics's is.
	res.Flush()
	return json.NewEncoder(res).Encode(map[string]any{
		"interval_seconds": historyInterval.Seconds(), "journal_measured": measured, "samples": samples, "members": members,
	})
}
