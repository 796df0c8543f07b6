package gateway_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"granary/http/gateway"
	"granary/metrics"
)

// metricValue finds one sample in Prometheus text: name{labels} value.
func metricValue(t *testing.T, text, name, labels string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name+labels) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no sample %s%s in:\n%s", name, labels, grepLines(text, name))
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestMetrics: /metrics is public Prometheus text with the request count
// and latency by route template and status, grain activations, and
// rate-limit rejections; unknown paths share one label value.
func TestMetrics(t *testing.T) {
	h := newHarness(t, withGatewayConfig(rateLimited(1000)))
	alice := token(t, "alice")
	a := h.open(alice, "MET-1", 5)
	h.do("GET", "/api/v1/accounts/"+a.ID, alice, "").account(t, http.StatusOK)
	h.do("GET", "/api/v1/accounts/"+a.ID, alice, "").account(t, http.StatusOK)
	h.do("POST", "/api/v1/accounts/"+a.ID+"/withdrawals", alice, `{"amount":6}`).problem(t, http.StatusConflict, "insufficient_funds")
	h.do("GET", "/nope/"+strings.Repeat("x", 20), "", "").problem(t, http.StatusNotFound, "route_not_found")
	// A counter with a value stays active (one only read would passivate
	// at once: it holds nothing).
	h.do("POST", "/api/v1/counters/met/increment", alice, "")

	r := h.do("GET", "/metrics", "", "")
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", r.status, r.header.Get("Content-Type"))
	}
	text := string(r.body)
	const req = "granary_http_requests_total"
	if v := metricValue(t, text, req, `{method="GET",route="/api/v1/accounts/:id",status="200"}`); v != 2 {
		t.Errorf("GET account count %v, want 2", v)
	}
	if v := metricValue(t, text, req, `{method="POST",route="/api/v1/accounts",status="201"}`); v != 1 {
		t.Errorf("open count %v, want 1", v)
	}
	if v := metricValue(t, text, req, `{method="POST",route="/api/v1/accounts/:id/withdrawals",status="409"}`); v != 1 {
		t.Errorf("refused withdrawal count %v, want 1", v)
	}
	if v := metricValue(t, text, req, `{method="GET",route="unmatched",status="404"}`); v != 1 {
		t.Errorf("unmatched count %v, want 1", v)
	}
	if strings.Contains(text, "/nope") {
		t.Error("an unknown path became a label value")
	}
	if v := metricValue(t, text, "granary_http_request_duration_seconds_count", `{method="GET",route="/api/v1/accounts/:id",status="200"}`); v != 2 {
		t.Errorf("latency samples %v, want 2", v)
	}
	if v := metricValue(t, text, "granary_grains_active", `{kind="account"}`); v != 1 {
		t.Errorf("account activations %v, want 1", v)
	}
	if v := metricValue(t, text, "granary_grains_active", `{kind="counter"}`); v != 1 {
		t.Errorf("counter activations %v, want 1", v)
	}
	if v := metricValue(t, text, "granary_ratelimit_rejected_total", `{by="address"}`); v != 0 {
		t.Errorf("rejections %v before any", v)
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if !strings.Contains(text, name) {
			t.Errorf("runtime metric %s missing", name)
		}
	}
}

// TestOperatorMetrics: saga outcomes and durations, grain call latency
// and retries, projection lag, live streams and the build, as an operator
// reads them after some traffic.
func TestOperatorMetrics(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	a, b := h.open(alice, "OPM-A", 100), h.open(alice, "OPM-B", 0)
	h.do("POST", "/api/v1/transfers", alice, fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":40}`, a.ID, b.ID)).
		decodeStatus(t, http.StatusCreated, &map[string]any{})
	h.do("POST", "/api/v1/transfers", alice, fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":400}`, a.ID, b.ID)).
		problem(t, http.StatusUnprocessableEntity, "saga_failed")
	// The summary catches up, so the lag read below is a settled 0.
	h.do("GET", "/api/v1/accounts/"+b.ID+"/summary?min_version=2", alice, "").decodeStatus(t, http.StatusOK, &map[string]any{})

	text := string(h.do("GET", "/metrics", "", "").body)
	if v := metricValue(t, text, "granary_saga_duration_seconds_count", `{kind="transfer",status="completed"}`); v != 1 {
		t.Errorf("completed transfers %v, want 1", v)
	}
	if v := metricValue(t, text, "granary_saga_duration_seconds_count", `{kind="transfer",status="compensated"}`); v != 1 {
		t.Errorf("compensated transfers %v, want 1", v)
	}
	if v := metricValue(t, text, "granary_grain_call_duration_seconds_count", `{kind="account",result="ok"}`); v < 4 {
		t.Errorf("account calls answered %v, want at least the two opens and the transfers' steps", v)
	}
	if strings.Contains(text, `granary_grain_call_retries_total{kind="account"}`) {
		t.Errorf("retries counted on a healthy single member:\n%s", grep(text, "granary_grain_call_retries_total"))
	}
	if v := metricValue(t, text, "granary_projection_lag", `{projection="account_summary"}`); v != 0 {
		t.Errorf("account_summary lag %v after catching up, want 0", v)
	}
	if v := metricValue(t, text, "granary_stream_subscribers", `{pool="user"}`); v != 0 {
		t.Errorf("user streams %v with none open", v)
	}
	if !strings.Contains(text, "granary_build_info{") || !strings.Contains(text, `goversion="go`) {
		t.Errorf("build info missing:\n%s", grep(text, "build_info"))
	}
}

// grep is the lines of text that contain s, for failure messages.
func grep(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestMetricsRegistryShared: the gateway serves the registry it is given,
// so other parts of the process (service breakers) appear on /metrics.
func TestMetricsRegistryShared(t *testing.T) {
	reg := metrics.NewRegistry()
	if err := metrics.RegisterBreaker(reg, "payments", func() float64 { return metrics.BreakerOpen }); err != nil {
		t.Fatal(err)
	}
	if err := metrics.RegisterBreaker(reg, "payments", func() float64 { return 0 }); err == nil {
		t.Fatal("a second gauge for one service was accepted")
	}
	h := newHarness(t, withDeps(func(d *gateway.Deps, _ string) { d.Metrics = reg }))
	if h.gw.Metrics() != reg {
		t.Fatal("gateway does not serve the given registry")
	}
	text := string(h.do("GET", "/metrics", "", "").body)
	if v := metricValue(t, text, "granary_breaker_state", `{service="payments"}`); v != metrics.BreakerOpen {
		t.Fatalf("breaker state %v", v)
	}
}

// TestMetricsRateLimited: refusals are counted by what identified the
// client.
func TestMetricsRateLimited(t *testing.T) {
	h := newHarness(t, withGatewayConfig(rateLimited(1)))
	alice := token(t, "alice")
	h.do("GET", "/health", alice, "")
	h.do("GET", "/health", alice, "").problem(t, http.StatusTooManyRequests, "rate_limited")
	h.do("GET", "/health", "", "")
	// /metrics itself is limited too; an admin's token is its own budget.
	text := string(h.do("GET", "/metrics", token(t, "ops"), "").body)
	if v := metricValue(t, text, "granary_ratelimit_rejected_total", `{by="subject"}`); v != 1 {
		t.Fatalf("subject rejections %v, want 1", v)
	}
	if v := metricValue(t, text, "granary_http_requests_total", `{method="GET",route="/health",status="429"}`); v != 1 {
		t.Fatalf("429s counted %v, want 1", v)
	}
}

// syncBuffer is a log sink safe for the gateway's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRequestScopedLogs: the access log and the error handler log through
// the request's logger, so their lines carry its request id.
func TestRequestScopedLogs(t *testing.T) {
	var logs syncBuffer
	h := newHarness(t, withDeps(func(d *gateway.Deps, _ string) {
		d.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	}))
	h.do("GET", "/health", "", "", "X-Request-ID", "trace-42")
	h.do("GET", "/api/v1/accounts/acc_"+strings.Repeat("0", 24), "", "", "X-Request-ID", "trace-43").problem(t, http.StatusUnauthorized, "unauthorized")
	h.do("GET", "/api/v1/accounts/acc_"+strings.Repeat("0", 24), token(t, "carol"), "", "X-Request-ID", "trace-44").problem(t, http.StatusNotFound, "not_found")
	out := logs.String()
	for _, want := range []string{
		`msg=request request_id=trace-42 method=GET path=/health route=/health status=200`,
		`msg=request request_id=trace-43 method=GET path=/api/v1/accounts/acc_000000000000000000000000 route=/api/v1/accounts/:id status=401`,
		// The access line names the caller and the problem's code.
		`code=unauthorized`,
		`subject=carol code=not_found`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
