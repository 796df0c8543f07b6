package registry

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"granary/messages"
)

func validSpec() *messages.InstanceSpec {
	return &messages.InstanceSpec{Host: "127.0.0.1", Port: 8080, TtlSeconds: 10}
}

// wantCode fails t unless err carries the contract code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %s, got no error", code)
	}
	if got := messages.AsFailure(err, "none").GetCode(); got != code {
		t.Fatalf("want code %s, got %s (%v)", code, got, err)
	}
}

func TestNormalizeSpecHosts(t *testing.T) {
	lo := LoopbackOnly()
	for _, host := range []string{"127.0.0.1", "127.9.8.7", "localhost", "::1", "::ffff:127.0.0.1"} {
		s := validSpec()
		s.Host = host
		out, err := lo.NormalizeSpec(s)
		if err != nil {
			t.Errorf("host %q under loopback: %v", host, err)
			continue
		}
		if out.GetHost() != host {
			t.Errorf("host %q kept as %q; the host must be kept as given", host, out.GetHost())
		}
	}
	for _, host := range []string{"10.0.0.1", "192.168.1.1", "::2", "example.com", "127.0.0.1:80", "", "[::1]"} {
		s := validSpec()
		s.Host = host
		_, err := lo.NormalizeSpec(s)
		wantCode(t, err, messages.CodeValidationFailed)
	}
	s := validSpec()
	s.Host = strings.Repeat("a", MaxHost+1)
	_, err := lo.NormalizeSpec(s)
	wantCode(t, err, messages.CodeValidationFailed)

	if _, err := lo.NormalizeSpec(nil); err == nil {
		t.Fatal("a missing body must be refused")
	}
}

func TestParseHosts(t *testing.T) {
	h, err := ParseHosts(" 10.0.0.0/8, 192.168.1.7 ,,::1, 172.16.5.9/12")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("172.16.0.0/12"),
	}
	if !slices.Equal(h.Allowed, want) {
		t.Fatalf("allowed = %v, want %v (masked, single addresses as full-length prefixes)", h.Allowed, want)
	}
	for host, ok := range map[string]bool{
		"10.0.0.1": true, "10.255.1.2": true, "192.168.1.7": true, "192.168.1.8": false,
		"172.31.0.1": true, "172.32.0.1": false, "127.0.0.1": false, "::1": true, "::ffff:10.1.2.3": true,
	} {
		s := validSpec()
		s.Host = host
		_, err := h.NormalizeSpec(s)
		if ok && err != nil {
			t.Errorf("%s must be allowed: %v", host, err)
		}
		if !ok && err == nil {
			t.Errorf("%s must be refused", host)
		}
	}
	for _, bad := range []string{"", " , ", "nope", "10.0.0.0/33", "10.0.0.1,garbage", "localhost"} {
		if _, err := ParseHosts(bad); err == nil {
			t.Errorf("ParseHosts(%q) must fail", bad)
		}
	}
}

func TestNormalizeSpecBounds(t *testing.T) {
	lo := LoopbackOnly()
	cases := map[string]struct {
		edit func(*messages.InstanceSpec)
		ok   bool
	}{
		"port 0":               {func(s *messages.InstanceSpec) { s.Port = 0 }, false},
		"port 1":               {func(s *messages.InstanceSpec) { s.Port = 1 }, true},
		"port 65535":           {func(s *messages.InstanceSpec) { s.Port = 65535 }, true},
		"port 65536":           {func(s *messages.InstanceSpec) { s.Port = 65536 }, false},
		"port -1":              {func(s *messages.InstanceSpec) { s.Port = -1 }, false},
		"ttl 0":                {func(s *messages.InstanceSpec) { s.TtlSeconds = 0 }, false},
		"ttl 1":                {func(s *messages.InstanceSpec) { s.TtlSeconds = 1 }, true},
		"ttl max":              {func(s *messages.InstanceSpec) { s.TtlSeconds = MaxTTLSeconds }, true},
		"ttl max+1":            {func(s *messages.InstanceSpec) { s.TtlSeconds = MaxTTLSeconds + 1 }, false},
		"health ok":            {func(s *messages.InstanceSpec) { s.HealthCheckPath = "/healthz?deep=1" }, true},
		"health relative":      {func(s *messages.InstanceSpec) { s.HealthCheckPath = "healthz" }, false},
		"health fragment":      {func(s *messages.InstanceSpec) { s.HealthCheckPath = "/h#x" }, false},
		"health space":         {func(s *messages.InstanceSpec) { s.HealthCheckPath = "/h x" }, false},
		"health non-ascii":     {func(s *messages.InstanceSpec) { s.HealthCheckPath = "/héalth" }, false},
		"health max":           {func(s *messages.InstanceSpec) { s.HealthCheckPath = "/" + strings.Repeat("a", MaxHealthPath-1) }, true},
		"health too long":      {func(s *messages.InstanceSpec) { s.HealthCheckPath = "/" + strings.Repeat("a", MaxHealthPath) }, false},
		"metadata max entries": {func(s *messages.InstanceSpec) { s.Metadata = metadataOf(MaxMetadata) }, true},
		"metadata too many":    {func(s *messages.InstanceSpec) { s.Metadata = metadataOf(MaxMetadata + 1) }, false},
		"metadata empty key":   {func(s *messages.InstanceSpec) { s.Metadata = map[string]string{"": "v"} }, false},
		"metadata key max":     {withMeta(strings.Repeat("k", MaxMetadataKey), "v"), true},
		"metadata key long":    {withMeta(strings.Repeat("k", MaxMetadataKey+1), "v"), false},
		"metadata key space":   {withMeta("a b", "v"), false},
		"metadata value utf8":  {withMeta("zone", "zürich eu"), true},
		"metadata value max":   {withMeta("k", strings.Repeat("v", MaxMetadataValue)), true},
		"metadata value long":  {withMeta("k", strings.Repeat("v", MaxMetadataValue+1)), false},
		"metadata value bad":   {withMeta("k", "\xff"), false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s := validSpec()
			c.edit(s)
			out, err := lo.NormalizeSpec(s)
			if !c.ok {
				wantCode(t, err, messages.CodeValidationFailed)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.GetPort() != s.GetPort() || out.GetTtlSeconds() != s.GetTtlSeconds() || out.GetHealthCheckPath() != s.GetHealthCheckPath() || len(out.GetMetadata()) != len(s.GetMetadata()) {
				t.Fatalf("normalized %v, want the fields of %v", out, s)
			}
		})
	}
}

func TestNormalizeSpecCopiesMetadata(t *testing.T) {
	s := validSpec()
	s.Metadata = map[string]string{"zone": "a"}
	out, err := LoopbackOnly().NormalizeSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	s.Metadata["zone"] = "b"
	if out.GetMetadata()["zone"] != "a" {
		t.Fatal("the normalized spec shares its metadata map with the input")
	}
	s.Metadata = nil
	if out, _ = LoopbackOnly().NormalizeSpec(s); out.Metadata != nil {
		t.Fatalf("no metadata normalizes to nil, got %v", out.Metadata)
	}
}

func withMeta(k, v string) func(*messages.InstanceSpec) {
	return func(s *messages.InstanceSpec) { s.Metadata = map[string]string{k: v} }
}

func metadataOf(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%d", i)] = "v"
	}
	return m
}

func validRoute() *messages.RouteSpec {
	return &messages.RouteSpec{Name: "users", PathPrefix: "/users", Service: "user-svc"}
}

func TestNormalizeRouteDefaults(t *testing.T) {
	r := validRoute()
	r.PathPrefix, r.RewritePrefix = "/users/", "/v2/"
	r.Methods = []string{"post", "GET", "get", "Delete"}
	out, err := NormalizeRoute(r)
	if err != nil {
		t.Fatal(err)
	}
	if out.GetPathPrefix() != "/users" || out.GetRewritePrefix() != "/v2" {
		t.Errorf("prefixes %q %q, want trailing slash trimmed", out.GetPathPrefix(), out.GetRewritePrefix())
	}
	if out.GetStrategy() != RoundRobin || out.GetAuth() != AuthRequired || out.GetTimeoutMs() != DefaultTimeoutMS {
		t.Errorf("defaults: strategy %q auth %q timeout %d", out.GetStrategy(), out.GetAuth(), out.GetTimeoutMs())
	}
	if want := []string{"DELETE", "GET", "POST"}; !slices.Equal(out.GetMethods(), want) {
		t.Errorf("methods %v, want %v", out.GetMethods(), want)
	}
	if r.GetPathPrefix() != "/users/" || len(r.GetMethods()) != 4 {
		t.Error("NormalizeRoute changed its input")
	}

	r = validRoute()
	r.Strategy, r.Auth, r.TimeoutMs, r.RewritePrefix = LeastConnections, AuthPublic, MaxTimeoutMS, "/"
	out, err = NormalizeRoute(r)
	if err != nil {
		t.Fatal(err)
	}
	if out.GetStrategy() != LeastConnections || out.GetAuth() != AuthPublic || out.GetTimeoutMs() != MaxTimeoutMS || out.GetRewritePrefix() != "" || out.Methods != nil {
		t.Errorf("explicit values not kept: %v", out)
	}
}

func TestNormalizeRouteRefuses(t *testing.T) {
	cases := map[string]func(*messages.RouteSpec){
		"bad name":          func(r *messages.RouteSpec) { r.Name = "Users" },
		"empty name":        func(r *messages.RouteSpec) { r.Name = "" },
		"bad service":       func(r *messages.RouteSpec) { r.Service = "user svc" },
		"no prefix":         func(r *messages.RouteSpec) { r.PathPrefix = "" },
		"relative prefix":   func(r *messages.RouteSpec) { r.PathPrefix = "users" },
		"query prefix":      func(r *messages.RouteSpec) { r.PathPrefix = "/users?x=1" },
		"double slash":      func(r *messages.RouteSpec) { r.PathPrefix = "/users//x" },
		"long prefix":       func(r *messages.RouteSpec) { r.PathPrefix = "/" + strings.Repeat("a", MaxPrefix) },
		"bad rewrite":       func(r *messages.RouteSpec) { r.RewritePrefix = "v2" },
		"bad strategy":      func(r *messages.RouteSpec) { r.Strategy = "sticky" },
		"bad auth":          func(r *messages.RouteSpec) { r.Auth = "optional" },
		"negative timeout":  func(r *messages.RouteSpec) { r.TimeoutMs = -1 },
		"timeout too large": func(r *messages.RouteSpec) { r.TimeoutMs = MaxTimeoutMS + 1 },
		"bad method":        func(r *messages.RouteSpec) { r.Methods = []string{"GET", "TRACE"} },
	}
	for _, res := range append(slices.Clone(Reserved), "/", "/api", "/api/", "/api/v1/users", "/health/", "/assets/app.js", "/metrics") {
		cases["reserved "+res] = func(r *messages.RouteSpec) { r.PathPrefix = res }
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			r := validRoute()
			edit(r)
			_, err := NormalizeRoute(r)
			wantCode(t, err, messages.CodeValidationFailed)
		})
	}
	if _, err := NormalizeRoute(nil); err == nil {
		t.Fatal("a missing body must be refused")
	}
	// Neighbours of reserved paths that share no segment are free.
	for _, p := range []string{"/apis", "/api2", "/authors", "/healthy", "/readyz", "/asset"} {
		r := validRoute()
		r.PathPrefix = p
		if _, err := NormalizeRoute(r); err != nil {
			t.Errorf("%s shares no segment with a reserved path: %v", p, err)
		}
	}
}

func TestMatchesOnSegments(t *testing.T) {
	for _, c := range []struct {
		prefix, path string
		want         bool
	}{
		{"/api/users", "/api/users", true},
		{"/api/users", "/api/users/7", true},
		{"/api/users", "/api/users/", true},
		{"/api/users", "/api/usersX", false},
		{"/api/users", "/api/user", false},
		{"/api/users", "/api", false},
		{"/api/users", "/other/api/users", false},
	} {
		if got := Matches(c.prefix, c.path); got != c.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", c.prefix, c.path, got, c.want)
		}
	}
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"/api", "/api/v1", true},
		{"/api/v1", "/api", true},
		{"/api/v1", "/api/v1", true},
		{"/api/v1", "/api/v10", false},
		{"/users", "/user", false},
	} {
		if got := Overlaps(c.a, c.b); got != c.want {
			t.Errorf("Overlaps(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestIdentity(t *testing.T) {
	id := InstanceIdentity("orders", "i-1")
	svc, inst, ok := SplitIdentity(id)
	if !ok || svc != "orders" || inst != "i-1" {
		t.Fatalf("SplitIdentity(%q) = %q %q %v", id, svc, inst, ok)
	}
	for _, bad := range []string{"orders", "orders/", "/i-1", "Orders/i-1", "orders/i/1"} {
		if _, _, ok := SplitIdentity(bad); ok {
			t.Errorf("SplitIdentity(%q) must fail", bad)
		}
	}
	var e *Error
	if !errors.As(error(ErrNotFound), &e) || e.Code() != messages.CodeNotFound {
		t.Fatal("ErrNotFound carries not_found")
	}
}
