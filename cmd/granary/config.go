package main

import (
	"errors"
	"fmt"
	"granary/actors/registry"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"granary/actors/payment"
	"granary/actors/service"
	"granary/cluster"
	"granary/cluster/balancer"
	"granary/http/auth"
	"granary/http/gateway"
	"granary/http/ratelimit"
	"granary/persistence"
	"granary/persistence/redis"
)

type mode int

const (
	modeDev mode = iota
	modeNode
)

// config is everything a member reads from its environment.
type config struct {
	HTTPAddr           string
	RedisURL           string
	JWTSecret          []byte
	RateLimit          int
	TrustedProxies     []string
	AdminPassword      string
	JournalPartitions  int
	KeyPrefix          string
	LogLevel           slog.Level
	LogJSON            bool
	Cluster            cluster.Config
	Grains             cluster.GrainsConfig
	Gateway            gateway.Config
	ShutdownDelay      time.Duration // /ready says 503 this long before the listener closes
	DrainTimeout       time.Duration // bound on requests in flight finishing at shutdown
	PprofAddr          string        // loopback host:port serving net/http/pprof; "" = off
	secretWasGenerated bool
	// warnings are settings accepted but likely mistaken, for the log.
	warnings []string
}

// setting documents one variable; help prints the table.
type setting struct {
	name, def, doc string
	parse          func(c *config, v string) error
}

func settings(m mode) []setting {
	rateDef := "600"
	if m == modeDev {
		rateDef = "0"
	}
	return []setting{
		{"GRANARY_HTTP_ADDR", "127.0.0.1:8080", "gateway listen address", func(c *config, v string) error { c.HTTPAddr = v; return nil }},
		{"GRANARY_REDIS_URL", "embedded (dev only)", "Redis for the journal, snapshots, read models, saga index, idempotency records and rate limits (redis://host:port/db; Redis Cluster: redis://h1:p1?addr=h2:p2&addr=h3:p3)", func(c *config, v string) error { c.RedisURL = v; return nil }},
		{"GRANARY_JWT_SECRET", "generated in dev", "HS256 secret, at least 32 bytes", func(c *config, v string) error { c.JWTSecret = []byte(v); return nil }},
		{"GRANARY_RATE_LIMIT", rateDef, "requests per minute per client (token subject, else address), shared by all gateways through Redis; 0 = off", intSetting(func(c *config) *int { return &c.RateLimit }, 0)},
		{"GRANARY_TRUSTED_PROXIES", "", "comma-separated CIDRs (or addresses) whose X-Forwarded-For is believed", func(c *config, v string) error {
			c.TrustedProxies = splitList(v)
			var err error
			c.Gateway.TrustedProxies, err = ratelimit.ParseTrustedProxies(c.TrustedProxies)
			return err
		}},
		{"GRANARY_REGISTRY_ALLOWED_HOSTS", "127.0.0.0/8,::1", "comma-separated CIDRs (or addresses) that registered service instances may have: the gateway connects to them, so nothing else can be aimed at", func(c *config, v string) error {
			h, err := registry.ParseHosts(v)
			c.Grains.Registry.Hosts = h
			return err
		}},
		{"GRANARY_REGISTRY_MAX_INSTANCES", "1024", "most service instances the registry holds", func(c *config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 {
				return fmt.Errorf("want a positive integer")
			}
			c.Grains.Registry.MaxInstances = n
			return nil
		}},
		{"GRANARY_ADMIN_PASSWORD", "", "creates user admin once", func(c *config, v string) error { c.AdminPassword = v; return nil }},
		{"GRANARY_JOURNAL_PARTITIONS", "1; " + strconv.Itoa(clusterPartitions) + " when GRANARY_REDIS_URL is a Redis Cluster URL", "journal partitions, fixed for the life of the data (a stream's partition is a hash of its name mod this count); on Redis Cluster each partition is one hash slot, so more partitions spread the journal over more masters", intSetting(func(c *config) *int { return &c.JournalPartitions }, 1)},
		{"GRANARY_KEY_PREFIX", "granary", "prefix of every Redis key, so deployments can share a server", func(c *config, v string) error { c.KeyPrefix, c.Gateway.KeyPrefix = v, v; return nil }},
		{"GRANARY_SNAPSHOT_EVERY", "100", "account snapshot every N events", func(c *config, v string) error {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || n == 0 {
				return fmt.Errorf("want a positive integer")
			}
			c.Grains.Account.SnapshotEvery = n
			return nil
		}},
		{"GRANARY_GRAIN_IDLE_TIMEOUT", "5m", "passivate a grain idle this long", durSetting(func(c *config) *time.Duration { return &c.Grains.Account.IdleTimeout })},
		{"GRANARY_STORE_TIMEOUT", "3s", "timeout of each journal call", durSetting(func(c *config) *time.Duration { return &c.Grains.Account.StoreTimeout })},
		{"GRANARY_CALL_TIMEOUT", "5s", "timeout of a request's grain call (504 past it)", durSetting(func(c *config) *time.Duration { return &c.Gateway.CallTimeout })},
		{"GRANARY_HTTP_READ_HEADER_TIMEOUT", "5s", "time a client has to send its request headers (the slowloris guard)", durSetting(func(c *config) *time.Duration { return &c.Gateway.ReadHeaderTimeout })},
		{"GRANARY_HTTP_READ_TIMEOUT", "30s", "time a client has to send a whole request, body included", durSetting(func(c *config) *time.Duration { return &c.Gateway.ReadTimeout })},
		{"GRANARY_HTTP_WRITE_TIMEOUT", "60s", "time to write a response, from the end of the request headers", durSetting(func(c *config) *time.Duration { return &c.Gateway.WriteTimeout })},
		{"GRANARY_HTTP_IDLE_TIMEOUT", "120s", "how long an idle keep-alive connection stays open", durSetting(func(c *config) *time.Duration { return &c.Gateway.IdleTimeout })},
		{"GRANARY_STREAMS_PER_SUBJECT", "8", "live event streams (SSE) one token subject may hold open on a gateway (429 past it); a client that does not read its stream for 30 s is cut", intSetting(func(c *config) *int { return &c.Gateway.StreamsPerSubject }, 1)},
		{"GRANARY_IDEMPOTENCY_PENDING_TTL", "30s", "how long a request with an Idempotency-Key holds its key while running (longer than GRANARY_CALL_TIMEOUT); a retry after a crash waits this long", durSetting(func(c *config) *time.Duration { return &c.Gateway.IdempotencyPendingTTL })},
		{"GRANARY_CALL_ATTEMPT_TIMEOUT", "1s", "a grain call re-sends (same command id) after this long without an answer", durSetting(func(c *config) *time.Duration { return &c.Cluster.AttemptTimeout })},
		{"GRANARY_SHUTDOWN_DELAY", "1s", "on SIGTERM, /ready answers 503 this long (so load balancers stop sending) before the listener closes", durSetting(func(c *config) *time.Duration { return &c.ShutdownDelay })},
		{"GRANARY_DRAIN_TIMEOUT", "10s", "on SIGTERM, how long requests in flight may take to finish before the member leaves the cluster", durSetting(func(c *config) *time.Duration { return &c.DrainTimeout })},
		{"GRANARY_BODY_LIMIT", "1048576", "largest request body in bytes (413 past it)", func(c *config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return fmt.Errorf("want a positive integer")
			}
			c.Gateway.BodyLimit = n
			return nil
		}},
		{"GRANARY_CLUSTER_NAME", "granary", "cluster name; members join only their own cluster", func(c *config, v string) error { c.Cluster.Name = v; return nil }},
		{"GRANARY_CLUSTER_HOST", "127.0.0.1", "remoting address of this member", func(c *config, v string) error { c.Cluster.Host = v; return nil }},
		{"GRANARY_CLUSTER_PORT", "0", "remoting port, 0 = any free port", intSetting(func(c *config) *int { return &c.Cluster.Port }, 0)},
		{"GRANARY_CLUSTER_PROVIDER", "local", "membership: local (one process), automanaged (static peers) or etcd (leased keys in etcd)", func(c *config, v string) error { c.Cluster.Provider = v; return nil }},
		{"GRANARY_AUTOMANAGED_PORT", "", "automanaged health port of this member", intSetting(func(c *config) *int { return &c.Cluster.AutomanagedPort }, 1)},
		{"GRANARY_CLUSTER_PEERS", "", "automanaged: every member's host:automanaged-port, comma-separated", func(c *config, v string) error { c.Cluster.Peers = splitList(v); return nil }},
		{"GRANARY_ETCD_ENDPOINTS", "", "etcd: comma-separated client URLs, http://host:port (TLS is not supported yet)", func(c *config, v string) error {
			eps, err := parseEtcdEndpoints(v)
			c.Cluster.EtcdEndpoints = eps
			return err
		}},
		{"GRANARY_ETCD_PREFIX", cluster.DefaultEtcdPrefix, "etcd: base key; members register under <prefix>/<cluster name>/<member id>", func(c *config, v string) error {
			if !strings.HasPrefix(v, "/") {
				return errors.New("want a key starting with /")
			}
			c.Cluster.EtcdPrefix = v
			return nil
		}},
		{"GRANARY_ETCD_LEASE_TTL", cluster.DefaultEtcdLeaseTTL.String(), "etcd: a member that stops renewing its lease (crashed, cut off from etcd) is dropped this long after, for good (it rejoins by restarting); whole seconds, at least etcd's minimum (2s by default)", func(c *config, v string) error {
			var d time.Duration
			if err := parseDur(v, &d); err != nil {
				return err
			}
			if d%time.Second != 0 {
				return errors.New("want whole seconds such as 3s: etcd leases count seconds")
			}
			c.Cluster.EtcdLeaseTTL = d
			return nil
		}},
		{"GRANARY_ETCD_CALL_TIMEOUT", cluster.DefaultEtcdCallTimeout.String(), "etcd: timeout of each request (register, renew, list, leave); below GRANARY_ETCD_LEASE_TTL", durSetting(func(c *config) *time.Duration { return &c.Cluster.EtcdCallTimeout })},
		{"GRANARY_ETCD_DIAL_TIMEOUT", cluster.DefaultEtcdDialTimeout.String(), "etcd: timeout of connecting at start", durSetting(func(c *config) *time.Duration { return &c.Cluster.EtcdDialTimeout })},
		{"GRANARY_HEARTBEAT_EXPIRATION", "5s", "a member silent this long is dropped", durSetting(func(c *config) *time.Duration { return &c.Cluster.HeartbeatExpiration })},
		{"GRANARY_COUNTER_MAX_RESTARTS", "3", "restarts a counter-group child gets within the window before it is stopped", intSetting(func(c *config) *int { return &c.Grains.Supervision.MaxRestarts }, 0)},
		{"GRANARY_COUNTER_RESTART_WINDOW", "10s", "window of the restart budget", durSetting(func(c *config) *time.Duration { return &c.Grains.Supervision.RestartWindow })},
		{"GRANARY_AUTH_STRATEGY", "least_connections", "how the auth service client picks an instance: round_robin, random or least_connections", strategySetting(service.AuthService)},
		{"GRANARY_PAYMENTS_STRATEGY", "least_connections", "how the payments service client picks an instance", strategySetting(payment.Service)},
		{"GRANARY_PAYMENT_LIMIT", "100000", "largest payment in minor units; above it process_payment fails", func(c *config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return fmt.Errorf("want a positive integer")
			}
			c.Grains.PaymentLimit = n
			return nil
		}},
		{"GRANARY_SAGA_DEADLINE", "30s", "a saga gives up steps not yet begun, and steps that can be undone, after this long, and compensates", durSetting(func(c *config) *time.Duration { return &c.Grains.Saga.Deadline })},
		{"GRANARY_SAGA_STEP_TIMEOUT", "2s", "timeout of one attempt of a saga step", durSetting(func(c *config) *time.Duration { return &c.Grains.Saga.StepTimeout })},
		{"GRANARY_SAGA_SWEEP_INTERVAL", "10s", "how often each member resumes unfinished sagas (those untouched for as long)", func(c *config, v string) error {
			if err := parseDur(v, &c.Grains.Saga.SweepInterval); err != nil {
				return err
			}
			c.Grains.Saga.SweepGrace = c.Grains.Saga.SweepInterval
			return nil
		}},
		{"GRANARY_PROJECTION_BATCH", "500", "events a read-model projection folds per commit", func(c *config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > persistence.MaxDocBatch {
				return fmt.Errorf("want an integer between 1 and %d", persistence.MaxDocBatch)
			}
			c.Grains.Projection.BatchSize = n
			return nil
		}},
		{"GRANARY_PROJECTION_POLL_INTERVAL", "100ms", "how often a caught-up projection looks for new journal events (the floor of its lag)", durSetting(func(c *config) *time.Duration { return &c.Grains.Projection.PollInterval })},
		{"GRANARY_PROJECTION_KEEPALIVE", "1s", "how often each member pings the projection grains, which restarts them on a survivor after a crash", durSetting(func(c *config) *time.Duration { return &c.Grains.Projection.KeepAlive })},
		{"GRANARY_PROJECTION_RETIRE_GRACE", "10s", "after a rebuild's swap, how long the old read model stays readable before it is deleted", durSetting(func(c *config) *time.Duration { return &c.Grains.Projection.RetireGrace })},
		{"GRANARY_SERVICE_INSTANCES", "2", "instances of each stateless service per member", intSetting(func(c *config) *int { return &c.Grains.PerMember }, 1)},
		{"GRANARY_SERVICE_TIMEOUT", "3s", "timeout of one call to a service instance", serviceSetting(func(b *balancer.Config, v string) error {
			return parseDur(v, &b.CallTimeout)
		})},
		{"GRANARY_BREAKER_FAILURES", "5", "consecutive failures that open a service's circuit breaker", serviceSetting(func(b *balancer.Config, v string) error {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 {
				return fmt.Errorf("want a positive integer")
			}
			b.FailureThreshold = uint32(n)
			return nil
		})},
		{"GRANARY_BREAKER_OPEN_TIMEOUT", "5s", "how long an open breaker fails fast before a trial call", serviceSetting(func(b *balancer.Config, v string) error {
			return parseDur(v, &b.OpenTimeout)
		})},
		{"GRANARY_TOKEN_TTL", "1h", "validity of tokens issued by /auth/login", durSetting(func(c *config) *time.Duration { return &c.Gateway.TokenTTL })},
		{"GRANARY_LOG_LEVEL", "info", "debug, info, warn or error", func(c *config, v string) error { return c.LogLevel.UnmarshalText([]byte(v)) }},
		{"GRANARY_LOG_FORMAT", "text", "text or json", func(c *config, v string) error {
			switch v {
			case "text":
				c.LogJSON = false
			case "json":
				c.LogJSON = true
			default:
				return fmt.Errorf("want text or json")
			}
			return nil
		}},
		{"GRANARY_PPROF_ADDR", "", "serve net/http/pprof (/debug/pprof/) on this loopback host:port, such as 127.0.0.1:6060; other hosts are refused; off when empty", func(c *config, v string) error {
			if err := checkPprofAddr(v); err != nil {
				return err
			}
			c.PprofAddr = v
			return nil
		}},
	}
}

func intSetting(field func(*config) *int, min int) func(*config, string) error {
	return func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < min {
			return fmt.Errorf("want an integer >= %d", min)
		}
		*field(c) = n
		return nil
	}
}

func durSetting(field func(*config) *time.Duration) func(*config, string) error {
	return func(c *config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration such as 5s")
		}
		*field(c) = d
		return nil
	}
}

func parseDur(v string, d *time.Duration) error {
	x, err := time.ParseDuration(v)
	if err != nil || x <= 0 {
		return fmt.Errorf("want a positive duration such as 5s")
	}
	*d = x
	return nil
}

// serviceSetting applies a setting to every service client.
func serviceSetting(f func(*balancer.Config, string) error) func(*config, string) error {
	return func(c *config, v string) error {
		for name, b := range c.Grains.Clients {
			if err := f(&b, v); err != nil {
				return err
			}
			c.Grains.Clients[name] = b
		}
		return nil
	}
}

func strategySetting(svc string) func(*config, string) error {
	return func(c *config, v string) error {
		b := c.Grains.Clients[svc]
		b.Strategy = balancer.Strategy(v)
		c.Grains.Clients[svc] = b
		return b.Validate()
	}
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// parseEtcdEndpoints accepts only http://host:port URLs: the etcd client
// would take a bare host:port or a path too, and silently misread a typo.
func parseEtcdEndpoints(v string) ([]string, error) {
	eps := splitList(v)
	if len(eps) == 0 {
		return nil, errors.New("want at least one http://host:port")
	}
	for _, e := range eps {
		u, err := url.Parse(e)
		if err != nil {
			return nil, fmt.Errorf("endpoint %q: %w", e, err)
		}
		switch {
		case u.Scheme == "https":
			return nil, fmt.Errorf("endpoint %q: https needs TLS settings, which Granary does not have yet", e)
		case u.Scheme != "http":
			return nil, fmt.Errorf("endpoint %q: want http://host:port", e)
		case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
			return nil, fmt.Errorf("endpoint %q: want only http://host:port, no credentials, path or query", e)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil || host == "" {
			return nil, fmt.Errorf("endpoint %q: want http://host:port", e)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("endpoint %q: port %q is not 1-65535", e, port)
		}
	}
	return eps, nil
}

// checkEtcdSettings names the variables where cluster.Config.Validate would
// name struct fields, and refuses etcd settings the provider would ignore.
func checkEtcdSettings(c cluster.Config, getenv func(string) string) error {
	if c.Provider != cluster.ProviderEtcd {
		for _, name := range []string{"GRANARY_ETCD_ENDPOINTS", "GRANARY_ETCD_PREFIX", "GRANARY_ETCD_LEASE_TTL", "GRANARY_ETCD_CALL_TIMEOUT", "GRANARY_ETCD_DIAL_TIMEOUT"} {
			if strings.TrimSpace(getenv(name)) != "" {
				return fmt.Errorf("%s is set but GRANARY_CLUSTER_PROVIDER is %q, not etcd", name, c.Provider)
			}
		}
		return nil
	}
	if len(c.EtcdEndpoints) == 0 {
		return errors.New("GRANARY_CLUSTER_PROVIDER=etcd needs GRANARY_ETCD_ENDPOINTS (such as http://127.0.0.1:2379)")
	}
	ttl, call := c.EtcdLeaseTTL, c.EtcdCallTimeout
	if ttl == 0 {
		ttl = cluster.DefaultEtcdLeaseTTL
	}
	if call == 0 {
		call = cluster.DefaultEtcdCallTimeout
	}
	if call >= ttl {
		return fmt.Errorf("GRANARY_ETCD_CALL_TIMEOUT %v must be below GRANARY_ETCD_LEASE_TTL %v: a renewal slower than the lease would let it expire", call, ttl)
	}
	if strings.Contains(c.Name, "/") {
		return fmt.Errorf("GRANARY_CLUSTER_NAME %q must not contain / with the etcd provider (it is part of the key)", c.Name)
	}
	return nil
}

// clusterPartitions is the journal partition default on a Redis Cluster:
// enough hash slots to reach every master of a small cluster (16 reach
// all three masters of an evenly split one) at little cost in partition
// readers.
const clusterPartitions = 16

func loadConfig(m mode, getenv func(string) string) (config, error) {
	c := config{
		HTTPAddr:          "127.0.0.1:8080",
		RateLimit:         600,
		JournalPartitions: 1,
		LogLevel:          slog.LevelInfo,
		ShutdownDelay:     time.Second,
		DrainTimeout:      10 * time.Second,
		Cluster:           cluster.DefaultConfig(),
		Grains:            cluster.DefaultGrainsConfig(),
		Gateway:           gateway.DefaultConfig(),
	}
	if m == modeDev {
		c.RateLimit = 0
	}
	var errs []error
	for _, s := range settings(m) {
		if v := strings.TrimSpace(getenv(s.name)); v != "" {
			if err := s.parse(&c, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", s.name, v, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	c.Gateway.RateLimit = c.RateLimit
	if redis.IsClusterURL(c.RedisURL) {
		if strings.TrimSpace(getenv("GRANARY_JOURNAL_PARTITIONS")) == "" {
			c.JournalPartitions = clusterPartitions
		} else if c.JournalPartitions == 1 {
			c.warnings = append(c.warnings, "GRANARY_JOURNAL_PARTITIONS=1 on a Redis Cluster puts the whole journal on one hash slot, hence one master; the count cannot change once data is written")
		}
	}
	switch {
	case len(c.JWTSecret) == 0 && m == modeNode:
		return c, errors.New("GRANARY_JWT_SECRET is required (at least 32 bytes); only `granary dev` makes one up")
	case len(c.JWTSecret) == 0:
		c.JWTSecret = []byte(randomSecret())
		c.secretWasGenerated = true
	case len(c.JWTSecret) < auth.MinSecretLen:
		return c, fmt.Errorf("GRANARY_JWT_SECRET is %d bytes, need at least %d", len(c.JWTSecret), auth.MinSecretLen)
	}
	if c.RedisURL == "" && m == modeNode {
		return c, errors.New("GRANARY_REDIS_URL is required for `granary node`; the embedded store is for `granary dev` only")
	}
	if err := checkEtcdSettings(c.Cluster, getenv); err != nil {
		return c, err
	}
	if err := c.Cluster.Validate(); err != nil {
		return c, err
	}
	return c, c.Gateway.Validate()
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `Granary: event-sourced accounts on Proto.Actor grains behind an HTTP gateway.

Usage:
  granary dev    one member and its gateway; embedded store unless GRANARY_REDIS_URL is
                 set; makes a JWT secret if none is set and prints an admin token
  granary node   a member and its gateway, configured by the variables below;
                 needs GRANARY_JWT_SECRET and GRANARY_REDIS_URL
  granary token  [-sub admin] [-roles admin] [-ttl 24h]: print a token signed with
                 GRANARY_JWT_SECRET
  granary example-service -name N -port P [-gateway URL] [-ttl 10] [-id I] [-metadata k=v]:
                 a demo upstream that registers itself (and heartbeats) with a gateway
  granary version      module version, commit and Go version
  granary healthcheck  [-url http://127.0.0.1:8080/health]: exit 0 when the gateway answers 200
  granary help   this text

Settings (environment variables; defaults for node, dev differences noted):
`)
	for _, s := range settings(modeNode) {
		def := s.def
		if s.name == "GRANARY_RATE_LIMIT" {
			def = "600 (0 in dev)"
		}
		fmt.Fprintf(w, "  %-34s %s (default: %s)\n", s.name, s.doc, orNone(def))
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
