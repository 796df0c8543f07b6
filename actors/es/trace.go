package es

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"granary/internal/tracing"
)

// serverSpan is built once: a variadic option per request would allocate.
var serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}

// startSpan continues the trace req carries with a span around its
// handling. An untraced request with no exporter installed costs nothing
// (context.Background, no span).
func (g *grain[S, E, Req, Reply]) startSpan(req Req) context.Context {
	ctx := context.Background()
	if t, ok := any(req).(traced); ok {
		ctx = tracing.WithTraceparent(ctx, t.GetTraceparent())
	}
	ctx, span := tracing.Start(ctx, g.cfg.spanName, serverSpan...)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("granary.grain.identity", g.ident()), attribute.String("granary.member", g.cfg.MemberID))
	}
	return ctx
}

// endSpan ends q's span and, at debug level, logs that the request was
// answered: with the request's trace id, the line that ties this member's
// log to the gateway's.
func (g *grain[S, E, Req, Reply]) endSpan(q queued[Req]) {
	if q.ctx == nil {
		return
	}
	trace.SpanFromContext(q.ctx).End()
	if g.initialised() && g.cfg.Logger.Enabled(q.ctx, slog.LevelDebug) {
		g.host.Logger().LogAttrs(q.ctx, slog.LevelDebug, "grain request answered", slog.String("command", q.req.GetCommandId()))
	}
}
