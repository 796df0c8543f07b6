package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"granary/http/problem"
	"granary/messages"
)

func (g *Gateway) health(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyProbeTimeout bounds the storage probe of /ready, so /ready answers
// within a second even when the store hangs (a load balancer's probe
// usually gives up after one or two).
const readyProbeTimeout = 500 * time.Millisecond

// drainFlag is set once the member is shutting down.
type drainFlag struct{ atomic.Bool }

// Drain makes /ready answer 503 from now on while every other route keeps
// serving: a load balancer stops sending new requests before Shutdown
// closes the listener, and requests in flight finish with their answers.
func (g *Gateway) Drain() { g.drain.Store(true) }

func (g *Gateway) ready(c echo.Context) error {
	checks := map[string]string{}
	ok := true
	if g.drain.Load() {
		checks["shutdown"] = "draining"
		ok = false
	}
	if g.deps.Member.Joined() {
		checks["cluster"] = "ok"
	} else {
		checks["cluster"] = "not joined"
		ok = false
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), readyProbeTimeout)
	defer cancel()
	if err := g.deps.Store.Ping(ctx); err != nil {
		// The driver's error may name hosts; log it, show only the verdict.
		g.deps.Logger.Warn("readiness: storage probe failed", "err", err)
		checks["storage"] = "unavailable"
		ok = false
	} else {
		checks["storage"] = "ok"
	}
	if !ok {
		c.Response().Header().Set("Retry-After", "1")
		// A problem+json body (every error is one) that still names the
		// failing check.
		return c.Blob(http.StatusServiceUnavailable, problem.ContentType, mustJSON(map[string]any{
			"type": "about:blank", "title": "Service Unavailable", "status": http.StatusServiceUnavailable,
			"code": messages.CodeServiceUnavailable, "detail": "member is not ready", "checks": checks,
		}))
	}
	return c.JSON(http.StatusOK, map[string]any{"status": "ready", "checks": checks})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only maps of strings and ints reach here
	}
	return b
}
