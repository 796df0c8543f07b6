package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// fakeGateway is the node's side of the contract the proxy workload uses:
// it records the registration and the route and forwards GETs under the
// route's prefix to the registered port, after checking the bearer token.
type fakeGateway struct {
	mu       sync.Mutex
	instance map[string]any
	route    map[string]any
	deleted  []string
	token    string
}

func (f *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	decode := func() map[string]any {
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return nil
		}
		return m
	}
	switch {
	case r.Method == http.MethodPut && r.URL.Path == "/api/v1/registry/"+proxyService+"/instances/"+proxyInstance:
		if f.instance = decode(); f.instance != nil {
			w.WriteHeader(http.StatusCreated)
		}
	case r.Method == http.MethodPut && r.URL.Path == "/api/v1/routes/"+proxyRoute:
		if f.route = decode(); f.route != nil {
			w.WriteHeader(http.StatusCreated)
		}
	case r.Method == http.MethodDelete:
		f.deleted = append(f.deleted, r.URL.Path)
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, proxyPrefix+"/"):
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if f.instance == nil || f.route == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		url := fmt.Sprintf("http://127.0.0.1:%v%s", f.instance["port"], strings.Replace(r.URL.Path, proxyPrefix, proxyRewrite, 1))
		resp, err := http.Get(url)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func TestProxyWorkloadRegistersRoutesAndCleansUp(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fg := &fakeGateway{token: "user-token"}
	gw := httptest.NewServer(fg)
	defer gw.Close()
	defer http.DefaultClient.CloseIdleConnections()
	admin := newSide("granary-admin", gw.URL, "", "admin-token", false, 1)
	defer admin.closeIdle()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	px, err := setupProxy(ctx, admin, gw.URL, fg.token, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	fg.mu.Lock()
	inst, route := fg.instance, fg.route
	fg.mu.Unlock()
	if inst["host"] != "127.0.0.1" || inst["port"] != float64(px.up.addr.Port) || inst["ttl_seconds"] != float64(proxyTTLSeconds) {
		t.Errorf("registration %v, upstream on %s", inst, px.up.addr)
	}
	if route["path_prefix"] != proxyPrefix || route["rewrite_prefix"] != proxyRewrite || route["service"] != proxyService || route["auth"] != "required" {
		t.Errorf("route %v", route)
	}

	// Both arms get the same answer for the same user.
	w := proxied()
	r := rand.New(rand.NewPCG(1, 2))
	for _, s := range []*side{px.direct, px.gateway} {
		o := w.next(s, r)
		if o.method != http.MethodGet || !strings.HasPrefix(o.path, s.prefix+"/") {
			t.Fatalf("%s: op %+v", s.name, o)
		}
		var got struct{ ID, Name string }
		status, err := s.do(ctx, 0, http.MethodGet, s.prefix+"/42", nil, false, &got)
		if err != nil || status != http.StatusOK || got.ID != "42" || got.Name != "user-42" {
			t.Errorf("%s: GET /42: %d %+v %v", s.name, status, got, err)
		}
	}
	res := run(ctx, px.gateway, w, 4, 0, 200*time.Millisecond, 0, nil)
	if res.OK == 0 || len(res.Errors) != 0 {
		t.Errorf("a short window through the gateway: %+v", res)
	}

	px.close()
	fg.mu.Lock()
	deleted := fg.deleted
	fg.mu.Unlock()
	if len(deleted) != 2 {
		t.Errorf("deleted %v, want the route and the instance", deleted)
	}
	if _, err := http.Get("http://" + px.up.addr.String() + "/users/1"); err == nil {
		t.Error("the upstream still answers after close")
	}
}

func TestSetupProxyFailsWhenRegistrationIsRefused(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	}))
	defer gw.Close()
	admin := newSide("granary-admin", gw.URL, "", "t", false, 1)
	defer admin.closeIdle()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := setupProxy(ctx, admin, gw.URL, "t", 1, 0); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("err %v, want the 403 of the registration", err)
	}
}

func TestProxyReportNamesItsSides(t *testing.T) {
	w := workloadResult{Name: proxyWorkload, Sides: []string{proxyDirectSide, proxyGatewaySide}, Rounds: []roundResult{
		{Side: proxyDirectSide, Round: 1, OpsPerSec: 1000, P99ms: 2},
		{Side: proxyGatewaySide, Round: 1, OpsPerSec: 800, P99ms: 3},
		{Side: proxyDirectSide, Round: 2, OpsPerSec: 1000, P99ms: 2},
		{Side: proxyGatewaySide, Round: 2, OpsPerSec: 600, P99ms: 4},
	}}
	summarise(&w)
	if tr := w.ThroughputRatio; !near(tr.Mean, 0.7) || !near(tr.Min, 0.6) || !near(tr.Max, 0.8) {
		t.Errorf("throughput ratio %+v", tr)
	}
	if got, want := proxySummaryLine([]workloadResult{w}), "proxy vs direct: throughput 0.70x (0.60–0.80), p99 1.75x (1.50–2.00)"; got != want {
		t.Errorf("proxy line %q, want %q", got, want)
	}
	if proxySummaryLine(nil) != "" {
		t.Error("a proxy line without the proxy workload")
	}
	var buf bytes.Buffer
	printTable(&buf, &results{Workloads: []workloadResult{w}})
	if out := buf.String(); !strings.Contains(out, " direct ") || !strings.Contains(out, "granary/direct") || strings.Contains(out, "baseline") {
		t.Errorf("table:\n%s", out)
	}
}
