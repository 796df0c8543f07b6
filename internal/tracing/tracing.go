// Package tracing owns Granary's OpenTelemetry wiring: the process's
// tracer provider (OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set,
// none otherwise), the W3C traceparent that grain requests carry across
// members, and the slog handler that names a request's trace in its log
// lines.
//
// Without an exporter the global provider stays OpenTelemetry's no-op one:
// starting a span costs no allocation and yields a non-recording span that
// carries its parent's span context, so an incoming traceparent still
// reaches every log line and every grain request of its request.
package tracing

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// EndpointEnv is the standard variable that turns exporting on.
const EndpointEnv = "OTEL_EXPORTER_OTLP_ENDPOINT"

// exportTimeout bounds each export request to the collector.
const exportTimeout = 5 * time.Second

// propagator is stateless; one value serves every call.
var propagator = propagation.TraceContext{}

// Tracer is Granary's tracer from the global provider (no-op until Setup
// installed an exporting one).
func Tracer() trace.Tracer { return otel.Tracer("granary") }

// exporting is set once Install put an exporting provider in place. Until
// then a context without a span context needs no span at all: Start
// returns it unchanged (the hot path allocates nothing for tracing).
var exporting atomic.Bool

// noSpan is boxed once: returning noop.Span{} as a trace.Span would
// allocate the box on every call the inliner does not see through.
var noSpan trace.Span = noop.Span{}

// Install makes tp the global tracer provider and turns root spans on.
// Setup calls it; tests call it with a provider of their own.
func Install(tp trace.TracerProvider) {
	otel.SetTracerProvider(tp)
	exporting.Store(true)
}

// Start starts a span named name as a child of ctx's span. With no
// exporter installed and no trace in ctx it starts nothing and returns
// ctx with its (no-op) span.
func Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !exporting.Load() && !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, noSpan
	}
	return Tracer().Start(ctx, name, opts...)
}

// Setup installs the process's tracer provider and propagator. With
// OTEL_EXPORTER_OTLP_ENDPOINT unset (getenv returns "") it installs nothing
// and its shutdown is a no-op. Otherwise spans are batched to that
// endpoint over OTLP/HTTP (the exporter reads the other OTEL_EXPORTER_OTLP_*
// variables itself, but the endpoint is getenv's); sampling is
// parent-based, sampling root spans. shutdown flushes what is buffered,
// bounded by its ctx.
func Setup(getenv func(string) string, service string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagator)
	none := func(context.Context) error { return nil }
	endpoint := strings.TrimSpace(getenv(EndpointEnv))
	if endpoint == "" {
		return none, nil
	}
	// The variable names the collector's base URL; traces go to its
	// /v1/traces (as the exporter would derive it from the environment).
	exp, err := otlptracehttp.New(context.Background(),
		otlptracehttp.WithEndpointURL(strings.TrimRight(endpoint, "/")+"/v1/traces"),
		otlptracehttp.WithTimeout(exportTimeout))
	if err != nil {
		return none, fmt.Errorf("tracing: OTLP exporter for %s: %w", endpoint, err)
	}
	res := resource.NewSchemaless(semconv.ServiceName(service))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	)
	Install(tp)
	return func(ctx context.Context) error {
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("tracing: flush spans: %w", err)
		}
		return nil
	}, nil
}

// header is a carrier holding only traceparent: a grain request carries
// nothing else, and a map per request would be garbage on the hot path.
type header struct{ traceparent string }

const traceparentKey = "traceparent"

func (h *header) Get(key string) string {
	if key == traceparentKey {
		return h.traceparent
	}
	return ""
}

func (h *header) Set(key, value string) {
	if key == traceparentKey {
		h.traceparent = value
	}
}

func (h *header) Keys() []string { return []string{traceparentKey} }

// Traceparent is ctx's span context as a W3C traceparent, "" when ctx
// carries no valid one.
func Traceparent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	var h header
	propagator.Inject(ctx, &h)
	return h.traceparent
}

// WithTraceparent returns ctx continuing the remote trace tp names. An
// empty or malformed tp leaves ctx as it is: tracing never fails a request.
func WithTraceparent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	h := header{traceparent: tp}
	return propagator.Extract(ctx, &h)
}
