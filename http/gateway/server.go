package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"granary/http/problem"
)

// Gateway is the HTTP server of one member.
type Gateway struct {
	cfg  Config
	deps Deps
	echo *echo.Echo
	srv  *http.Server
}

// New builds the gateway; it serves nothing until Serve.
func New(cfg Config, deps Deps) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := deps.validate(); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, deps: deps}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = problem.Handler(deps.Logger)
	e.Pre(requestID)
	e.Use(middleware.Recover(), g.accessLog())
	g.routes(e)
	g.echo = e
	g.srv = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
	return g, nil
}

// Handler is the gateway's root handler (for tests with httptest).
func (g *Gateway) Handler() http.Handler { return g.echo }

// Serve answers requests on ln until Shutdown; it returns nil after a
// Shutdown.
func (g *Gateway) Serve(ln net.Listener) error {
	if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("gateway serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting requests and waits for those in flight until
// ctx ends.
func (g *Gateway) Shutdown(ctx context.Context) error {
	if err := g.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("gateway shutdown: %w", err)
	}
	return nil
}

func (g *Gateway) routes(e *echo.Echo) {
	authed := g.authenticate
	e.GET("/health", g.health)
	e.GET("/ready", g.ready)

	e.POST("/api/v1/accounts", g.openAccount, authed)
	e.GET("/api/v1/accounts/:id", g.getAccount, authed)
	e.POST("/api/v1/accounts/:id/deposits", g.deposit, authed)
	e.POST("/api/v1/accounts/:id/withdrawals", g.withdraw, authed)
	e.POST("/api/v1/accounts/:id/close", g.closeAccount, authed)
	e.GET("/api/v1/accounts/:id/events", g.accountEvents, authed)

	e.GET("/api/v1/counters/:name", g.getCounter, authed)
	e.POST("/api/v1/counters/:name/increment", g.incrementCounter, authed)
	e.POST("/api/v1/counters/:name/reset", g.resetCounter, authed)
	e.POST("/api/v1/counter-groups/:group/counters", g.spawnCounter, authed)
	e.POST("/api/v1/counter-groups/:group/broadcast", g.broadcastCounters, authed)
	e.GET("/api/v1/counter-groups/:group", g.getCounterGroup, authed)

	e.GET("/api/v1/cluster/members", g.clusterMembers, authed, requireAdmin)
	g.userRoutes(e)
}
