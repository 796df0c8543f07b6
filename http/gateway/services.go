package gateway

import (
	"cmp"
	"net/http"

	"github.com/labstack/echo/v4"

	"granary/messages"
)

type serviceJSON struct {
	Name      string         `json:"name"`
	Strategy  string         `json:"strategy"`
	Breaker   string         `json:"breaker"`
	Instances []instanceJSON `json:"instances"`
}

type instanceJSON struct {
	ID       string `json:"id"`
	MemberID string `json:"member_id"`
	InFlight int64  `json:"in_flight"`
	Served   uint64 `json:"served"`
	// Breaker is a registered instance's own breaker (built-in services
	// have one per service).
	Breaker string `json:"breaker,omitempty"`
}

// services shows each service's strategy, breaker and instances as this
// gateway's clients see them.
func (g *Gateway) services(c echo.Context) error {
	out := []serviceJSON{}
	for _, st := range g.deps.Services.Statuses() {
		s := serviceJSON{Name: st.Name, Strategy: string(st.Strategy), Breaker: st.Breaker, Instances: []instanceJSON{}}
		for _, in := range st.Instances {
			s.Instances = append(s.Instances, instanceJSON{ID: in.ID, MemberID: in.MemberID, InFlight: in.InFlight, Served: in.Served})
		}
		out = append(out, s)
	}
	out = append(out, g.registeredServices()...)
	return c.JSON(http.StatusOK, map[string]any{"services": out})
}

// registeredServices shows the services registered from outside as this
// gateway's proxy sees them: one breaker per instance, the service's
// breaker the best of them (closed while any instance takes traffic).
func (g *Gateway) registeredServices() []serviceJSON {
	breakers := map[string]string{}
	for _, st := range g.proxy.Instances() {
		breakers[st.ID] = st.Breaker
	}
	strategies := map[string]string{}
	for _, r := range g.watcher.Routes() {
		if _, ok := strategies[r.GetService()]; !ok {
			strategies[r.GetService()] = r.GetStrategy()
		}
	}
	var out []serviceJSON
	for _, name := range g.watcher.Services() {
		s := serviceJSON{Name: name, Strategy: cmp.Or(strategies[name], messages.RouteRoundRobin), Breaker: "open", Instances: []instanceJSON{}}
		recs, _ := g.watcher.Instances(name)
		for _, rec := range recs {
			b := cmp.Or(breakers[rec.InstanceID], "closed")
			switch {
			case b == "closed":
				s.Breaker = "closed"
			case b == "half-open" && s.Breaker == "open":
				s.Breaker = "half-open"
			}
			in := instanceJSON{ID: rec.InstanceID, Breaker: b}
			in.InFlight, in.Served = g.usage(rec.InstanceID)
			s.Instances = append(s.Instances, in)
		}
		out = append(out, s)
	}
	return out
}

// userRoutes registers the users and services endpoints.
func (g *Gateway) userRoutes(e *echo.Echo) {
	e.POST("/auth/register", g.register, g.mutating())
	e.POST("/auth/login", g.login)
	e.GET("/api/v1/me", g.me, g.authenticate)
	e.GET("/api/v1/services", g.services, g.authenticate, requireAdmin)
	g.sagaRoutes(e, g.mutating())
}
