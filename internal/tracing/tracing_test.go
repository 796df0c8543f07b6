package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"granary/internal/leakcheck"
	"granary/internal/tracing"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

const (
	incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	traceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
)

func TestTraceparentRoundTrip(t *testing.T) {
	ctx := tracing.WithTraceparent(context.Background(), incoming)
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || !sc.IsRemote() || sc.TraceID().String() != traceID {
		t.Fatalf("span context %+v, want remote trace %s", sc, traceID)
	}
	// Without an exporter a child is non-recording but keeps the trace.
	child, span := tracing.Start(ctx, "child")
	defer span.End()
	if span.IsRecording() {
		t.Error("span records with no exporter installed")
	}
	if got := tracing.Traceparent(child); got != incoming {
		t.Errorf("Traceparent = %q, want %q", got, incoming)
	}
}

func TestMalformedTraceparentIgnored(t *testing.T) {
	for _, tp := range []string{
		"",
		"garbage",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",       // no flags
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",    // zero trace id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",    // zero span id
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // forbidden version
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",    // upper case
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx", // v00 with extra
	} {
		ctx := tracing.WithTraceparent(context.Background(), tp)
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			t.Errorf("%q: got valid span context %s", tp, sc.TraceID())
		}
		if got := tracing.Traceparent(ctx); got != "" {
			t.Errorf("%q: Traceparent = %q, want empty", tp, got)
		}
	}
}

// The untraced path is on every request: it must cost nothing.
func TestUntracedStartAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		c, span := tracing.Start(tracing.WithTraceparent(ctx, ""), "x")
		span.End()
		_ = tracing.Traceparent(c)
	})
	if allocs != 0 {
		t.Errorf("untraced Start allocates %.0f times, want 0", allocs)
	}
}

func TestHandlerAddsTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(tracing.NewHandler(slog.NewJSONHandler(&buf, nil))).With("request_id", "r1")
	ctx := tracing.WithTraceparent(context.Background(), incoming)

	log.InfoContext(ctx, "with ctx")
	tracing.BindContext(ctx, log).Info("bound")
	log.Info("untraced")

	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 3 {
		t.Fatalf("got %d lines:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{traceID, traceID, ""} {
		var rec map[string]any
		if err := json.Unmarshal(lines[i], &rec); err != nil {
			t.Fatal(err)
		}
		got, _ := rec["trace_id"].(string)
		if got != want || rec["request_id"] != "r1" {
			t.Errorf("line %d: trace_id %q request_id %v, want %q r1", i, got, rec["request_id"], want)
		}
		if want != "" && rec["span_id"] != "00f067aa0ba902b7" {
			t.Errorf("line %d: span_id %v", i, rec["span_id"])
		}
	}
}

func TestSetupWithoutEndpointInstallsNothing(t *testing.T) {
	shutdown, err := tracing.Setup(func(string) string { return "" }, "granary")
	if err != nil {
		t.Fatal(err)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, span := tracing.Start(context.Background(), "root")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Error("a root span was made with no endpoint set")
	}
}
