package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The proxy workload: the same small upstream called directly and through
// the gateway's route to it (JWT verified there, as for a real client).
const (
	proxyWorkload    = "proxy"
	proxyService     = "bench-upstream"
	proxyInstance    = "i1"
	proxyRoute       = "bench"
	proxyPrefix      = "/api/bench"
	proxyRewrite     = "/users"
	proxyUsers       = 1000
	proxyTTLSeconds  = 300
	proxyHeartbeat   = 60 * time.Second
	proxyDirectSide  = "direct"
	proxyGatewaySide = "granary"
)

// upstream is the service behind the route, in this process: GET
// /users/{id} answers {"id","name"}. Its CPU is the bench's, so the
// direct arm has no server CPU figure.
type upstream struct {
	srv  *http.Server
	addr *net.TCPAddr
	done chan error
}

func startUpstream() (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("upstream listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		body, err := json.Marshal(struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}{id, "user-" + id})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
	u := &upstream{
		// Timeouts so a stuck client cannot hold a connection for ever;
		// the idle one outlives the clients' 90 s keep-alive.
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second},
		addr: ln.Addr().(*net.TCPAddr),
		done: make(chan error, 1),
	}
	go func() { u.done <- u.srv.Serve(ln) }()
	return u, nil
}

func (u *upstream) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := u.srv.Shutdown(ctx)
	if serveErr := <-u.done; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	if err != nil {
		return fmt.Errorf("stop upstream: %w", err)
	}
	return nil
}

// proxySetup is the upstream registered with the node, its route, and the
// loop that keeps the registration fresh; close undoes all of it.
type proxySetup struct {
	up       *upstream
	admin    *side
	direct   *side
	gateway  *side
	stopBeat context.CancelFunc
	beatDone sync.WaitGroup
}

// setupProxy starts the upstream, registers it (an instance of
// bench-upstream with a 300 s TTL, re-registered every 60 s) and its
// route (auth required), and waits until a GET through the gateway
// answers 200: the route applies at once on the gateway that made it,
// but a bench should not trust that blindly.
func setupProxy(ctx context.Context, admin *side, gatewayBase, userToken string, clients int, granaryPid int) (*proxySetup, error) {
	up, err := startUpstream()
	if err != nil {
		return nil, err
	}
	ps := &proxySetup{up: up, admin: admin,
		direct:  newSide(proxyDirectSide, "http://"+up.addr.String(), proxyRewrite, userToken, false, clients),
		gateway: newSide(proxyGatewaySide, gatewayBase, proxyPrefix, userToken, false, clients)}
	ps.gateway.pid = granaryPid
	if err := ps.register(ctx); err != nil {
		ps.close()
		return nil, err
	}
	route, _ := json.Marshal(map[string]any{"path_prefix": proxyPrefix, "service": proxyService,
		"rewrite_prefix": proxyRewrite, "auth": "required"})
	status, err := admin.do(ctx, 0, http.MethodPut, "/api/v1/routes/"+proxyRoute, route, false, nil)
	if err == nil && status != http.StatusCreated && status != http.StatusOK {
		err = fmt.Errorf("status %d", status)
	}
	if err != nil {
		ps.close()
		return nil, fmt.Errorf("PUT route %s: %w", proxyRoute, err)
	}
	beatCtx, cancel := context.WithCancel(ctx)
	ps.stopBeat = cancel
	ps.beatDone.Add(1)
	go ps.heartbeat(beatCtx)
	if err := ps.waitRouted(ctx, 30*time.Second); err != nil {
		ps.close()
		return nil, err
	}
	return ps, nil
}

// register is the instance's PUT: new, or a heartbeat when it exists.
func (ps *proxySetup) register(ctx context.Context) error {
	body, _ := json.Marshal(map[string]any{"host": "127.0.0.1", "port": ps.up.addr.Port, "ttl_seconds": proxyTTLSeconds})
	status, err := ps.admin.do(ctx, 0, http.MethodPut, "/api/v1/registry/"+proxyService+"/instances/"+proxyInstance, body, false, nil)
	if err == nil && status != http.StatusCreated && status != http.StatusOK {
		err = fmt.Errorf("status %d", status)
	}
	if err != nil {
		return fmt.Errorf("register %s/%s: %w", proxyService, proxyInstance, err)
	}
	return nil
}

// heartbeat re-registers the instance every 60 s, well inside its TTL, so
// a long run (or a slow machine) never sees it go DOWN mid-window.
func (ps *proxySetup) heartbeat(ctx context.Context) {
	defer ps.beatDone.Done()
	t := time.NewTicker(proxyHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := ps.register(ctx); err != nil && ctx.Err() == nil {
				logf("proxy: %v", err)
			}
		}
	}
}

func (ps *proxySetup) waitRouted(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		status, err := ps.gateway.do(ctx, 0, http.MethodGet, ps.gateway.prefix+"/1", nil, false, nil)
		if err == nil && status == http.StatusOK {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("status %d", status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET %s/1 through the gateway after %s: %w", proxyPrefix, d, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// close stops the heartbeat, removes the route and the instance (best
// effort: the node may be gone) and stops the upstream.
func (ps *proxySetup) close() {
	if ps.stopBeat != nil {
		ps.stopBeat()
		ps.beatDone.Wait()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, path := range []string{"/api/v1/routes/" + proxyRoute, "/api/v1/registry/" + proxyService + "/instances/" + proxyInstance} {
		if status, err := ps.admin.do(ctx, 0, http.MethodDelete, path, nil, false, nil); err != nil || (status != http.StatusNoContent && status != http.StatusNotFound) {
			logf("proxy: DELETE %s: status %d, %v", path, status, err)
		}
	}
	ps.direct.closeIdle()
	ps.gateway.closeIdle()
	if err := ps.up.stop(); err != nil {
		logf("proxy: %v", err)
	}
}

// proxied is GET /users/<n> on the upstream directly, GET
// /api/bench/<n> through the gateway: each side's prefix says which.
func proxied() workload {
	return workload{name: proxyWorkload,
		desc: "GET of a small JSON upstream, directly vs through the gateway's route (JWT verified, X-Granary-* headers added); sides: direct, granary",
		next: func(s *side, r *rand.Rand) op {
			return op{method: http.MethodGet, path: s.prefix + "/" + strconv.Itoa(r.IntN(proxyUsers))}
		}}
}
