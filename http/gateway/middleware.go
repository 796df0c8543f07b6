package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"granary/http/auth"
	"granary/http/problem"
	"granary/http/ratelimit"
	"granary/http/reqlog"
	"granary/internal/tracing"
	"granary/messages"
)

// A client's request id is echoed only when it is short and plain, so it
// can go into logs and headers unescaped.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if !requestIDPattern.MatchString(id) {
			id = randomHex(16)
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b)
}

// serverSpan is built once: a variadic option per call would be an
// allocation on every request.
var serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}

// observe gives the request a logger naming its id (handlers and the
// problem handler log through it, see reqlog), and once it is answered
// records its metrics and access-log line. It renders an error itself, so
// the status it records is the one the client got.
func (g *Gateway) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		req := c.Request()
		id := c.Response().Header().Get(echo.HeaderXRequestID)
		// A client's traceparent is continued (a malformed one ignored);
		// without one and without an exporter no span is made at all.
		// The map is read directly: Header.Get would canonicalize the name
		// afresh (an allocation) on every request. net/http stores incoming
		// names canonicalized. tracestate is not carried (grains could not).
		ctx := req.Context()
		if tp := req.Header["Traceparent"]; len(tp) > 0 {
			ctx = tracing.WithTraceparent(ctx, tp[0])
		}
		ctx, span := tracing.Start(ctx, "http.request", serverSpan...)
		c.SetRequest(req.WithContext(reqlog.With(ctx, g.deps.Logger, id)))
		if err := next(c); err != nil {
			c.Error(err)
		}
		took := time.Since(start)
		status := c.Response().Status
		route := c.Path()
		if !g.routeSet[route] {
			route = unmatchedRoute
		}
		g.metrics.observe(req.Method, route, status, took)
		if span.IsRecording() {
			span.SetName(req.Method + " " + route)
			span.SetAttributes(attribute.String("http.request.method", req.Method), attribute.String("http.route", route),
				attribute.Int("http.response.status_code", status), attribute.String("granary.request_id", id))
			if status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
			span.End()
		}
		// Typed attributes: the access line is on every request's path.
		attrs := make([]slog.Attr, 0, 11)
		attrs = append(attrs, slog.String("request_id", id),
			slog.String("method", req.Method), slog.String("path", req.URL.Path), slog.String("route", route), slog.Int("status", status),
			slog.Float64("latency_ms", float64(took)/float64(time.Millisecond)),
			slog.String("client", ratelimit.ClientAddr(req, g.cfg.TrustedProxies).String()),
			slog.String("served_by", c.Response().Header().Get(headerServedBy)))
		// Who asked, and what went wrong in the contract's words: enough
		// to find a user's failing requests without their bodies.
		if sub := principal(c).Subject; sub != "" {
			attrs = append(attrs, slog.String("subject", sub))
		}
		if code, _ := c.Get(problem.CodeKey).(string); code != "" {
			attrs = append(attrs, slog.String("code", code))
		}
		g.deps.Logger.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
		return nil
	}
}

const (
	principalKey = "granary.principal"
	bearerKey    = "granary.bearer"
)

// bearerResult is a request's bearer token, verified once: the rate
// limiter needs the subject before routing, authenticate after.
type bearerResult struct {
	present bool
	p       auth.Principal
	err     error
}

func (g *Gateway) bearer(c echo.Context) bearerResult {
	if r, ok := c.Get(bearerKey).(bearerResult); ok {
		return r
	}
	var r bearerResult
	scheme, token, ok := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
	if ok && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(token) != "" {
		r.present = true
		r.p, r.err = g.deps.Verifier.Verify(strings.TrimSpace(token))
	}
	c.Set(bearerKey, r)
	return r
}

// authenticate admits a request carrying a valid bearer token.
func (g *Gateway) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		b := g.bearer(c)
		if !b.present {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="granary"`)
			return messages.Fail(messages.CodeUnauthorized, "missing bearer token")
		}
		if b.err != nil {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="granary", error="invalid_token"`)
			return messages.Fail(messages.CodeUnauthorized, "%v", b.err)
		}
		c.Set(principalKey, b.p)
		return next(c)
	}
}

// rateKey is whose budget a request spends: the subject of a valid token
// (one user, however many addresses), else the client's address. An
// invalid token counts against the address, so forging subjects buys
// nothing.
func (g *Gateway) rateKey(c echo.Context) ratelimit.Key {
	if b := g.bearer(c); b.present && b.err == nil {
		return ratelimit.Key{By: ratelimit.BySubject, ID: b.p.Subject}
	}
	return ratelimit.Key{By: ratelimit.ByAddress, ID: ratelimit.AddressKey(ratelimit.ClientAddr(c.Request(), g.cfg.TrustedProxies))}
}

// caller scopes idempotency keys: the authenticated subject, or on public
// routes the client's address, so that one anonymous client can neither
// see another's answer nor block its key.
func (g *Gateway) caller(c echo.Context) string {
	if s := principal(c).Subject; s != "" {
		return "subject:" + s
	}
	return "address:" + ratelimit.AddressKey(ratelimit.ClientAddr(c.Request(), g.cfg.TrustedProxies))
}

func principal(c echo.Context) auth.Principal {
	p, _ := c.Get(principalKey).(auth.Principal)
	return p
}
