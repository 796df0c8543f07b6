package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"granary/actors/registry"
	"granary/persistence/reminder"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"granary/internal/logx"

	"granary/actors/inventory"
	"granary/cluster"
	"granary/http/auth"
	"granary/http/gateway"
	"granary/internal/tracing"
	"granary/messages"
	"granary/metrics"
	"granary/persistence"
	"granary/persistence/instrumented"
	"granary/persistence/memory"
	"granary/persistence/redis"
)

// seedAdmin creates user admin once: every member tries at start, the
// journal lets exactly one register it.
func seedAdmin(ctx context.Context, deps gateway.Deps, cfg config, log *slog.Logger) error {
	_, err := gateway.RegisterUser(ctx, deps, 30*time.Second, "admin", cfg.AdminPassword, "Administrator", []string{auth.RoleAdmin}, nil)
	var f *messages.Failure
	switch {
	case err == nil:
		log.Info("created user admin from GRANARY_ADMIN_PASSWORD")
	case errors.As(err, &f) && f.GetCode() == messages.CodeAlreadyExists:
		log.Info("user admin already exists; GRANARY_ADMIN_PASSWORD not applied again")
	default:
		return fmt.Errorf("seed admin user: %w", err)
	}
	return nil
}

// devStock is what dev mode starts with, when the products are new.
var devStock = map[string]int64{"product_1": 100, "product_2": 50}

func seedStock(ctx context.Context, member *cluster.Member, log *slog.Logger) error {
	for product, n := range devStock {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := member.Call(cctx, inventory.Kind, product, &messages.InventoryRequest{Command: &messages.InventoryRequest_Get{Get: &messages.GetStock{}}})
		if err == nil {
			if r, _ := res.(*messages.InventoryReply); r.GetFailure().GetCode() == messages.CodeNotFound {
				_, err = member.Call(cctx, inventory.Kind, product, &messages.InventoryRequest{CommandId: "dev-seed-" + product,
					Command: &messages.InventoryRequest_Set{Set: &messages.SetStock{Available: n}}})
				log.Info("dev stock seeded", "product", product, "available", n)
			}
		}
		cancel()
		if err != nil {
			return fmt.Errorf("seed dev stock %s: %w", product, err)
		}
	}
	return nil
}

// libRepeatWindow and libRepeatKeys bound how often a library may repeat
// one log line (see logx.Dedupe).
const (
	libRepeatWindow = 30 * time.Second
	libRepeatKeys   = 256
)

// registerBackends plugs the backends this binary ships into the
// persistence registry, once per process.
var registerBackends = sync.OnceFunc(func() {
	persistence.Register("redis", redis.Open)
	persistence.Register("rediss", redis.Open)
	persistence.Register("memory", memory.Open)
})

// devTokenTTL is how long the printed dev token stays valid.
const devTokenTTL = 24 * time.Hour

// start wires config → store → cluster member → gateway, serves until ctx
// ends, then takes them down in reverse order.
func start(ctx context.Context, m mode, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(m, getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	// go-redis prints pool and connection trouble with its own logger,
	// process-wide: route it through ours, a repeated line once per 30 s.
	goredis.SetLogger(logx.Redis(slog.New(logx.Dedupe(log.Handler(), slog.LevelWarn, libRepeatWindow, libRepeatKeys))))
	for _, w := range cfg.warnings {
		log.Warn(w)
	}
	stopTracing, err := tracing.Setup(getenv, "granary")
	if err != nil {
		return err
	}
	defer func() {
		// Last down: spans of the requests drained at shutdown still go.
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(c); err != nil {
			log.Warn("spans not flushed", "err", err)
		}
	}()
	if cfg.PprofAddr != "" {
		// First up, last down: a profile can cover start-up and shutdown.
		stopPprof, addr, err := startPprof(cfg.PprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
		log.Info("pprof serving", "url", "http://"+addr.String()+"/debug/pprof/")
	}

	registerBackends()

	storeURL, storeNote := cfg.RedisURL, "Redis at "+redactURL(cfg.RedisURL)
	if storeURL == "" {
		// The embedded store speaks the Redis protocol, so dev runs the
		// very same journal code as production.
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("start embedded store: %w", err)
		}
		defer mr.Close()
		storeURL = "redis://" + mr.Addr()
		storeNote = "embedded in-process store (miniredis at " + mr.Addr() + "): data is NOT kept across restarts; set GRANARY_REDIS_URL for durable storage"
	}
	openCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	store, err := persistence.Open(openCtx, persistence.BackendConfig{URL: storeURL, Partitions: cfg.JournalPartitions, KeyPrefix: cfg.KeyPrefix})
	cancel()
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer store.Close()
	reg := metrics.NewRegistry()
	if gc, ok := store.(interface{ GroupCommitStats() (uint64, uint64) }); ok {
		if err := metrics.RegisterPipeline(reg, "journal", gc.GroupCommitStats); err != nil {
			return err
		}
	}
	if store, err = instrumented.New(store, reg); err != nil {
		return err
	}
	store = newGatedStore(store)
	edge, err := openEdgeRedis(storeURL)
	if err != nil {
		return err
	}
	if edge != nil {
		defer edge.Close()
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("listen on %s: address already in use: another process holds it; set GRANARY_HTTP_ADDR to a free host:port: %w", cfg.HTTPAddr, err)
	}
	if err != nil {
		return fmt.Errorf("listen on %s (GRANARY_HTTP_ADDR): %w", cfg.HTTPAddr, err)
	}
	defer ln.Close()

	grains := cfg.Grains
	grains.Account.Store = store
	grains.Account.Logger = log
	if edge != nil {
		// Every member shares the registry's view and timers through the
		// store's Redis.
		grains.Registry.View = registry.NewRedisView(edge, cfg.KeyPrefix)
		// Timers spread over as many hash slots as the journal does (a
		// count that, like the journal's, only grows).
		parts := min(max(cfg.JournalPartitions, 1), reminder.MaxPartitions)
		if grains.Registry.Reminders, err = reminder.NewRedisPartitioned(edge, cfg.KeyPrefix, parts); err != nil {
			return err
		}
	}
	if err := grains.Validate(); err != nil {
		return err
	}
	member, err := cluster.Start(cfg.Cluster, log, grains)
	if err != nil {
		return err
	}
	defer member.Stop(true)

	verifier, err := auth.NewVerifier(cfg.JWTSecret)
	if err != nil {
		return err
	}
	for _, st := range member.Services().Statuses() {
		c, err := member.Services().Client(st.Name)
		if err != nil {
			return err
		}
		// gobreaker's states are 0 closed, 1 half-open, 2 open: the gauge's.
		if err := metrics.RegisterBreaker(reg, st.Name, func() float64 { return float64(c.BreakerState()) }); err != nil {
			return err
		}
	}
	if err := metrics.RegisterReminders(reg, func() (uint64, uint64, uint64, uint64) {
		st := member.ReminderStats()
		return st.Claimed, st.Woken, st.WakeErrors, st.ClaimErrors
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := member.Reminders().Len(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	}); err != nil {
		return err
	}
	deps := gateway.Deps{Member: member, Store: store, Verifier: verifier, Logger: log, Services: member.Services(), Redis: edge, Metrics: reg}
	gw, err := gateway.New(cfg.Gateway, deps)
	if err != nil {
		return err
	}
	if m == modeDev {
		if err := seedStock(ctx, member, log); err != nil {
			return err
		}
	}
	if cfg.AdminPassword != "" {
		if err := seedAdmin(ctx, deps, cfg, log); err != nil {
			return err
		}
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- gw.Serve(ln) }()

	if err := announce(stdout, m, cfg, ln.Addr().String(), member, storeNote); err != nil {
		return err
	}
	log.Info("granary started", "http", ln.Addr().String(), "member", member.ID(), "mode", map[mode]string{modeDev: "dev", modeNode: "node"}[m])

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return err
	}
	// Readiness first, so load balancers stop sending while the listener
	// still answers; then close it and let requests in flight finish
	// (bounded); the deferred member.Stop leaves the cluster only after.
	log.Info("shutting down: draining", "delay", cfg.ShutdownDelay, "drain_timeout", cfg.DrainTimeout)
	gw.Drain()
	select {
	case <-time.After(cfg.ShutdownDelay):
	case err := <-serveErr:
		return err
	}
	shCtx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	if err := gw.Shutdown(shCtx); err != nil {
		log.Warn("requests still in flight at the drain timeout were cut", "err", err)
	}
	err = <-serveErr
	log.Info("gateway drained; leaving the cluster")
	return err
}

func announce(w io.Writer, m mode, cfg config, addr string, member *cluster.Member, storeNote string) error {
	base := "http://" + addr
	fmt.Fprintf(w, "Granary listening on %s\n", base)
	fmt.Fprintf(w, "  member:  %s (remoting %s, provider %s)\n", member.ID(), member.Address(), cfg.Cluster.Provider)
	fmt.Fprintf(w, "  storage: %s\n", storeNote)
	if m != modeDev {
		return nil
	}
	token, err := auth.Issue(cfg.JWTSecret, "dev-admin", []string{auth.RoleAdmin}, time.Now(), devTokenTTL)
	if err != nil {
		return err
	}
	if cfg.secretWasGenerated {
		fmt.Fprintln(w, "  JWT secret: generated for this run (set GRANARY_JWT_SECRET to keep tokens valid across restarts)")
	}
	fmt.Fprintf(w, "  admin token (valid %s): %s\n", devTokenTTL, token)
	fmt.Fprintf(w, "  try:\n    curl -s -X POST %s/api/v1/accounts -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d '{\"account_number\":\"ACC-1\",\"owner_name\":\"Ada\",\"initial_balance\":100000}'\n", base, token)
	return nil
}

// newLogger builds the process logger; a line logged with a traced
// context names its trace_id and span_id.
func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogJSON {
		return slog.New(tracing.NewHandler(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(tracing.NewHandler(slog.NewTextHandler(w, opts)))
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// openEdgeRedis connects to the store's Redis for what the gateways share
// (rate-limit budgets, idempotency records, the registry's view and
// timers); nil when the store is not Redis. The client is the store's kind
// (a ClusterClient for the addr= cluster form) with the store's timeouts,
// and callers' deadlines bound each call (redis.NewClient).
func openEdgeRedis(storeURL string) (goredis.UniversalClient, error) {
	if u, err := url.Parse(storeURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return nil, nil
	}
	client, err := redis.NewClient(storeURL)
	if err != nil {
		return nil, fmt.Errorf("gateway Redis: %w", err)
	}
	return client, nil
}

// redactURL hides a password in a Redis URL before it is printed.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
