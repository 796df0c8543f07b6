package grains

import (
	"context"
	"log/slog"
	"net/netip"

	"granary/actors/registry"
	"granary/messages"
)

// Instance is a registered instance as its grain last published it to
// the registry view.
type Instance = registry.InstanceRecord

// Instances calls the grains of registered service instances.
type Instances struct {
	Caller Caller
	// Hosts are where instances may be registered (the member's
	// RegistryHosts).
	Hosts registry.Hosts
}

// Send sends req (its command set) to the grain of service's instance id.
func (i Instances) Send(ctx context.Context, service, id string, req *messages.InstanceRequest) (*messages.InstanceReply, error) {
	req.DeadlineUnixMs = deadline(ctx)
	return call[*messages.InstanceReply](ctx, i.Caller, messages.InstanceKind, registry.InstanceIdentity(service, id), req)
}

// CheckSpec validates spec the way the grain will, so a bad body never
// reaches (or activates) a grain.
func (i Instances) CheckSpec(spec *messages.InstanceSpec) error {
	_, err := i.Hosts.NormalizeSpec(spec)
	return err
}

// Allowed are the address ranges instances may be reached on.
func (i Instances) Allowed() []netip.Prefix { return i.Hosts.Allowed }

// Identity is the grain identity of service's instance id, which keys
// its heartbeat in the registry view.
func Identity(service, id string) string { return registry.InstanceIdentity(service, id) }

// Routes calls the route table grain.
type Routes struct{ Caller Caller }

// Send sends req (its command set) to the route table.
func (r Routes) Send(ctx context.Context, req *messages.RouteRequest) (*messages.RouteReply, error) {
	req.DeadlineUnixMs = deadline(ctx)
	return call[*messages.RouteReply](ctx, r.Caller, messages.RouteKind, messages.RouteTableID, req)
}

// NormalizeRoute validates a route and fills its defaults, as the table
// will.
func NormalizeRoute(spec *messages.RouteSpec) (*messages.RouteSpec, error) {
	return registry.NormalizeRoute(spec)
}

// RouteJSON is a route as the contract shows it.
func RouteJSON(r *messages.RouteSpec) any { return registry.RouteJSON(r) }

// NewRouteWatcher keeps a local copy of the registry view (instances and
// routes), reloading it every registry.DefaultWatchInterval once started;
// Close stops it.
func NewRouteWatcher(view registry.View, log *slog.Logger) *registry.Watcher {
	return registry.NewWatcher(view, registry.DefaultWatchInterval, log)
}
