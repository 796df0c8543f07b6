package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"granary/cluster/grains"
	"granary/http/problem"
	"granary/http/proxy"
	"granary/http/ratelimit"
	"granary/messages"
)

// RoleService may write the registry (register, heartbeat, deregister)
// and nothing else an admin may.
const RoleService = "service"

// registryJSON is an Instance of the contract.
type registryJSON struct {
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
	// Builtin marks the instances of Granary's own services, listed so
	// operators see one registry.
	Builtin bool `json:"builtin,omitempty"`
}

func stamp(ms int64) *string {
	if ms <= 0 {
		return nil
	}
	s := time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
	return &s
}

// startRegistry builds the route table's watcher and the proxy; Close
// stops them.
func (g *Gateway) startRegistry() error {
	g.watcher = grains.NewRouteWatcher(g.deps.Member.RegistryView(), g.deps.Logger)
	if g.deps.Redis != nil {
		// Per gateway, not per member: tests run several gateways on one.
		g.counts = proxy.NewRedisCounts(g.deps.Redis, g.cfg.KeyPrefix, g.deps.Member.ID()+"-"+randomHex(4), 0, g.deps.Logger)
	}
	var counts proxy.Counts = proxy.NewLocalCounts()
	if g.counts != nil {
		counts = g.counts
	}
	p, err := proxy.New(proxy.Config{
		Targets: g.targets,
		Problem: writeProblem,
		Counts:  counts,
		Allowed: g.instances.Allowed(),
		RequestID: func(r *http.Request) string {
			return r.Header.Get(echo.HeaderXRequestID)
		},
		ClientIP:     func(r *http.Request) string { return ratelimit.ClientAddr(r, g.cfg.TrustedProxies).String() },
		Logger:       g.deps.Logger,
		MaxBodyBytes: g.cfg.BodyLimit,
	})
	if err != nil {
		if g.counts != nil {
			g.counts.Close()
		}
		return err
	}
	g.proxy = p
	g.watcher.Start()
	return nil
}

func (g *Gateway) stopRegistry() { g.stopReg.Do(g.closeRegistry) }

func (g *Gateway) closeRegistry() {
	if g.watcher != nil {
		g.watcher.Close()
	}
	if g.proxy != nil {
		g.proxy.Close()
	}
	if g.counts != nil {
		g.counts.Close()
	}
}

// targets are the UP instances of a service, for the proxy.
func (g *Gateway) targets(service string) []proxy.Target {
	up := g.watcher.Up(service)
	out := make([]proxy.Target, 0, len(up))
	for _, in := range up {
		out = append(out, proxy.Target{ID: in.InstanceID, Host: in.Host, Port: in.Port})
	}
	return out
}

// writeProblem is problem.Handler's answer for the proxy, which writes to
// the response itself.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, code, detail string) {
	if code == "bad_request" { // an unreadable body: the contract's invalid_json
		code = messages.CodeInvalidJSON
	}
	p := problem.Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, Code: code,
		Instance: r.URL.Path, RequestID: w.Header().Get(echo.HeaderXRequestID)}
	body, _ := json.Marshal(p)
	w.Header().Set(echo.HeaderContentType, problem.ContentType)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// requireRegistryWriter lets admins and services write the registry.
func requireRegistryWriter(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p := principal(c)
		if !p.Admin() && !slices.Contains(p.Roles, RoleService) {
			return messages.Fail(messages.CodeForbidden, "registry writes need role admin or service")
		}
		return next(c)
	}
}

func registryParam(c echo.Context, name string) (string, error) {
	v := c.Param(name)
	if !messages.RegistryNamePattern.MatchString(v) {
		return "", messages.Fail(messages.CodeValidationFailed, "%s: must match %s", name, messages.RegistryNamePattern)
	}
	return v, nil
}

// builtin reports whether service is one of Granary's own.
func (g *Gateway) builtin(service string) bool {
	for _, st := range g.deps.Services.Statuses() {
		if st.Name == service {
			return true
		}
	}
	return false
}

type instanceBody struct {
	Host            string            `json:"host"`
	Port            *int32            `json:"port"`
	Metadata        map[string]string `json:"metadata"`
	HealthCheckPath string            `json:"health_check_path"`
	TTLSeconds      *int32            `json:"ttl_seconds"`
}

func (g *Gateway) instanceCall(c echo.Context, build func(r *messages.InstanceRequest)) (string, string, *messages.InstanceReply, error) {
	service, err := registryParam(c, "service")
	if err != nil {
		return "", "", nil, err
	}
	id, err := registryParam(c, "instance")
	if err != nil {
		return "", "", nil, err
	}
	cmdID, err := commandID(c, principal(c).Subject)
	if err != nil {
		return "", "", nil, err
	}
	r := &messages.InstanceRequest{CommandId: cmdID}
	build(r)
	reply, err := call(g, c, func(ctx context.Context) (*messages.InstanceReply, error) {
		return g.instances.Send(ctx, service, id, r)
	})
	return service, id, reply, err
}

// refresh makes a change apply on this gateway before it is answered.
func (g *Gateway) refresh(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), time.Second)
	defer cancel()
	if err := g.watcher.Refresh(ctx); err != nil {
		g.deps.Logger.Warn("registry view: reload after a change failed; other gateways see it within a second", "err", err)
	}
	return nil
}

func (g *Gateway) putInstance(c echo.Context) error {
	var b instanceBody
	if err := g.bindJSON(c, &b); err != nil {
		return err
	}
	if g.builtin(c.Param("service")) {
		return messages.Fail(messages.CodeAlreadyExists, "service %s is built into Granary", c.Param("service"))
	}
	spec := &messages.InstanceSpec{Host: b.Host, Metadata: b.Metadata, HealthCheckPath: b.HealthCheckPath, TtlSeconds: messages.DefaultInstanceTTLSeconds}
	if b.Port == nil {
		return messages.Fail(messages.CodeValidationFailed, "port: missing")
	}
	spec.Port = *b.Port
	if b.TTLSeconds != nil {
		spec.TtlSeconds = *b.TTLSeconds
	}
	// Checked here too, so a bad body never reaches (or activates) a grain.
	if err := g.instances.CheckSpec(spec); err != nil {
		return err
	}
	_, _, reply, err := g.instanceCall(c, func(r *messages.InstanceRequest) {
		r.Command = &messages.InstanceRequest_Register{Register: &messages.RegisterInstance{Spec: spec}}
	})
	if err != nil {
		return err
	}
	_ = g.refresh(c)
	status := http.StatusOK
	if reply.GetCreated() {
		status = http.StatusCreated
	}
	return c.JSON(status, g.renderInstance(reply.GetInstance()))
}

func (g *Gateway) heartbeatInstance(c echo.Context) error {
	var b struct{}
	if err := g.bindJSON(c, &b); err != nil {
		return err
	}
	_, _, reply, err := g.instanceCall(c, func(r *messages.InstanceRequest) {
		r.Command = &messages.InstanceRequest_Heartbeat{Heartbeat: &messages.HeartbeatInstance{}}
	})
	if err != nil {
		return err
	}
	in := reply.GetInstance()
	// Most heartbeats change nothing the view holds: reload only when one
	// brought an instance back UP.
	if v, ok := g.watcher.Version(in.GetService(), in.GetInstanceId()); !ok || v != in.GetVersion() {
		_ = g.refresh(c)
	}
	return c.JSON(http.StatusOK, g.renderInstance(in))
}

func (g *Gateway) deleteInstance(c echo.Context) error {
	_, id, _, err := g.instanceCall(c, func(r *messages.InstanceRequest) {
		r.Command = &messages.InstanceRequest_Deregister{Deregister: &messages.DeregisterInstance{}}
	})
	if err != nil {
		return err
	}
	_ = g.refresh(c)
	g.proxy.Forget(id)
	return c.NoContent(http.StatusNoContent)
}

func (g *Gateway) renderInstance(in *messages.InstanceState) registryJSON {
	sp := in.GetSpec()
	md := sp.GetMetadata()
	if md == nil {
		md = map[string]string{}
	}
	out := registryJSON{Service: in.GetService(), InstanceID: in.GetInstanceId(), Host: sp.GetHost(), Port: int(sp.GetPort()), Metadata: md,
		HealthCheckPath: sp.GetHealthCheckPath(), TTLSeconds: int(sp.GetTtlSeconds()), Status: in.GetStatus(),
		LastHeartbeat: stamp(in.GetLastHeartbeatUnixMs()), RegisteredAt: stamp(in.GetRegisteredAtUnixMs())}
	out.InFlight, out.Served = g.usage(in.GetInstanceId())
	return out
}

func (g *Gateway) usage(id string) (int64, uint64) {
	if g.counts != nil {
		return g.counts.Total(id), g.counts.Served(id)
	}
	for _, st := range g.proxy.Instances() {
		if st.ID == id {
			return st.InFlight, st.Served
		}
	}
	return 0, 0
}

func (g *Gateway) recordJSON(rec grains.Instance, beats map[string]int64) registryJSON {
	md := rec.Metadata
	if md == nil {
		md = map[string]string{}
	}
	out := registryJSON{Service: rec.Service, InstanceID: rec.InstanceID, Host: rec.Host, Port: rec.Port, Metadata: md,
		HealthCheckPath: rec.HealthCheckPath, TTLSeconds: rec.TTLSeconds, Status: rec.Status,
		LastHeartbeat: stamp(beats[grains.Identity(rec.Service, rec.InstanceID)]), RegisteredAt: stamp(rec.RegisteredAt)}
	out.InFlight, out.Served = g.usage(rec.InstanceID)
	return out
}

// builtinInstances renders a built-in service's instances as registry
// entries: one per instance on every member advertising it.
func (g *Gateway) builtinInstances(service string) []registryJSON {
	var out []registryJSON
	for _, st := range g.deps.Services.Statuses() {
		if st.Name != service {
			continue
		}
		addrs := map[string]string{}
		for _, m := range g.deps.Member.Members() {
			addrs[m.ID] = m.Address
		}
		for _, in := range st.Instances {
			host, port, _ := net.SplitHostPort(addrs[in.MemberID])
			p, _ := strconv.Atoi(port)
			out = append(out, registryJSON{Service: service, InstanceID: in.ID, Host: host, Port: p,
				Metadata: map[string]string{"member_id": in.MemberID}, Status: messages.InstanceStatusUp, InFlight: in.InFlight, Served: in.Served, Builtin: true})
		}
	}
	return out
}

func (g *Gateway) listInstances(c echo.Context) error {
	service, err := registryParam(c, "service")
	if err != nil {
		return err
	}
	var out []registryJSON
	if g.builtin(service) {
		out = g.builtinInstances(service)
	} else {
		recs, beats := g.watcher.Instances(service)
		for _, rec := range recs {
			out = append(out, g.recordJSON(rec, beats))
		}
	}
	if len(out) == 0 {
		return messages.Fail(messages.CodeNotFound, "no instance of service %s is registered", service)
	}
	return c.JSON(http.StatusOK, map[string]any{"service": service, "instances": out})
}

type serviceSummaryJSON struct {
	Name           string `json:"name"`
	InstancesUp    int    `json:"instances_up"`
	InstancesTotal int    `json:"instances_total"`
	Builtin        bool   `json:"builtin"`
}

func (g *Gateway) listRegistry(c echo.Context) error {
	out := []serviceSummaryJSON{}
	for _, st := range g.deps.Services.Statuses() {
		n := len(st.Instances)
		out = append(out, serviceSummaryJSON{Name: st.Name, InstancesUp: n, InstancesTotal: n, Builtin: true})
	}
	for _, name := range g.watcher.Services() {
		recs, _ := g.watcher.Instances(name)
		s := serviceSummaryJSON{Name: name, InstancesTotal: len(recs)}
		for _, r := range recs {
			if r.Up() {
				s.InstancesUp++
			}
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b serviceSummaryJSON) int { return cmp.Compare(a.Name, b.Name) })
	return c.JSON(http.StatusOK, map[string]any{"services": out})
}

type routeBody struct {
	PathPrefix    string   `json:"path_prefix"`
	Service       string   `json:"service"`
	RewritePrefix string   `json:"rewrite_prefix"`
	Methods       []string `json:"methods"`
	Strategy      string   `json:"strategy"`
	TimeoutMS     *int32   `json:"timeout_ms"`
	Auth          string   `json:"auth"`
}

func (g *Gateway) routeCall(c echo.Context, build func(r *messages.RouteRequest)) (*messages.RouteReply, error) {
	cmdID, err := commandID(c, principal(c).Subject)
	if err != nil {
		return nil, err
	}
	r := &messages.RouteRequest{CommandId: cmdID}
	build(r)
	return call(g, c, func(ctx context.Context) (*messages.RouteReply, error) { return g.routeTable.Send(ctx, r) })
}

func (g *Gateway) putRoute(c echo.Context) error {
	name, err := registryParam(c, "name")
	if err != nil {
		return err
	}
	var b routeBody
	if err := g.bindJSON(c, &b); err != nil {
		return err
	}
	spec := &messages.RouteSpec{Name: name, PathPrefix: b.PathPrefix, Service: b.Service, RewritePrefix: b.RewritePrefix, Methods: b.Methods,
		Strategy: b.Strategy, TimeoutMs: messages.DefaultRouteTimeoutMS, Auth: b.Auth}
	if b.TimeoutMS != nil {
		spec.TimeoutMs = *b.TimeoutMS
		if spec.TimeoutMs == 0 {
			return messages.Fail(messages.CodeValidationFailed, "timeout_ms: must be 1..%d", messages.MaxRouteTimeoutMS)
		}
	}
	norm, err := grains.NormalizeRoute(spec)
	if err != nil {
		return err
	}
	reply, err := g.routeCall(c, func(r *messages.RouteRequest) {
		r.Command = &messages.RouteRequest_Put{Put: &messages.PutRoute{Route: norm}}
	})
	if err != nil {
		return err
	}
	_ = g.refresh(c)
	status := http.StatusOK
	if reply.GetCreated() {
		status = http.StatusCreated
	}
	for _, r := range reply.GetRoutes() {
		if r.GetName() == name {
			return c.JSON(status, grains.RouteJSON(r))
		}
	}
	return fmt.Errorf("route table answered without route %s", name)
}

func (g *Gateway) listRoutes(c echo.Context) error {
	reply, err := g.routeCall(c, func(r *messages.RouteRequest) {
		r.Command = &messages.RouteRequest_Get{Get: &messages.GetRoutes{}}
	})
	if err != nil {
		return err
	}
	out := make([]any, 0, len(reply.GetRoutes()))
	for _, r := range reply.GetRoutes() {
		out = append(out, grains.RouteJSON(r))
	}
	return c.JSON(http.StatusOK, map[string]any{"routes": out})
}

func (g *Gateway) deleteRoute(c echo.Context) error {
	name, err := registryParam(c, "name")
	if err != nil {
		return err
	}
	if _, err := g.routeCall(c, func(r *messages.RouteRequest) {
		r.Command = &messages.RouteRequest_Delete{Delete: &messages.DeleteRoute{Name: name}}
	}); err != nil {
		return err
	}
	_ = g.refresh(c)
	return c.NoContent(http.StatusNoContent)
}

// unrouted answers every path no Granary route matched: the route table's
// longest matching prefix sends it to an instance, else 404.
func (g *Gateway) unrouted(c echo.Context) error {
	req := c.Request()
	route, ok := g.watcher.Match(req.URL.Path)
	if !ok { // deleted since proxyRouted matched it
		return messages.Fail(messages.CodeRouteNotFound, "no route matches this path")
	}
	method := req.Method
	if isHead(c) {
		method = http.MethodHead
	}
	if m := route.GetMethods(); len(m) > 0 && !slices.Contains(m, method) && !(method == http.MethodHead && slices.Contains(m, http.MethodGet)) {
		c.Response().Header().Set(echo.HeaderAllow, strings.Join(m, ", "))
		return messages.Fail(messages.CodeMethodNotAllowed, "route %s accepts %s", route.GetName(), strings.Join(m, ", "))
	}
	pr := proxy.Route{Name: route.GetName(), PathPrefix: route.GetPathPrefix(), Service: route.GetService(), RewritePrefix: route.GetRewritePrefix(),
		Methods: route.GetMethods(), Strategy: route.GetStrategy(), Timeout: time.Duration(route.GetTimeoutMs()) * time.Millisecond,
		Public: route.GetAuth() == messages.RouteAuthPublic}
	serve := func(c echo.Context) error {
		r := c.Request()
		if isHead(c) {
			r = r.Clone(r.Context())
			r.Method = http.MethodHead
		}
		// The gateway's id (the client's, or one it made) goes upstream.
		r.Header.Set(echo.HeaderXRequestID, c.Response().Header().Get(echo.HeaderXRequestID))
		var id proxy.Identity
		if !pr.Public {
			p := principal(c)
			id = proxy.Identity{Subject: p.Subject, Roles: p.Roles}
		}
		g.proxy.Serve(c.Response(), r, pr, id)
		return nil
	}
	if pr.Public {
		return serve(c)
	}
	return g.authenticate(serve)(c)
}

// registryRoutes registers the registry, routes and the proxy.
func (g *Gateway) registryRoutes(e *echo.Echo) {
	authed, mutating := g.authenticate, g.mutating()
	e.PUT("/api/v1/registry/:service/instances/:instance", g.putInstance, authed, requireRegistryWriter)
	e.POST("/api/v1/registry/:service/instances/:instance/heartbeat", g.heartbeatInstance, authed, requireRegistryWriter, mutating)
	e.DELETE("/api/v1/registry/:service/instances/:instance", g.deleteInstance, authed, requireRegistryWriter)
	e.GET("/api/v1/registry/:service/instances", g.listInstances, authed, requireAdmin)
	e.GET("/api/v1/registry", g.listRegistry, authed, requireAdmin)
	e.PUT("/api/v1/routes/:name", g.putRoute, authed, requireAdmin)
	e.GET("/api/v1/routes", g.listRoutes, authed, requireAdmin)
	e.DELETE("/api/v1/routes/:name", g.deleteRoute, authed, requireAdmin)
}

// proxiedRoute labels proxied requests in metrics and logs.
const proxiedRoute = "(proxied)"

// proxyRouted sends a request whose path a route of the table matches to
// the proxy, through the same observe, recover and rate-limit middleware
// as every other request, before Echo routes it: route prefixes never
// overlap Granary's own paths, and Echo's router answers its 404 and 405
// as before for every path the table does not match.
func (g *Gateway) proxyRouted(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, ok := g.watcher.Match(c.Request().URL.Path); !ok {
			return next(c)
		}
		c.SetPath(proxiedRoute)
		return g.proxyChain(c)
	}
}
