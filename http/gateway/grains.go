package gateway

import (
	"context"

	"github.com/labstack/echo/v4"

	"granary/cluster/grains"
	"granary/messages"
)

// clients are the typed grain clients the handlers call.
type clients struct {
	accounts   grains.Accounts
	counters   grains.Counters
	groups     grains.CounterGroups
	inventory  grains.Inventory
	payments   grains.Payments
	transfers  grains.Sagas
	orders     grains.Sagas
	instances  grains.Instances
	routeTable grains.Routes
	projectors grains.Projections
}

func newClients(d Deps) clients {
	m := d.Member
	return clients{
		accounts: grains.Accounts{Caller: m}, counters: grains.Counters{Caller: m}, groups: grains.CounterGroups{Caller: m},
		inventory: grains.Inventory{Caller: m}, payments: grains.Payments{Caller: m},
		transfers: grains.Sagas{Caller: m, Kind: messages.TransferSagaKind}, orders: grains.Sagas{Caller: m, Kind: messages.OrderSagaKind},
		instances: grains.Instances{Caller: m, Hosts: m.RegistryHosts()}, routeTable: grains.Routes{Caller: m},
		projectors: grains.Projections{Caller: m},
	}
}

// servedBy is what every grain reply carries.
type servedBy interface{ GetServedBy() string }

// callGrain is the one way handlers call a grain: it runs one typed-client
// call within ctx (whose deadline the client stamps on the request) and
// sets X-Served-By on c (nil outside a request) from the reply, a
// refusal's too.
func callGrain[R servedBy](ctx context.Context, c echo.Context, call func(context.Context) (R, error)) (R, error) {
	reply, err := call(ctx)
	// Proto getters answer "" on a nil reply (the call itself failed).
	if by := reply.GetServedBy(); by != "" && c != nil {
		c.Response().Header().Set(headerServedBy, by)
	}
	return reply, err
}

// call is callGrain within the request's context and the call timeout.
func call[R servedBy](g *Gateway, c echo.Context, fn func(context.Context) (R, error)) (R, error) {
	ctx, cancel := context.WithTimeout(c.Request().Context(), g.cfg.CallTimeout)
	defer cancel()
	return callGrain(ctx, c, fn)
}
