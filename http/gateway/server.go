package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"granary/http/idempotency"
	"granary/http/problem"
	"granary/http/proxy"
	"granary/http/ratelimit"
	"granary/metrics"
)

// Gateway is the HTTP server of one member.
type Gateway struct {
	cfg  Config
	deps Deps
	clients
	// events is deps.Events (or the journal reader on deps.Store).
	events   EventReader
	echo     *echo.Echo
	srv      *http.Server
	registry *prometheus.Registry
	metrics  *httpMetrics
	limiter  *ratelimit.Limiter
	idem     *idempotency.Middleware
	// ownIdem is the store the gateway built (nil if Deps gave one):
	// Close closes it.
	ownIdem *idempotency.RedisStore
	// routeSet holds the registered route templates: the only values of
	// the route label.
	routeSet map[string]bool
	streams  *streams
	history  *history  // the dashboard's charts (history.go)
	drain    drainFlag // set by Drain: /ready says 503
	// watcher is this gateway's copy of the registry view; proxy sends
	// routed requests to instances, counting them in counts (nil without
	// Redis: this gateway's own counts only).
	watcher registryView
	proxy   *proxy.Proxy
	counts  *proxy.RedisCounts
	stopReg sync.Once
	// proxyChain is unrouted behind the middleware every request passes.
	proxyChain echo.HandlerFunc
}

// New builds the gateway; it serves nothing until Serve.
func New(cfg Config, deps Deps) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := deps.validate(cfg); err != nil {
		return nil, err
	}
	deps = deps.withReaders()
	g := &Gateway{cfg: cfg, deps: deps, clients: newClients(deps), events: deps.Events, registry: deps.Metrics, routeSet: map[string]bool{}}
	if g.registry == nil {
		g.registry = metrics.NewRegistry()
	}
	if err := g.buildMiddleware(); err != nil {
		return nil, err
	}
	g.initStreams()
	if err := g.startRegistry(); err != nil {
		return nil, err
	}
	g.startHistory() // after the last error return: Close stops it
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = problem.Handler(deps.Logger)
	// observe outermost, so it records the final status of everything
	// below, a recovered panic included; the rate limit before any
	// handler work, and for every path (unknown ones too: scanners pay).
	outer := []echo.MiddlewareFunc{g.observe, middleware.Recover(), g.limiter.Middleware(g.rateKey)}
	g.proxyChain = g.unrouted
	for i := len(outer) - 1; i >= 0; i-- {
		g.proxyChain = outer[i](g.proxyChain)
	}
	e.Pre(requestID, allowHead, g.proxyRouted)
	e.Use(outer...)
	g.routes(e)
	for _, r := range e.Routes() {
		g.routeSet[r.Path] = true
	}
	g.routeSet[proxiedRoute] = true
	g.echo = e
	g.srv = &http.Server{
		Handler:           answerHeadAsGet(e),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
	return g, nil
}

func (g *Gateway) buildMiddleware() error {
	m, err := newHTTPMetrics(g.registry, g)
	if err != nil {
		return err
	}
	g.metrics = m
	rl := ratelimit.Config{PerMinute: g.cfg.RateLimit, KeyPrefix: g.cfg.KeyPrefix, Timeout: ratelimit.DefaultTimeout}
	if g.limiter, err = ratelimit.New(g.deps.Redis, rl, g.deps.Logger, g.registry); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	store := g.deps.Idempotency
	switch {
	case store != nil:
	case g.deps.Redis != nil:
		if g.ownIdem, err = idempotency.NewPipelinedRedisStore(g.deps.Redis, g.cfg.KeyPrefix); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		store = g.ownIdem
		if err := metrics.RegisterPipeline(g.registry, "idempotency", g.ownIdem.PipelineStats); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	default:
		g.deps.Logger.Warn("idempotency records are kept in this process only: no Redis configured")
		store = idempotency.NewMemoryStore(0, nil)
	}
	ic := idempotency.DefaultConfig()
	ic.Store, ic.TTL, ic.PendingTTL, ic.BodyLimit = store, g.cfg.IdempotencyTTL, g.cfg.IdempotencyPendingTTL, g.cfg.BodyLimit
	// A retry waits for a first attempt that is still running as long as
	// that attempt may still be waiting for its grain.
	ic.Wait = g.cfg.CallTimeout
	if g.idem, err = idempotency.New(ic, g.deps.Logger, g.registry); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// Handler is the gateway's root handler (for tests with httptest).
func (g *Gateway) Handler() http.Handler { return g.srv.Handler }

// Metrics is the registry /metrics serves (Deps.Metrics when given).
func (g *Gateway) Metrics() *prometheus.Registry { return g.registry }

// Route is one registered route; Path is an OpenAPI template
// ("/api/v1/accounts/{id}").
type Route struct {
	Method string
	Path   string
}

// Routes lists the registered routes, sorted by path and method.
func (g *Gateway) Routes() []Route {
	var out []Route
	for _, r := range g.echo.Routes() {
		out = append(out, Route{Method: r.Method, Path: openAPIPath(r.Path)})
	}
	slices.SortFunc(out, func(a, b Route) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	})
	return out
}

// openAPIPath turns Echo's ":name" segments into OpenAPI's "{name}".
func openAPIPath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if name, ok := strings.CutPrefix(s, ":"); ok {
			segs[i] = "{" + name + "}"
		} else if s == "*" {
			segs[i] = "{path}"
		}
	}
	return strings.Join(segs, "/")
}

// mutating is the middleware of every mutating POST: it honours
// Idempotency-Key (see idempotency.Middleware.Func). It goes after
// authenticate where there is one, since keys are per caller; on a
// public route the caller is the client's address.
func (g *Gateway) mutating() echo.MiddlewareFunc { return g.idem.Func(g.caller) }

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
	g.closeStreams() // open streams would otherwise hold the shutdown until ctx ends
	err := g.srv.Shutdown(ctx)
	// After the requests in flight drained: one cut midway through its
	// idempotency call would answer 503 or leave its record pending.
	g.closeIdempotency()
	g.stopRegistry()
	if err != nil {
		return fmt.Errorf("gateway shutdown: %w", err)
	}
	return nil
}

// routes is the route table. Every mutating POST takes `mutating` (after
// `authed` where there is one, since idempotency keys are per caller):
// it honours Idempotency-Key. docs/openapi.yaml documents every route
// (TestOpenAPICoversRoutes holds both to each other).
func (g *Gateway) routes(e *echo.Echo) {
	authed, mutating := g.authenticate, g.mutating()
	e.GET("/health", g.health)
	e.GET("/ready", g.ready)
	e.GET("/metrics", echo.WrapHandler(metrics.Handler(g.registry)))

	e.POST("/api/v1/accounts", g.openAccount, authed, mutating)
	e.GET("/api/v1/accounts/:id", g.getAccount, authed)
	e.POST("/api/v1/accounts/:id/deposits", g.deposit, authed, mutating)
	e.POST("/api/v1/accounts/:id/withdrawals", g.withdraw, authed, mutating)
	e.POST("/api/v1/accounts/:id/close", g.closeAccount, authed, mutating)
	e.GET("/api/v1/accounts/:id/events", g.accountEvents, authed)

	e.GET("/api/v1/counters/:name", g.getCounter, authed)
	e.POST("/api/v1/counters/:name/increment", g.incrementCounter, authed, mutating)
	e.POST("/api/v1/counters/:name/reset", g.resetCounter, authed, mutating)
	e.POST("/api/v1/counter-groups/:group/counters", g.spawnCounter, authed, mutating)
	e.POST("/api/v1/counter-groups/:group/broadcast", g.broadcastCounters, authed, mutating)
	e.GET("/api/v1/counter-groups/:group", g.getCounterGroup, authed)
	e.GET("/api/v1/counter-groups/:group/counters/:counter", g.getChildCounter, authed)
	e.POST("/api/v1/counter-groups/:group/counters/:counter/increment", g.incrementChildCounter, authed, mutating)
	e.POST("/api/v1/counter-groups/:group/counters/:counter/reset", g.resetChildCounter, authed, mutating)

	e.GET("/api/v1/cluster/members", g.clusterMembers, authed, requireAdmin)
	g.userRoutes(e)
	g.streamRoutes(e)
	g.projectionRoutes(e)
	g.accountListRoutes(e)
	g.registryRoutes(e)
	g.dashboardRoutes(e)
}
