package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"granary/http/gateway"
	"granary/testkit"
)

// upstream is an outside service instance: a real HTTP server on
// loopback that records what reached it.
type upstream struct {
	id   string
	srv  *httptest.Server
	hits atomic.Int64
	// fail makes it answer 500 (and its health check 503).
	fail atomic.Bool
	// hold, when set, blocks /hold requests until it is closed.
	hold    chan struct{}
	holding atomic.Int64
	mu      sync.Mutex
	last    *http.Request
	lastURI string
	delay   time.Duration
}

func newUpstream(t *testing.T, id string) *upstream {
	t.Helper()
	u := &upstream{id: id, hold: make(chan struct{})}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			if u.fail.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		u.hits.Add(1)
		u.mu.Lock()
		u.last, u.lastURI = r.Clone(context.Background()), r.RequestURI
		delay := u.delay
		u.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if strings.HasSuffix(r.URL.Path, "/hold") {
			u.holding.Add(1)
			defer u.holding.Add(-1)
			select {
			case <-u.hold:
			case <-r.Context().Done():
				return
			}
		}
		if u.fail.Load() {
			w.Header().Set("X-Upstream", u.id)
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", u.id)
		w.Header().Set("X-Served-By", "upstream-says-so")
		status := http.StatusOK
		if r.Method == http.MethodPost {
			status = http.StatusCreated
		}
		w.WriteHeader(status)
		body := map[string]any{"instance": u.id, "path": r.URL.Path}
		_ = json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(func() {
		u.release()
		u.srv.Close()
	})
	return u
}

func (u *upstream) release() {
	u.mu.Lock()
	defer u.mu.Unlock()
	select {
	case <-u.hold:
	default:
		close(u.hold)
	}
}

func (u *upstream) port(t *testing.T) int {
	_, p, err := net.SplitHostPort(u.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func (u *upstream) lastRequest() (*http.Request, string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last, u.lastURI
}

type instanceOut struct {
	Service         string            `json:"service"`
	InstanceID      string            `json:"instance_id"`
	Host            string            `json:"host"`
	Port            int               `json:"port"`
	Metadata        map[string]string `json:"metadata"`
	HealthCheckPath string            `json:"health_check_path"`
	TTLSeconds      int               `json:"ttl_seconds"`
	Status          string            `json:"status"`
	LastHeartbeat   *string           `json:"last_heartbeat"`
	RegisteredAt    *string           `json:"registered_at"`
	InFlight        int64             `json:"in_flight"`
	Served          uint64            `json:"served"`
	Builtin         bool              `json:"builtin"`
}

type instanceList struct {
	Service   string        `json:"service"`
	Instances []instanceOut `json:"instances"`
}

func register(t *testing.T, h *harness, tok, service string, u *upstream, extra string) *response {
	t.Helper()
	body := fmt.Sprintf(`{"host":"127.0.0.1","port":%d%s}`, u.port(t), extra)
	return h.do("PUT", "/api/v1/registry/"+service+"/instances/"+u.id, tok, body)
}

func (r *response) expectStatus(t *testing.T, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
}

func (r *response) instance(t *testing.T, status int) instanceOut {
	t.Helper()
	var in instanceOut
	r.decodeStatus(t, status, &in)
	return in
}

func listOf(t *testing.T, h *harness, tok, service string) (instanceList, int) {
	t.Helper()
	r := h.do("GET", "/api/v1/registry/"+service+"/instances", tok, "")
	if r.status != http.StatusOK {
		return instanceList{}, r.status
	}
	var l instanceList
	r.decode(t, &l)
	return l, r.status
}

func statusOf(t *testing.T, h *harness, tok, service, id string) string {
	l, _ := listOf(t, h, tok, service)
	for _, in := range l.Instances {
		if in.InstanceID == id {
			return in.Status
		}
	}
	return "absent"
}

func TestRegistryLifecycle(t *testing.T) {
	h := newHarness(t)
	admin, svc, user := token(t, "root", "admin"), token(t, "svc:users", "service"), token(t, "alice")
	a := newUpstream(t, "users-1")

	register(t, h, user, "users", a, "").problem(t, http.StatusForbidden, "forbidden")
	in := register(t, h, svc, "users", a, `,"metadata":{"zone":"a"},"ttl_seconds":30`).instance(t, http.StatusCreated)
	if in.Service != "users" || in.InstanceID != "users-1" || in.Host != "127.0.0.1" || in.Port != a.port(t) || in.Status != "UP" ||
		in.TTLSeconds != 30 || in.Metadata["zone"] != "a" || in.RegisteredAt == nil || in.LastHeartbeat == nil {
		t.Fatalf("registered %+v", in)
	}
	up := register(t, h, svc, "users", a, `,"metadata":{"zone":"b"}`).instance(t, http.StatusOK)
	if up.Metadata["zone"] != "b" || *up.RegisteredAt != *in.RegisteredAt || up.TTLSeconds != 30 {
		t.Fatalf("updated %+v, registered %+v", up, in)
	}
	hb := h.do("POST", "/api/v1/registry/users/instances/users-1/heartbeat", svc, "").instance(t, http.StatusOK)
	if hb.Status != "UP" || *hb.LastHeartbeat < *in.LastHeartbeat {
		t.Fatalf("heartbeat %+v", hb)
	}

	// Reads are for admins; the list is the view this gateway holds.
	h.do("GET", "/api/v1/registry/users/instances", svc, "").problem(t, http.StatusForbidden, "forbidden")
	l, _ := listOf(t, h, admin, "users")
	if len(l.Instances) != 1 || l.Instances[0].Metadata["zone"] != "b" || l.Instances[0].LastHeartbeat == nil {
		t.Fatalf("list %+v", l)
	}
	var reg struct {
		Services []struct {
			Name           string `json:"name"`
			InstancesUp    int    `json:"instances_up"`
			InstancesTotal int    `json:"instances_total"`
			Builtin        bool   `json:"builtin"`
		} `json:"services"`
	}
	h.do("GET", "/api/v1/registry", admin, "").decodeStatus(t, http.StatusOK, &reg)
	seen := map[string]bool{}
	for _, s := range reg.Services {
		seen[s.Name] = true
		if s.Name == "users" && (s.InstancesUp != 1 || s.InstancesTotal != 1 || s.Builtin) {
			t.Fatalf("users in registry: %+v", s)
		}
		if s.Name == "auth" && (!s.Builtin || s.InstancesUp == 0) {
			t.Fatalf("auth in registry: %+v", s)
		}
	}
	if !seen["users"] || !seen["auth"] || !seen["payments"] {
		t.Fatalf("registry lists %+v", reg)
	}
	bl, _ := listOf(t, h, admin, "auth")
	if len(bl.Instances) == 0 || !bl.Instances[0].Builtin {
		t.Fatalf("built-in instances %+v", bl)
	}
	register(t, h, admin, "auth", a, "").problem(t, http.StatusConflict, "already_exists")

	h.do("DELETE", "/api/v1/registry/users/instances/users-1", svc, "").expectStatus(t, http.StatusNoContent)
	h.do("POST", "/api/v1/registry/users/instances/users-1/heartbeat", svc, "").problem(t, http.StatusNotFound, "not_found")
	h.do("DELETE", "/api/v1/registry/users/instances/users-1", svc, "").problem(t, http.StatusNotFound, "not_found")
	if _, status := listOf(t, h, admin, "users"); status != http.StatusNotFound {
		t.Fatalf("list after deregistering: %d", status)
	}
	// Registering again starts a new registration.
	again := register(t, h, svc, "users", a, "").instance(t, http.StatusCreated)
	if again.TTLSeconds != 30 || *again.RegisteredAt < *in.RegisteredAt {
		t.Fatalf("registered again %+v", again)
	}
}

func TestRegistryRefusesBadRegistrations(t *testing.T) {
	h := newHarness(t)
	admin := token(t, "root", "admin")
	for _, tc := range []struct{ path, body, code string }{
		{"/api/v1/registry/Users/instances/a", `{"host":"127.0.0.1","port":80}`, "validation_failed"},
		{"/api/v1/registry/users/instances/-a", `{"host":"127.0.0.1","port":80}`, "validation_failed"},
		{"/api/v1/registry/users/instances/a", `{"host":"127.0.0.1"}`, "validation_failed"},
		{"/api/v1/registry/users/instances/a", `{"host":"127.0.0.1","port":0}`, "validation_failed"},
		{"/api/v1/registry/users/instances/a", `{"host":"127.0.0.1","port":65536}`, "validation_failed"},
		{"/api/v1/registry/users/instances/a", `{"host":"127.0.0.1","port":80,"ttl_seconds":0}`, "validation_failed"},
		{"/api/v1/registry/users/instances/a", `{"host":"127.0.0.1","port":80,"ttl_seconds":301}`, "validation_failed"},
		{"/api/v1/registry/users/instances/a", `{"host":"10.0.0.1","port":80}`, "validation_failed"},
		{"/api/v1/registry/users/instances/a", `{"host":"169.254.169.254","port":80}`, "validation_failed"},
		{"/api/v1/registry/users/instances/a", `{"host":"example.com","port":80}`, "validation_failed"},
		{"/api/v1/registry/users/instances/a", `{"host":"","port":80}`, "validation_failed"},
		{"/api/v1/registry/users/instances/a", `{"host":"127.0.0.1","port":80,"health_check_path":"health"}`, "validation_failed"},
		{"/api/v1/registry/users/instances/a", `{"host":"127.0.0.1","port":"80"}`, "invalid_json"},
		{"/api/v1/registry/users/instances/a", `{"host":"127.0.0.1","port":80.5}`, "invalid_json"},
		{"/api/v1/registry/users/instances/a", `{"host":"127.0.0.1","port":80,"metadata":{"k":1}}`, "invalid_json"},
		{"/api/v1/registry/users/instances/a", `{"host":`, "invalid_json"},
	} {
		h.do("PUT", tc.path, admin, tc.body).problem(t, http.StatusBadRequest, tc.code)
	}
	// Nothing of it was registered.
	if _, status := listOf(t, h, admin, "users"); status != http.StatusNotFound {
		t.Fatalf("a refused registration left a trace: %d", status)
	}
}

func TestRegistryExpiresSilentInstances(t *testing.T) {
	h := newHarness(t)
	admin := token(t, "root", "admin")
	a := newUpstream(t, "quiet-1")
	register(t, h, admin, "quiet", a, `,"ttl_seconds":1`).instance(t, http.StatusCreated)
	start := time.Now()
	testkit.WaitFor(t, 5*time.Second, func() error {
		if s := statusOf(t, h, admin, "quiet", "quiet-1"); s != "DOWN" {
			return fmt.Errorf("status %s", s)
		}
		return nil
	})
	down := time.Since(start)
	// A heartbeat brings it back; then silence again, and it goes for good.
	h.do("POST", "/api/v1/registry/quiet/instances/quiet-1/heartbeat", admin, "").instance(t, http.StatusOK)
	if s := statusOf(t, h, admin, "quiet", "quiet-1"); s != "UP" {
		t.Fatalf("after a heartbeat: %s", s)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if _, status := listOf(t, h, admin, "quiet"); status != http.StatusNotFound {
			return fmt.Errorf("still listed (%d)", status)
		}
		return nil
	})
	h.do("POST", "/api/v1/registry/quiet/instances/quiet-1/heartbeat", admin, "").problem(t, http.StatusNotFound, "not_found")
	t.Logf("DOWN %v after its last heartbeat; removed after 3 × ttl", down)
}

func TestRegistryHealthProbes(t *testing.T) {
	h := newHarness(t)
	admin := token(t, "root", "admin")
	a := newUpstream(t, "probed-1")
	// ttl 3: probes about every second; heartbeats keep it fresh meanwhile.
	register(t, h, admin, "probed", a, `,"ttl_seconds":3,"health_check_path":"/health"`).instance(t, http.StatusCreated)
	ctx, cancel := context.WithCancel(context.Background())
	var beats sync.WaitGroup
	beats.Add(1)
	go func() {
		defer beats.Done()
		for ctx.Err() == nil {
			_, _ = h.send("POST", "/api/v1/registry/probed/instances/probed-1/heartbeat", admin, "")
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	defer func() { cancel(); beats.Wait() }()

	a.fail.Store(true)
	start := time.Now()
	testkit.WaitFor(t, 8*time.Second, func() error {
		if s := statusOf(t, h, admin, "probed", "probed-1"); s != "DOWN" {
			return fmt.Errorf("status %s while its probes fail", s)
		}
		return nil
	})
	down := time.Since(start)
	a.fail.Store(false)
	start = time.Now()
	testkit.WaitFor(t, 5*time.Second, func() error {
		if s := statusOf(t, h, admin, "probed", "probed-1"); s != "UP" {
			return fmt.Errorf("status %s after a good probe", s)
		}
		return nil
	})
	t.Logf("DOWN %v after probes began failing, UP %v after they passed again", down, time.Since(start))
}

type routeOut struct {
	Name          string   `json:"name"`
	PathPrefix    string   `json:"path_prefix"`
	Service       string   `json:"service"`
	RewritePrefix string   `json:"rewrite_prefix"`
	Methods       []string `json:"methods"`
	Strategy      string   `json:"strategy"`
	TimeoutMS     int      `json:"timeout_ms"`
	Auth          string   `json:"auth"`
}

func putRoute(t *testing.T, h *harness, tok, name, body string, status int) routeOut {
	t.Helper()
	var r routeOut
	h.do("PUT", "/api/v1/routes/"+name, tok, body).decodeStatus(t, status, &r)
	return r
}

func TestRoutesAreValidatedAndKept(t *testing.T) {
	h := newHarness(t)
	admin := token(t, "root", "admin")
	h.do("PUT", "/api/v1/routes/users", token(t, "svc", "service"), `{"path_prefix":"/api/users","service":"users"}`).problem(t, http.StatusForbidden, "forbidden")
	r := putRoute(t, h, admin, "users", `{"path_prefix":"/api/users","service":"users","rewrite_prefix":"/users"}`, http.StatusCreated)
	want := routeOut{Name: "users", PathPrefix: "/api/users", Service: "users", RewritePrefix: "/users", Methods: []string{}, Strategy: "round_robin", TimeoutMS: 5000, Auth: "required"}
	if fmt.Sprint(r) != fmt.Sprint(want) {
		t.Fatalf("route %+v, want %+v", r, want)
	}
	putRoute(t, h, admin, "users", `{"path_prefix":"/api/users","service":"users","strategy":"least_connections","methods":["get","POST"],"timeout_ms":100,"auth":"public"}`, http.StatusOK)
	for _, tc := range []struct{ name, body, code string }{
		{"Bad", `{"path_prefix":"/x","service":"users"}`, "validation_failed"},
		{"x", `{"path_prefix":"/","service":"users"}`, "validation_failed"},
		{"x", `{"path_prefix":"x","service":"users"}`, "validation_failed"},
		{"x", `{"path_prefix":"/api","service":"users"}`, "validation_failed"},
		{"x", `{"path_prefix":"/api/v1/things","service":"users"}`, "validation_failed"},
		{"x", `{"path_prefix":"/auth","service":"users"}`, "validation_failed"},
		{"x", `{"path_prefix":"/health/deep","service":"users"}`, "validation_failed"},
		{"x", `{"path_prefix":"/metrics","service":"users"}`, "validation_failed"},
		{"x", `{"path_prefix":"/assets/x","service":"users"}`, "validation_failed"},
		{"x", `{"path_prefix":"/x","service":"Users"}`, "validation_failed"},
		{"x", `{"path_prefix":"/x","service":"users","strategy":"fastest"}`, "validation_failed"},
		{"x", `{"path_prefix":"/x","service":"users","timeout_ms":0}`, "validation_failed"},
		{"x", `{"path_prefix":"/x","service":"users","timeout_ms":60001}`, "validation_failed"},
		{"x", `{"path_prefix":"/x","service":"users","methods":["BREW"]}`, "validation_failed"},
		{"x", `{"path_prefix":"/x","service":"users","auth":"maybe"}`, "validation_failed"},
		{"x", `{"path_prefix":"/x?y","service":"users"}`, "validation_failed"},
		{"x", `{"path_prefix":5,"service":"users"}`, "invalid_json"},
	} {
		h.do("PUT", "/api/v1/routes/"+tc.name, admin, tc.body).problem(t, http.StatusBadRequest, tc.code)
	}
	h.do("PUT", "/api/v1/routes/other", admin, `{"path_prefix":"/api/users/","service":"x"}`).problem(t, http.StatusConflict, "already_exists")
	var list struct {
		Routes []routeOut `json:"routes"`
	}
	h.do("GET", "/api/v1/routes", admin, "").decodeStatus(t, http.StatusOK, &list)
	if len(list.Routes) != 1 || list.Routes[0].Strategy != "least_connections" || fmt.Sprint(list.Routes[0].Methods) != "[GET POST]" ||
		list.Routes[0].TimeoutMS != 100 || list.Routes[0].Auth != "public" {
		t.Fatalf("routes %+v", list)
	}
	h.do("DELETE", "/api/v1/routes/users", admin, "").expectStatus(t, http.StatusNoContent)
	h.do("DELETE", "/api/v1/routes/users", admin, "").problem(t, http.StatusNotFound, "not_found")
	h.do("GET", "/api/users/1", admin, "").problem(t, http.StatusNotFound, "route_not_found")
}

func TestProxyRoutesToInstances(t *testing.T) {
	h := newHarness(t)
	admin, alice := token(t, "root", "admin"), token(t, "alice", "reader", "writer")
	ups := []*upstream{newUpstream(t, "u1"), newUpstream(t, "u2"), newUpstream(t, "u3")}
	// A route may name a service with no instance yet: 503 until one is UP.
	putRoute(t, h, admin, "users", `{"path_prefix":"/api/users","service":"users","rewrite_prefix":"/users"}`, http.StatusCreated)
	r := h.do("GET", "/api/users/1", alice, "")
	r.problem(t, http.StatusServiceUnavailable, "service_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	for _, u := range ups {
		register(t, h, admin, "users", u, "").instance(t, http.StatusCreated)
	}
	h.do("GET", "/api/users/1", "", "").problem(t, http.StatusUnauthorized, "unauthorized")

	// Round robin is exactly even, rewrites the prefix and keeps the query.
	for i := 0; i < 30; i++ {
		r := h.do("GET", "/api/users/123?x=1&y=%20", alice, "", "X-Granary-Subject", "mallory", "X-Granary-Roles", "admin", "X-Request-ID", "req-"+strconv.Itoa(i))
		if r.status != http.StatusOK {
			t.Fatalf("proxied GET: %s", r)
		}
		if by := r.header.Get("X-Served-By"); by != r.header.Get("X-Upstream") {
			t.Fatalf("X-Served-By %q from upstream %q", by, r.header.Get("X-Upstream"))
		}
		if r.header.Get("X-Request-ID") != "req-"+strconv.Itoa(i) {
			t.Fatalf("X-Request-ID %q", r.header.Get("X-Request-ID"))
		}
	}
	for _, u := range ups {
		if n := u.hits.Load(); n != 10 {
			t.Fatalf("round robin gave %s %d of 30", u.id, n)
		}
	}
	req, uri := ups[0].lastRequest()
	if uri != "/users/123?x=1&y=%20" {
		t.Fatalf("upstream saw %q", uri)
	}
	if req.Header.Get("X-Granary-Subject") != "alice" || req.Header.Get("X-Granary-Roles") != "reader,writer" {
		t.Fatalf("identity headers %q %q", req.Header.Get("X-Granary-Subject"), req.Header.Get("X-Granary-Roles"))
	}
	if req.Header.Get("X-Forwarded-For") != "127.0.0.1" || req.Header.Get("X-Forwarded-Proto") != "http" ||
		req.Header.Get("X-Forwarded-Host") == "" || !strings.HasPrefix(req.Header.Get("X-Request-ID"), "req-") {
		t.Fatalf("forwarded headers %v", req.Header)
	}

	// Body and status relayed; HEAD goes as HEAD.
	r = h.do("POST", "/api/users", alice, `{"name":"ada"}`)
	if r.status != http.StatusCreated || !strings.Contains(string(r.body), `"path":"/users"`) {
		t.Fatalf("proxied POST: %s", r)
	}
	r = h.do("HEAD", "/api/users/1", alice, "")
	if r.status != http.StatusOK || len(r.body) != 0 {
		t.Fatalf("proxied HEAD: %s", r)
	}

	// A public route carries no identity, and client X-Granary-* never pass.
	putRoute(t, h, admin, "open", `{"path_prefix":"/open","service":"users","auth":"public","methods":["GET"]}`, http.StatusCreated)
	r = h.do("GET", "/open/x", "", "", "X-Granary-Subject", "mallory")
	if r.status != http.StatusOK {
		t.Fatalf("public route: %s", r)
	}
	for _, u := range ups {
		if req, uri := u.lastRequest(); uri == "/x" && (req.Header.Get("X-Granary-Subject") != "" || req.Header.Get("X-Granary-Roles") != "") {
			t.Fatalf("public route passed identity headers: %v", req.Header)
		}
	}
	r = h.do("POST", "/open/x", "", `{}`)
	r.problem(t, http.StatusMethodNotAllowed, "method_not_allowed")
	if r.header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	h.do("GET", "/nowhere", alice, "").problem(t, http.StatusNotFound, "route_not_found")

	// Deregistered: no more traffic to it, at once.
	h.do("DELETE", "/api/v1/registry/users/instances/u1", admin, "").expectStatus(t, http.StatusNoContent)
	before := ups[0].hits.Load()
	for i := 0; i < 10; i++ {
		if r := h.do("GET", "/api/users/1", alice, ""); r.status != http.StatusOK || r.header.Get("X-Served-By") == "u1" {
			t.Fatalf("after deregistering u1: %s from %s", r, r.header.Get("X-Served-By"))
		}
	}
	if ups[0].hits.Load() != before {
		t.Fatal("a deregistered instance still got traffic")
	}
}

func TestRouteChangesReachEveryGateway(t *testing.T) {
	h := newHarness(t)
	other := h.sibling(gateway.DefaultConfig())
	admin := token(t, "root", "admin")
	u := newUpstream(t, "s1")
	register(t, h, admin, "svc", u, "").instance(t, http.StatusCreated)
	putRoute(t, h, admin, "svc", `{"path_prefix":"/svc","service":"svc"}`, http.StatusCreated)
	start := time.Now()
	testkit.WaitFor(t, time.Second, func() error {
		if r := other.do("GET", "/svc/a", admin, ""); r.status != http.StatusOK {
			return fmt.Errorf("other gateway: %s", r)
		}
		return nil
	})
	t.Logf("the other gateway routed %v after the change", time.Since(start))
	h.do("DELETE", "/api/v1/routes/svc", admin, "").expectStatus(t, http.StatusNoContent)
	testkit.WaitFor(t, time.Second, func() error {
		if r := other.do("GET", "/svc/a", admin, ""); r.status != http.StatusNotFound {
			return fmt.Errorf("other gateway after delete: %s", r)
		}
		return nil
	})
}

func TestProxyBreakerOpensAndHalfOpens(t *testing.T) {
	h := newHarness(t)
	admin := token(t, "root", "admin")
	u := newUpstream(t, "b1")
	register(t, h, admin, "flaky", u, "").instance(t, http.StatusCreated)
	putRoute(t, h, admin, "flaky", `{"path_prefix":"/flaky","service":"flaky"}`, http.StatusCreated)
	u.fail.Store(true)
	for i := 0; i < 5; i++ {
		if r := h.do("GET", "/flaky", admin, ""); r.status != http.StatusInternalServerError {
			t.Fatalf("failure %d relayed as %s", i+1, r)
		}
	}
	r := h.do("GET", "/flaky", admin, "")
	r.problem(t, http.StatusServiceUnavailable, "service_unavailable")
	if r.header.Get("Retry-After") == "" || u.hits.Load() != 5 {
		t.Fatalf("open breaker: Retry-After %q, upstream hit %d times", r.header.Get("Retry-After"), u.hits.Load())
	}
	var svcs struct {
		Services []struct {
			Name      string `json:"name"`
			Strategy  string `json:"strategy"`
			Breaker   string `json:"breaker"`
			Instances []struct {
				ID       string `json:"id"`
				MemberID string `json:"member_id"`
				InFlight int64  `json:"in_flight"`
				Served   uint64 `json:"served"`
				Breaker  string `json:"breaker"`
			} `json:"instances"`
		} `json:"services"`
	}
	h.do("GET", "/api/v1/services", admin, "").decodeStatus(t, http.StatusOK, &svcs)
	found := false
	for _, s := range svcs.Services {
		if s.Name == "flaky" {
			found = true
			if s.Breaker != "open" || len(s.Instances) != 1 || s.Instances[0].Breaker != "open" || s.Instances[0].ID != "b1" {
				t.Fatalf("services shows flaky as %+v", s)
			}
		}
	}
	if !found {
		t.Fatalf("services does not list the registered service: %+v", svcs)
	}
	u.fail.Store(false)
	// Half-open after 5 s: one request goes through and closes it.
	testkit.WaitFor(t, 8*time.Second, func() error {
		if r := h.do("GET", "/flaky", admin, ""); r.status != http.StatusOK {
			return fmt.Errorf("breaker still open: %d", r.status)
		}
		return nil
	})
}

func TestProxyTimeouts(t *testing.T) {
	h := newHarness(t)
	admin := token(t, "root", "admin")
	slow := newUpstream(t, "slow1")
	slow.delay = time.Second
	register(t, h, admin, "slow", slow, "").instance(t, http.StatusCreated)
	putRoute(t, h, admin, "slow", `{"path_prefix":"/slow","service":"slow","timeout_ms":100}`, http.StatusCreated)
	h.do("POST", "/slow", admin, `{}`).problem(t, http.StatusGatewayTimeout, "timeout")
	if n := slow.hits.Load(); n != 1 {
		t.Fatalf("a POST that timed out was sent %d times", n)
	}
	// A GET that timed out is retried on another instance, which answers.
	fast := newUpstream(t, "fast1")
	register(t, h, admin, "slow", fast, "").instance(t, http.StatusCreated)
	for i := 0; i < 4; i++ {
		if r := h.do("GET", "/slow", admin, ""); r.status != http.StatusOK || r.header.Get("X-Served-By") != "fast1" {
			t.Fatalf("GET %d: %s from %s", i, r, r.header.Get("X-Served-By"))
		}
	}
	if slow.hits.Load() < 2 {
		t.Fatalf("round robin never tried the slow instance (%d hits)", slow.hits.Load())
	}
}

func TestLeastConnectionsCountsEveryGateway(t *testing.T) {
	h := newHarness(t)
	other := h.sibling(gateway.DefaultConfig())
	admin := token(t, "root", "admin")
	a, b := newUpstream(t, "lc-a"), newUpstream(t, "lc-b")
	for _, u := range []*upstream{a, b} {
		register(t, h, admin, "lc", u, "").instance(t, http.StatusCreated)
	}
	putRoute(t, h, admin, "lc", `{"path_prefix":"/lc","service":"lc","strategy":"least_connections","timeout_ms":30000}`, http.StatusCreated)
	testkit.WaitFor(t, time.Second, func() error {
		if r := other.do("GET", "/lc/ping", admin, ""); r.status != http.StatusOK {
			return fmt.Errorf("other gateway: %s", r)
		}
		return nil
	})
	// Three slow requests through this gateway, one at a time: each goes to
	// the instance with fewer in flight.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer a.release()
	defer b.release()
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = h.send("GET", "/lc/hold", admin, "")
		}()
		want := int64(i + 1)
		testkit.WaitFor(t, 5*time.Second, func() error {
			if n := a.holding.Load() + b.holding.Load(); n != want {
				return fmt.Errorf("%d held, want %d", n, want)
			}
			return nil
		})
	}
	busy, idle := a, b
	if b.holding.Load() > a.holding.Load() {
		busy, idle = b, a
	}
	if busy.holding.Load() != 2 || idle.holding.Load() != 1 {
		t.Fatalf("held %d on %s and %d on %s", busy.holding.Load(), busy.id, idle.holding.Load(), idle.id)
	}
	// The other gateway has nothing in flight of its own: only the
	// cluster-wide counts tell it which instance is less busy.
	testkit.WaitFor(t, 3*time.Second, func() error {
		l, _ := listOf(t, other, admin, "lc")
		for _, in := range l.Instances {
			if in.InstanceID == busy.id && in.InFlight == 2 {
				return nil
			}
		}
		return fmt.Errorf("other gateway does not see 2 in flight on %s yet: %+v", busy.id, l.Instances)
	})
	idleHits, busyHits := idle.hits.Load(), busy.hits.Load()
	for i := 0; i < 4; i++ {
		if r := other.do("GET", "/lc/quick", admin, ""); r.status != http.StatusOK || r.header.Get("X-Served-By") != idle.id {
			t.Fatalf("request %d via the other gateway: %s from %s, want %s", i, r, r.header.Get("X-Served-By"), idle.id)
		}
	}
	if idle.hits.Load() != idleHits+4 || busy.hits.Load() != busyHits {
		t.Fatalf("least connections sent %d to the idle and %d to the busy instance", idle.hits.Load()-idleHits, busy.hits.Load()-busyHits)
	}
}
