package tracing

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Handler adds trace_id and span_id to every record logged with a context
// that carries a valid span context (LogAttrs(ctx, …), InfoContext, or a
// logger bound with BindContext). Records without one pass unchanged.
type Handler struct{ inner slog.Handler }

// NewHandler wraps inner.
func NewHandler(inner slog.Handler) *Handler { return &Handler{inner: inner} }

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.inner.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{inner: h.inner.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name)}
}

// bound hands every record the context it was bound to when the call
// brought none with a span: for loggers whose callers log without a
// context (logger.Info) but belong to one request.
type bound struct {
	inner slog.Handler
	ctx   context.Context
}

// BindContext returns l logging with ctx's span context whenever a call
// passes none; l itself when ctx carries no valid span context (nothing
// to add, nothing to allocate).
func BindContext(ctx context.Context, l *slog.Logger) *slog.Logger {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return l
	}
	return slog.New(&bound{inner: l.Handler(), ctx: ctx})
}

func (b *bound) Enabled(ctx context.Context, l slog.Level) bool { return b.inner.Enabled(ctx, l) }

func (b *bound) Handle(ctx context.Context, r slog.Record) error {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = b.ctx
	}
	return b.inner.Handle(ctx, r)
}

func (b *bound) WithAttrs(as []slog.Attr) slog.Handler {
	return &bound{inner: b.inner.WithAttrs(as), ctx: b.ctx}
}

func (b *bound) WithGroup(name string) slog.Handler {
	return &bound{inner: b.inner.WithGroup(name), ctx: b.ctx}
}
