// Package registry owns the services that run outside Granary: one
// event-sourced grain per registered instance (kind service_instance),
// which keeps its registration, expires it when heartbeats stop, probes
// its health and removes it when it stays DOWN; one grain holding the
// gateway's route table (kind route_table); and the view both publish in
// Redis, from which every gateway routes without asking a grain.
//
// The journal is the truth. The view is what a grain last published, at
// its stream's version: a write with an older version than the stored one
// is ignored, so an activation that lost a race with a newer one (the
// cluster can briefly run two) cannot publish the past.
package registry

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"

	"granary/messages"
)

const (
	// InstanceKind is the cluster kind of instance grains; the identity is
	// "<service>/<instance_id>".
	InstanceKind = messages.InstanceKind
	// RouteKind is the cluster kind of the route table grain, of which
	// there is one, RouteTableID.
	RouteKind    = messages.RouteKind
	RouteTableID = messages.RouteTableID
)

// NamePattern is the contract's rule for service names, instance ids and
// route names.
var NamePattern = messages.RegistryNamePattern

// Limits keep what a client can make the registry hold bounded.
const (
	MaxMetadata      = 32
	MaxMetadataKey   = 63
	MaxMetadataValue = 256
	MaxHealthPath    = 256
	MaxHost          = 253
	MaxRoutes        = 256
	MaxPrefix        = 256
	// DefaultMaxInstances caps registered instances (all services).
	DefaultMaxInstances = 1024
	DefaultTTLSeconds   = messages.DefaultInstanceTTLSeconds
	MaxTTLSeconds       = 300
	DefaultTimeoutMS    = messages.DefaultRouteTimeoutMS
	MaxTimeoutMS        = messages.MaxRouteTimeoutMS
)

// Status values of an instance.
const (
	StatusUp   = messages.InstanceStatusUp
	StatusDown = "DOWN"
)

// Route strategies and auth modes.
const (
	RoundRobin       = messages.RouteRoundRobin
	Random           = "random"
	LeastConnections = "least_connections"
	AuthRequired     = "required"
	AuthPublic       = messages.RouteAuthPublic
)

// Error is a domain rule violation with its contract code.
type Error struct{ code, msg string }

func (e *Error) Error() string { return e.msg }

// Code is the contract error code.
func (e *Error) Code() string { return e.code }

// invalid is a *messages.Failure, so the gateway can answer it as it is.
func invalid(format string, args ...any) error {
	return messages.Fail(messages.CodeValidationFailed, format, args...)
}

var (
	// ErrNotFound: the instance was never registered or was removed.
	ErrNotFound = &Error{messages.CodeNotFound, "instance not registered (or removed)"}
	// ErrFull: the registry holds as many instances as it may.
	ErrFull = &Error{messages.CodeForbidden, "the registry is full"}
)

// InstanceIdentity is the grain identity of an instance.
func InstanceIdentity(service, id string) string { return service + "/" + id }

// SplitIdentity is InstanceIdentity's inverse.
func SplitIdentity(identity string) (service, id string, ok bool) {
	service, id, ok = strings.Cut(identity, "/")
	return service, id, ok && NamePattern.MatchString(service) && NamePattern.MatchString(id)
}

// Hosts decides which hosts an instance may have: the gateway connects to
// them, so an address outside would let a registry writer aim it at other
// networks.
type Hosts struct{ Allowed []netip.Prefix }

// LoopbackOnly is the default: 127.0.0.0/8 and ::1.
func LoopbackOnly() Hosts {
	return Hosts{Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
}

// ParseHosts reads a comma-separated list of CIDRs (or single addresses).
func ParseHosts(s string) (Hosts, error) {
	var h Hosts
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			a, aerr := netip.ParseAddr(part)
			if aerr != nil {
				return Hosts{}, fmt.Errorf("allowed hosts: %q is neither a CIDR nor an address", part)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		h.Allowed = append(h.Allowed, p.Masked())
	}
	if len(h.Allowed) == 0 {
		return Hosts{}, fmt.Errorf("allowed hosts: %q names no network", s)
	}
	return h, nil
}

// Resolve returns the address host stands for: an IP literal, or
// "localhost". Names are not resolved: what DNS says at registration
// need not be what it says when the gateway connects.
func (h Hosts) Resolve(host string) (netip.Addr, error) {
	if host == "localhost" {
		return netip.MustParseAddr("127.0.0.1"), nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, invalid("host: %q must be an IP address or localhost", host)
	}
	a = a.Unmap()
	if !h.Contains(a) {
		return netip.Addr{}, invalid("host: %s is outside GRANARY_REGISTRY_ALLOWED_HOSTS", a)
	}
	return a, nil
}

// Contains reports whether a lies in an allowed network.
func (h Hosts) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range h.Allowed {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// NormalizeSpec checks a registration against the contract and fills in
// defaults; the host is kept as given.
func (h Hosts) NormalizeSpec(s *messages.InstanceSpec) (*messages.InstanceSpec, error) {
	if s == nil {
		return nil, invalid("body: missing")
	}
	out := &messages.InstanceSpec{Host: s.GetHost(), Port: s.GetPort(), HealthCheckPath: s.GetHealthCheckPath(), TtlSeconds: s.GetTtlSeconds()}
	switch {
	case out.Host == "":
		return nil, invalid("host: missing")
	case len(out.Host) > MaxHost:
		return nil, invalid("host: at most %d bytes", MaxHost)
	case out.Port < 1 || out.Port > 65535:
		return nil, invalid("port: must be 1..65535")
	case out.TtlSeconds < 1 || out.TtlSeconds > MaxTTLSeconds:
		return nil, invalid("ttl_seconds: must be 1..%d", MaxTTLSeconds)
	}
	if _, err := h.Resolve(out.Host); err != nil {
		return nil, err
	}
	if p := out.HealthCheckPath; p != "" {
		if !strings.HasPrefix(p, "/") || len(p) > MaxHealthPath || !printable(p) || strings.ContainsAny(p, "#") {
			return nil, invalid("health_check_path: a path starting with / (at most %d printable bytes)", MaxHealthPath)
		}
	}
	if len(s.GetMetadata()) > MaxMetadata {
		return nil, invalid("metadata: at most %d entries", MaxMetadata)
	}
	if len(s.GetMetadata()) > 0 {
		out.Metadata = make(map[string]string, len(s.GetMetadata()))
	}
	for k, v := range s.GetMetadata() {
		if k == "" || len(k) > MaxMetadataKey || !printable(k) {
			return nil, invalid("metadata: keys are 1..%d printable bytes", MaxMetadataKey)
		}
		if len(v) > MaxMetadataValue || !utf8.ValidString(v) {
			return nil, invalid("metadata.%s: at most %d bytes of UTF-8", k, MaxMetadataValue)
		}
		out.Metadata[k] = v
	}
	return out, nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Reserved are the gateway's own paths: no route may take them.
var Reserved = []string{"/api/v1", "/auth", "/health", "/ready", "/metrics", "/assets"}

var routeMethods = []string{"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}

// NormalizeRoute checks a route against the contract and fills in
// defaults. Prefixes match whole path segments ("/api/users" matches
// "/api/users" and "/api/users/7", not "/api/usersX").
func NormalizeRoute(r *messages.RouteSpec) (*messages.RouteSpec, error) {
	if r == nil {
		return nil, invalid("body: missing")
	}
	out := &messages.RouteSpec{Name: r.GetName(), PathPrefix: strings.TrimSuffix(r.GetPathPrefix(), "/"), Service: r.GetService(),
		RewritePrefix: strings.TrimSuffix(r.GetRewritePrefix(), "/"), Strategy: r.GetStrategy(), TimeoutMs: r.GetTimeoutMs(), Auth: r.GetAuth()}
	if out.Strategy == "" {
		out.Strategy = RoundRobin
	}
	if out.Auth == "" {
		out.Auth = AuthRequired
	}
	switch {
	case !NamePattern.MatchString(out.Name):
		return nil, invalid("name: must match %s", NamePattern)
	case r.GetPathPrefix() == "":
		return nil, invalid("path_prefix: missing")
	case !validPath(r.GetPathPrefix()):
		return nil, invalid("path_prefix: a path starting with / (at most %d printable bytes, no query)", MaxPrefix)
	case out.PathPrefix == "":
		return nil, invalid("path_prefix: / would take every path, the gateway's own included")
	case r.GetRewritePrefix() != "" && !validPath(r.GetRewritePrefix()):
		return nil, invalid("rewrite_prefix: empty or a path starting with / (at most %d printable bytes, no query)", MaxPrefix)
	case !NamePattern.MatchString(out.Service):
		return nil, invalid("service: must match %s", NamePattern)
	case out.Strategy != RoundRobin && out.Strategy != Random && out.Strategy != LeastConnections:
		return nil, invalid("strategy: one of round_robin, random, least_connections")
	case out.Auth != AuthRequired && out.Auth != AuthPublic:
		return nil, invalid("auth: required or public")
	}
	if out.TimeoutMs == 0 {
		out.TimeoutMs = DefaultTimeoutMS
	}
	if out.TimeoutMs < 1 || out.TimeoutMs > MaxTimeoutMS {
		return nil, invalid("timeout_ms: must be 1..%d", MaxTimeoutMS)
	}
	for _, res := range Reserved {
		if Overlaps(out.PathPrefix, res) {
			return nil, invalid("path_prefix: %s overlaps the gateway's own %s", out.PathPrefix, res)
		}
	}
	for _, m := range r.GetMethods() {
		m = strings.ToUpper(m)
		if !slices.Contains(routeMethods, m) {
			return nil, invalid("methods: %q is not one of %s", m, strings.Join(routeMethods, ", "))
		}
		if !slices.Contains(out.Methods, m) {
			out.Methods = append(out.Methods, m)
		}
	}
	slices.Sort(out.Methods)
	return out, nil
}

func validPath(p string) bool {
	return strings.HasPrefix(p, "/") && len(p) <= MaxPrefix && printable(p) && !strings.ContainsAny(p, "?#") && !strings.Contains(p, "//")
}

// Overlaps reports whether one of two prefixes matches a path the other
// matches.
func Overlaps(a, b string) bool { return Matches(a, b) || Matches(b, a) }

// Matches reports whether prefix matches path on whole segments.
func Matches(prefix, path string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}
