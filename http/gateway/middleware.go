package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"granary/http/auth"
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

func (g *Gateway) accessLog() echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus: true, LogMethod: true, LogURIPath: true, LogLatency: true, LogError: true,
		HandleError: true, // let the problem handler set the final status first
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			g.deps.Logger.Info("request",
				"request_id", c.Response().Header().Get(echo.HeaderXRequestID),
				"method", v.Method, "path", v.URIPath, "status", v.Status,
				"latency_ms", float64(v.Latency)/float64(time.Millisecond),
				"served_by", c.Response().Header().Get(headerServedBy))
			return nil
		},
	})
}

const principalKey = "granary.principal"

// authenticate admits a request carrying a valid bearer token.
func (g *Gateway) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get(echo.HeaderAuthorization)
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="granary"`)
			return messages.Fail(messages.CodeUnauthorized, "missing bearer token")
		}
		p, err := g.deps.Verifier.Verify(strings.TrimSpace(token))
		if err != nil {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="granary", error="invalid_token"`)
			return messages.Fail(messages.CodeUnauthorized, "%v", err)
		}
		c.Set(principalKey, p)
		return next(c)
	}
}

func principal(c echo.Context) auth.Principal {
	p, _ := c.Get(principalKey).(auth.Principal)
	return p
}
