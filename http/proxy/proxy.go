package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// Route is one proxied route. The registry validates it; the proxy assumes it valid.
type Route struct {
	Name, PathPrefix, Service, RewritePrefix string
	Methods                                  []string // empty = all; the gateway matches them
	Strategy                                 string   // StrategyRoundRobin, StrategyRandom or StrategyLeastConnections
	Timeout                                  time.Duration
	Public                                   bool // auth "public": the upstream gets no identity headers
}

// The route strategies of the contract.
const (
	StrategyRoundRobin       = "round_robin"
	StrategyRandom           = "random"
	StrategyLeastConnections = "least_connections"
)

// Target is one UP instance of a service.
type Target struct {
	ID   string
	Host string
	Port int
}

// Identity is the verified token's subject and roles (zero for public routes).
type Identity struct {
	Subject string
	Roles   []string
}

// Targets gives the UP instances of a service as the registry currently knows
// them. It is called on every request and must be cheap; the proxy does not
// modify the returned slice.
type Targets func(service string) []Target

// Problem writes an error answer. code is "service_unavailable" (503; the proxy
// has set Retry-After), "timeout" (504), "payload_too_large" (413, a body past
// MaxBodyBytes) or "bad_request" (400, the body could not be read).
type Problem func(w http.ResponseWriter, r *http.Request, status int, code, detail string)

// Config configures a Proxy. Targets is required; everything else has a default.
type Config struct {
	Targets Targets
	// Problem defaults to a minimal application/problem+json writer.
	Problem Problem
	// Counts are the cluster-wide in-flight counts least_connections compares;
	// nil counts this gateway only.
	Counts Counts
	// Allowed are the only addresses the dialer connects to, checked on the
	// resolved address so that neither a registry entry nor DNS can aim the
	// gateway elsewhere. Empty allows loopback only.
	Allowed []netip.Prefix
	// RequestID is the gateway's X-Request-ID of the request.
	RequestID func(r *http.Request) string
	// ClientIP is the client's address as the gateway's trusted-proxy logic
	// determined it; nil uses the peer address.
	ClientIP func(r *http.Request) string
	Logger   *slog.Logger
	// BreakerFailures consecutive failures open an instance's breaker (default
	// 5); it half-opens after BreakerOpenFor (default 5 s).
	BreakerFailures uint32
	BreakerOpenFor  time.Duration
	// MaxIdleConnsPerHost is the keep-alive pool per instance (default 64).
	MaxIdleConnsPerHost int
	// MaxBodyBytes is the largest request body buffered for replay (default
	// 1 MiB, the gateway's own limit).
	MaxBodyBytes int64
	// DialTimeout bounds connecting to an instance (default 1 s).
	DialTimeout time.Duration
	// ForgetAfter drops the state of instances absent from Targets that long
	// (default 10 min).
	ForgetAfter time.Duration
}

func (c *Config) setDefaults() {
	if c.Problem == nil {
		c.Problem = writeProblem
	}
	if c.Counts == nil {
		c.Counts = NewLocalCounts()
	}
	if len(c.Allowed) == 0 {
		c.Allowed = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	if c.RequestID == nil {
		c.RequestID = func(r *http.Request) string { return r.Header.Get("X-Request-ID") }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = 5
	}
	if c.BreakerOpenFor <= 0 {
		c.BreakerOpenFor = 5 * time.Second
	}
	if c.MaxIdleConnsPerHost <= 0 {
		c.MaxIdleConnsPerHost = 64
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = time.Second
	}
	if c.ForgetAfter <= 0 {
		c.ForgetAfter = 10 * time.Minute
	}
}

// Proxy forwards requests to registered instances. It is safe for concurrent
// use; Close releases its connections and stops its janitor.
type Proxy struct {
	cfg       Config
	transport *http.Transport
	rp        *httputil.ReverseProxy
	state     *instances
	rr        *rotations

	stop chan struct{}
	done sync.WaitGroup
	once sync.Once
}

// New builds a Proxy from cfg.
func New(cfg Config) (*Proxy, error) {
	if cfg.Targets == nil {
		return nil, errors.New("proxy: Config.Targets is required")
	}
	for _, p := range cfg.Allowed {
		if !p.IsValid() {
			return nil, fmt.Errorf("proxy: Config.Allowed has an invalid prefix %v", p)
		}
	}
	cfg.setDefaults()
	p := &Proxy{
		cfg:   cfg,
		state: newInstances(cfg),
		rr:    newRotations(),
		stop:  make(chan struct{}),
	}
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second, Control: allowOnly(cfg.Allowed)}
	p.transport = &http.Transport{
		Proxy: nil, // the environment's HTTP_PROXY must not see registered services
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err: err}
			}
			return c, nil
		},
		MaxIdleConns:        cfg.MaxIdleConnsPerHost * 16,
		MaxIdleConnsPerHost: cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:     90 * time.Second,
		// The body and its Content-Encoding are relayed as the upstream sent them.
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      p.transport,
		FlushInterval:  50 * time.Millisecond,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.recordError,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		// Without a pool ReverseProxy allocates a 32 KiB copy buffer per
		// response: 76 % of the bytes a proxied request allocated (bench
		// profile), and most of its GC cost.
		BufferPool: copyBuffers{},
	}
	p.done.Add(1)
	go p.janitor()
	return p, nil
}

// Close drops idle connections and stops the janitor. Requests in flight finish.
func (p *Proxy) Close() {
	p.once.Do(func() {
		close(p.stop)
		p.done.Wait()
		p.transport.CloseIdleConnections()
	})
}

// janitor bounds the per-instance and per-route state to what the registry
// still lists, so removed instances and routes do not accumulate.
func (p *Proxy) janitor() {
	defer p.done.Done()
	every := max(p.cfg.ForgetAfter/10, time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			for _, id := range p.state.sweep(now.Add(-p.cfg.ForgetAfter)) {
				p.forgetCounts(id)
			}
			p.rr.sweep(now.Add(-p.cfg.ForgetAfter))
		}
	}
}

// Forget drops a removed instance's breaker and counters.
func (p *Proxy) Forget(instanceID string) {
	p.state.forget(instanceID)
	p.forgetCounts(instanceID)
}

func (p *Proxy) forgetCounts(id string) {
	if f, ok := p.cfg.Counts.(forgetter); ok {
		f.Forget(id)
	}
}

// dialError marks a failure to connect: the request was certainly not
// delivered, so any method may be retried on another instance.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial upstream: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// errNotAllowed is the dialer's refusal of an address outside Config.Allowed.
var errNotAllowed = errors.New("address not allowed")

func allowOnly(allowed []netip.Prefix) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("parse dial address %q: %w", address, err)
		}
		a := ap.Addr().Unmap()
		for _, p := range allowed {
			if p.Contains(a) {
				return nil
			}
		}
		return fmt.Errorf("%s %s: %w", network, address, errNotAllowed)
	}
}

func writeProblem(w http.ResponseWriter, _ *http.Request, status int, code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "about:blank", "title": http.StatusText(status), "status": status, "code": code, "detail": detail,
	})
}

// copyBuffers lends ReverseProxy its copy buffers.
type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (copyBuffers) Get() []byte { return *(copyBufferPool.Get().(*[]byte)) }

func (copyBuffers) Put(b []byte) {
	if cap(b) == 32<<10 {
		b = b[:cap(b)]
		copyBufferPool.Put(&b)
	}
}
