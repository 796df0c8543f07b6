package gateway

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"granary/cluster"
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
	return c.JSON(http.StatusOK, map[string]any{"services": out})
}

// callAs is cluster.CallAs with the gateway's member.
func callAs[R any](ctx context.Context, deps Deps, kind, id string, msg any) (R, error) {
	return cluster.CallAs[R](ctx, deps.Member, kind, id, msg)
}

// userRoutes registers the users and services endpoints.
func (g *Gateway) userRoutes(e *echo.Echo) {
	e.POST("/auth/register", g.register, g.mutating())
	e.POST("/auth/login", g.login)
	e.GET("/api/v1/me", g.me, g.authenticate)
	e.GET("/api/v1/services", g.services, g.authenticate, requireAdmin)
	g.sagaRoutes(e, g.mutating())
}
