// Package reqlog carries a request's id in its context, so every log line
// about one request (access log, error handler, handlers) names the same
// request id, and its trace when it has one (internal/tracing), without
// each caller having to pass it along.
package reqlog

import (
	"context"
	"log/slog"
	"sync/atomic"

	"granary/internal/tracing"
)

type ctxKey struct{}

type entry struct {
	base   *slog.Logger
	id     string
	logger atomic.Pointer[slog.Logger] // built by the first From
}

// With returns ctx carrying the request id and the logger to name it
// with. The request's logger is built only when something logs through
// it (From): a With per request cost every request a handler clone, and
// most requests log nothing but their access line.
func With(ctx context.Context, base *slog.Logger, requestID string) context.Context {
	return context.WithValue(ctx, ctxKey{}, &entry{base: base, id: requestID})
}

// From returns a logger naming the request ctx carries, or fallback when it
// carries none (a request that never went through the gateway's
// middleware). The logger logs with ctx's span context when a call passes
// none, so a tracing.Handler below it names the request's trace.
func From(ctx context.Context, fallback *slog.Logger) *slog.Logger {
	if e, ok := ctx.Value(ctxKey{}).(*entry); ok && e.base != nil {
		if l := e.logger.Load(); l != nil {
			return l
		}
		l := tracing.BindContext(ctx, e.base).With("request_id", e.id)
		e.logger.Store(l)
		return l
	}
	return fallback
}
