// Package reqlog carries a request-scoped logger in a context, so every log
// line about one request (access log, error handler, handlers) names the
// same request id without each caller having to pass it along.
package reqlog

import (
	"context"
	"log/slog"
)

type ctxKey struct{}

// With returns ctx carrying log.
func With(ctx context.Context, log *slog.Logger) context.Context {
	return context.WithValue(ctx, ctxKey{}, log)
}

// From returns the logger ctx carries, or fallback when it carries none
// (a request that never went through the gateway's middleware).
func From(ctx context.Context, fallback *slog.Logger) *slog.Logger {
	if l, ok := ctx.Value(ctxKey{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return fallback
}
