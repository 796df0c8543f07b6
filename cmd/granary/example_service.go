package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"granary/http/auth"
)

// exampleService implements `granary example-service`: a small JSON
// upstream that registers itself with a gateway's service registry, keeps
// the registration alive with heartbeats and removes it when ctx ends, so
// the registry and routes can be tried (and demonstrated) without writing a
// service. It returns nil after a clean stop; the caller owns the signals.
func exampleService(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseExampleService(args, getenv, stderr)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.port)))
	if err != nil {
		return fmt.Errorf("example-service: listen: %w", err)
	}
	cfg.port = ln.Addr().(*net.TCPAddr).Port
	if cfg.id == "" {
		cfg.id = fmt.Sprintf("%s-%d", cfg.name, cfg.port)
	}
	srv := &http.Server{
		Handler:           exampleHandler(cfg.id),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      exampleMaxSlow + 5*time.Second, // /slow may take the full bound
		IdleTimeout:       60 * time.Second,
	}
	// A server that stops serving must also stop advertising itself.
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	serveErr := make(chan error, 1)
	go func() {
		serveErr <- srv.Serve(ln)
		stopLoop()
	}()

	transport := &http.Transport{MaxIdleConns: 2, IdleConnTimeout: 30 * time.Second}
	defer transport.CloseIdleConnections()
	reg := &registrar{
		client: &http.Client{Timeout: exampleCallTimeout, Transport: transport},
		cfg:    cfg,
		log:    stderr,
	}
	reg.keepRegistered(loopCtx, func() {
		fmt.Fprintf(stdout, "example-service %s/%s listening on http://127.0.0.1:%d, registered with %s\n", cfg.name, cfg.id, cfg.port, cfg.gateway)
	})
	stopLoop()

	// Deregister first so the gateway stops sending traffic before the
	// server refuses it; ctx is done (or about to be), so the call gets its own.
	delCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), exampleCallTimeout)
	if err := reg.deregister(delCtx); err != nil {
		fmt.Fprintf(stderr, "example-service: %v\n", err)
	}
	cancel()

	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		_ = srv.Close() // cancels the contexts of requests still running (/slow)
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("example-service: serve: %w", err)
	}
	return nil
}

const (
	exampleCallTimeout = 2 * time.Second
	exampleMaxSlow     = 60 * time.Second
	exampleMaxMetadata = 32
)

var registryName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

type exampleConfig struct {
	name, id, gateway, token, health string
	port                             int
	ttl                              int // seconds, as the contract counts them
	metadata                         map[string]string
}

func parseExampleService(args []string, getenv func(string) string, stderr io.Writer) (exampleConfig, error) {
	cfg := exampleConfig{metadata: map[string]string{}}
	fs := flag.NewFlagSet("example-service", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.name, "name", "", "service name (required), e.g. users")
	fs.IntVar(&cfg.port, "port", -1, "listen port on 127.0.0.1 (required; 0 picks a free one)")
	fs.StringVar(&cfg.id, "id", "", "instance id (default <name>-<port>)")
	gateway := getenv("GRANARY_URL")
	if gateway == "" {
		gateway = "http://127.0.0.1:8080"
	}
	fs.StringVar(&cfg.gateway, "gateway", gateway, "gateway base URL (default $GRANARY_URL)")
	fs.StringVar(&cfg.token, "token", getenv("GRANARY_TOKEN"), "bearer token (default $GRANARY_TOKEN, else minted from GRANARY_JWT_SECRET)")
	fs.IntVar(&cfg.ttl, "ttl", 10, "registration ttl in seconds (1..300); heartbeats every ttl/3")
	fs.StringVar(&cfg.health, "health", "/health", "health check path the gateway probes (empty: none)")
	fs.Var(metadataFlag(cfg.metadata), "metadata", "k=v metadata, repeatable")
	if err := fs.Parse(args); err != nil {
		return cfg, errUsage // the flag package has said what is wrong
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("example-service: unexpected arguments %q", fs.Args())
	}
	switch {
	case cfg.name == "":
		return cfg, errors.New("example-service: -name is required")
	case !registryName.MatchString(cfg.name):
		return cfg, fmt.Errorf("example-service: -name %q must match %s", cfg.name, registryName)
	case cfg.port < 0 || cfg.port > 65535:
		return cfg, errors.New("example-service: -port is required (0..65535; 0 picks a free port)")
	case cfg.id != "" && !registryName.MatchString(cfg.id):
		return cfg, fmt.Errorf("example-service: -id %q must match %s", cfg.id, registryName)
	case cfg.ttl < 1 || cfg.ttl > 300:
		return cfg, fmt.Errorf("example-service: -ttl %d must be 1..300 seconds", cfg.ttl)
	case cfg.health != "" && !strings.HasPrefix(cfg.health, "/"):
		return cfg, fmt.Errorf("example-service: -health %q must start with /", cfg.health)
	}
	if cfg.port != 0 && cfg.id == "" && !registryName.MatchString(fmt.Sprintf("%s-%d", cfg.name, cfg.port)) {
		return cfg, fmt.Errorf("example-service: -name %q is too long to make an id with the port; set -id", cfg.name)
	}
	u, err := url.Parse(cfg.gateway)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return cfg, fmt.Errorf("example-service: -gateway %q is not an http(s) URL", cfg.gateway)
	}
	cfg.gateway = strings.TrimRight(cfg.gateway, "/")
	if cfg.token == "" {
		tok, err := mintServiceToken(cfg.name, getenv("GRANARY_JWT_SECRET"))
		if err != nil {
			return cfg, err
		}
		cfg.token = tok
	}
	return cfg, nil
}

func mintServiceToken(name, secret string) (string, error) {
	if secret == "" {
		return "", errors.New("example-service: no token: set -token, GRANARY_TOKEN or GRANARY_JWT_SECRET")
	}
	if _, err := auth.NewVerifier([]byte(secret)); err != nil {
		return "", fmt.Errorf("example-service: GRANARY_JWT_SECRET: %w", err)
	}
	tok, err := auth.Issue([]byte(secret), "svc:"+name, []string{"service"}, time.Now(), 24*time.Hour)
	if err != nil {
		return "", fmt.Errorf("example-service: mint token: %w", err)
	}
	return tok, nil
}

// metadataFlag collects repeated -metadata k=v into one map, bounded so a
// typo in a script cannot build an arbitrarily large registration.
type metadataFlag map[string]string

func (m metadataFlag) String() string { return fmt.Sprint(map[string]string(m)) }

func (m metadataFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want k=v, got %q", v)
	}
	if _, dup := m[k]; !dup && len(m) >= exampleMaxMetadata {
		return fmt.Errorf("at most %d metadata entries", exampleMaxMetadata)
	}
	m[k] = val
	return nil
}

// registrar owns the instance's registration: it registers, heartbeats,
// registers again when the gateway has forgotten the instance, and
// deregisters.
type registrar struct {
	client *http.Client
	cfg    exampleConfig
	log    io.Writer
}

var errInstanceGone = errors.New("instance unknown to the registry")

// keepRegistered runs until ctx is done. Failures are logged and retried
// with backoff: a gateway that is down or restarting must not kill the
// service. registered is called after the first successful registration.
func (r *registrar) keepRegistered(ctx context.Context, registered func()) {
	const minBackoff, maxBackoff = 200 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	first := true
	interval := time.Duration(r.cfg.ttl) * time.Second / 3
	for {
		if err := r.register(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			fmt.Fprintf(r.log, "example-service: %v (retrying in %s)\n", err, backoff)
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		if first {
			first = false
			registered()
		}
		for {
			if !sleepCtx(ctx, interval) {
				return
			}
			err := r.heartbeat(ctx)
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, errInstanceGone) {
				fmt.Fprintf(r.log, "example-service: %v; registering again\n", err)
				break
			}
			if err != nil {
				// The registration may still be alive; the next beat or a 404 tells.
				fmt.Fprintf(r.log, "example-service: %v\n", err)
			}
		}
	}
}

func (r *registrar) instanceURL() string {
	return r.cfg.gateway + "/api/v1/registry/" + url.PathEscape(r.cfg.name) + "/instances/" + url.PathEscape(r.cfg.id)
}

func (r *registrar) register(ctx context.Context) error {
	body, err := json.Marshal(map[string]any{
		"host":              "127.0.0.1",
		"port":              r.cfg.port,
		"metadata":          r.cfg.metadata,
		"health_check_path": r.cfg.health,
		"ttl_seconds":       r.cfg.ttl,
	})
	if err != nil {
		return fmt.Errorf("register %s/%s: %w", r.cfg.name, r.cfg.id, err)
	}
	if err := r.call(ctx, http.MethodPut, r.instanceURL(), body); err != nil {
		return fmt.Errorf("register %s/%s: %w", r.cfg.name, r.cfg.id, err)
	}
	return nil
}

func (r *registrar) heartbeat(ctx context.Context) error {
	if err := r.call(ctx, http.MethodPost, r.instanceURL()+"/heartbeat", nil); err != nil {
		return fmt.Errorf("heartbeat %s/%s: %w", r.cfg.name, r.cfg.id, err)
	}
	return nil
}

// deregister treats 404 as done: the gateway may have removed the
// instance already, or never stored it.
func (r *registrar) deregister(ctx context.Context) error {
	err := r.call(ctx, http.MethodDelete, r.instanceURL(), nil)
	if err != nil && !errors.Is(err, errInstanceGone) {
		return fmt.Errorf("deregister %s/%s: %w", r.cfg.name, r.cfg.id, err)
	}
	return nil
}

// call sends one request (bounded by the client's timeout) and turns a
// non-2xx answer into an error carrying the status and problem detail.
func (r *registrar) call(ctx context.Context, method, target string, body []byte) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.cfg.token)
	req.Header.Set("Accept", "application/json, application/problem+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("%s %s: %s", method, target, problemText(res.Status, msg))
	if res.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %w", errInstanceGone, err)
	}
	return err
}

func problemText(status string, body []byte) string {
	var p struct{ Title, Detail, Code string }
	if json.Unmarshal(body, &p) == nil && (p.Detail != "" || p.Title != "" || p.Code != "") {
		parts := []string{status}
		for _, s := range []string{p.Code, p.Title, p.Detail} {
			if s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, ": ")
	}
	if s := strings.TrimSpace(string(body)); s != "" {
		return status + ": " + s
	}
	return status
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// exampleHandler is the demo API. Every answer names the instance, in the
// body and in X-Instance, so load balancing is visible from the client.
func exampleHandler(id string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "instance": id})
	})
	mux.HandleFunc("GET /users", func(w http.ResponseWriter, _ *http.Request) {
		users := make([]map[string]string, 0, len(demoUsers))
		for _, u := range demoUsers {
			users = append(users, map[string]string{"id": u[0], "name": u[1]})
		}
		writeJSON(w, http.StatusOK, map[string]any{"users": users, "instance": id})
	})
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		uid := r.PathValue("id")
		name := "User " + uid
		for _, u := range demoUsers {
			if u[0] == uid {
				name = u[1]
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": uid, "name": name, "instance": id})
	})
	mux.HandleFunc("POST /users", func(w http.ResponseWriter, r *http.Request) {
		var user map[string]any
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&user); err != nil || user == nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "body must be a JSON object", "instance": id})
			return
		}
		user["instance"] = id
		writeJSON(w, http.StatusCreated, user)
	})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		headers := map[string]string{}
		for _, h := range []string{"X-Granary-Subject", "X-Granary-Roles", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-ID"} {
			headers[h] = r.Header.Get(h)
		}
		writeJSON(w, http.StatusOK, map[string]any{"headers": headers, "instance": id})
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "ms must be a non-negative integer", "instance": id})
			return
		}
		d := min(time.Duration(ms)*time.Millisecond, exampleMaxSlow)
		if !sleepCtx(r.Context(), d) {
			return // the client (or the gateway's timeout) gave up; nobody reads an answer
		}
		writeJSON(w, http.StatusOK, map[string]any{"slept_ms": d.Milliseconds(), "instance": id})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Instance", id)
		mux.ServeHTTP(w, r)
	})
}

var demoUsers = [][2]string{{"1", "Ada Lovelace"}, {"2", "Alan Turing"}, {"3", "Grace Hopper"}, {"7", "Edsger Dijkstra"}}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
