package endtoend_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"granary/http/auth"
	"granary/http/gateway"
	"granary/internal/leakcheck"
	"granary/internal/tracing"
	"granary/testkit"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m, testkit.LeakOptions()...)
}

const (
	incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	traceID  = "0af7651916cd43dd8448eb211c80319c"

	transferParent = "00-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174-01"
	transferTrace  = "5b8efff798038103d269b633813fc60c"
)

// receiver is an OTLP/HTTP trace collector: it keeps the name and trace id
// of every span it is sent.
type receiver struct {
	mu    sync.Mutex
	spans []span
}

type span struct{ name, traceID string }

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want protobuf on /v1/traces", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 16<<20))
	var msg collectortrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &msg)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	for _, rs := range msg.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, span{name: s.GetName(), traceID: fmt.Sprintf("%x", s.GetTraceId())})
			}
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (r *receiver) received() []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]span(nil), r.spans...)
}

// syncBuffer is a log sink the gateway and the grains write concurrently.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines() []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(b.buf.Bytes(), []byte("\n")) {
		var rec map[string]any
		if json.Unmarshal(l, &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

// One request with a traceparent: its HTTP, grain call, grain and journal
// spans reach the OTLP endpoint, all in the incoming trace, and the
// gateway's and the grain's log lines name that trace.
func TestRequestSpansReachOTLPEndpoint(t *testing.T) {
	rcv := &receiver{}
	collector := httptest.NewServer(rcv)
	defer collector.Close()
	shutdown, err := tracing.Setup(func(k string) string {
		if k == tracing.EndpointEnv {
			return collector.URL
		}
		return ""
	}, "granary-test")
	if err != nil {
		t.Fatal(err)
	}
	flushed := false
	defer func() {
		if !flushed {
			_ = shutdown(context.Background())
		}
	}()

	var logs syncBuffer
	log := slog.New(tracing.NewHandler(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	// The grains log where the gateway does, as in a granary process.
	c := testkit.NewCluster(t, 1, func(c *testkit.Cluster) { c.Log = log })
	secret := []byte("granary-tracing-tests-secret-0123456789")
	v, err := auth.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	m := c.Member(0)
	g, err := gateway.New(gateway.DefaultConfig(), gateway.Deps{Member: m, Store: c.Store, Verifier: v, Logger: log, Services: m.Services()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(g.Close)
	t.Cleanup(srv.Close)

	tok, err := auth.Issue(secret, "ada", nil, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	post := func(path, body, traceparent string) map[string]any {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		if traceparent != "" {
			req.Header.Set("Traceparent", traceparent)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST %s: %d %v %v", path, resp.StatusCode, out, err)
		}
		return out
	}
	from := post("/api/v1/accounts", `{"account_number":"TR-1","owner_name":"Ada","initial_balance":100}`, incoming)
	to := post("/api/v1/accounts", `{"account_number":"TR-2","owner_name":"Ada"}`, "")
	// The transfer's own trace goes through the saga's steps into the
	// account grains they call.
	post("/api/v1/transfers", fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":40}`, from["id"], to["id"]), transferParent)

	// The grain ends its span as it answers; the answer may reach the
	// gateway first, so wait for the line that says it was answered.
	testkit.WaitFor(t, 5*time.Second, func() error {
		for _, rec := range logs.lines() {
			if rec["msg"] == "grain request answered" && rec["trace_id"] == transferTrace {
				return nil
			}
		}
		return fmt.Errorf("no grain log line of the transfer yet")
	})
	// Shutdown flushes every span ended so far to the collector.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	flushed = true

	want := map[string]bool{"POST /api/v1/accounts": false, "grain.call account": false, "grain account": false, "journal.append": false}
	for _, s := range rcv.received() {
		if _, ok := want[s.name]; ok && s.traceID == traceID {
			want[s.name] = true
		}
	}
	for name, seen := range want {
		if !seen {
			t.Errorf("span %q of trace %s never reached the collector (got %v)", name, traceID, rcv.received())
		}
	}

	steps, accountSpans := 0, 0
	for _, s := range rcv.received() {
		if s.traceID != transferTrace {
			continue
		}
		switch {
		case strings.HasPrefix(s.name, "saga.step "):
			steps++
		case s.name == "grain account":
			accountSpans++
		}
	}
	// withdraw and deposit: two steps, each calling an account grain.
	if steps < 2 || accountSpans < 2 {
		t.Errorf("transfer trace has %d saga steps and %d account grain spans, want ≥ 2 each (got %v)", steps, accountSpans, rcv.received())
	}

	var access, grain bool
	for _, rec := range logs.lines() {
		switch rec["msg"] {
		case "request":
			access = access || rec["trace_id"] == traceID
		case "grain request answered":
			grain = grain || rec["trace_id"] == traceID
		}
	}
	if !access || !grain {
		t.Errorf("trace id in the gateway's access line %v, in the grain's line %v; logs:\n%v", access, grain, logs.lines())
	}
}
