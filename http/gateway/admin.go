package gateway

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"granary/messages"
)

// requireAdmin admits only principals with the admin role; it runs after
// authenticate.
func requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !principal(c).Admin() {
			return messages.Fail(messages.CodeForbidden, "this endpoint is for admins")
		}
		return next(c)
	}
}

type memberJSON struct {
	ID      string   `json:"id"`
	Address string   `json:"address"`
	Kinds   []string `json:"kinds"`
	Status  string   `json:"status"`
}

// clusterMembers shows the membership as this member sees it: the cluster
// is the service registry, so this is also what the gateway routes by.
func (g *Gateway) clusterMembers(c echo.Context) error {
	members := g.deps.Member.Members()
	out := make([]memberJSON, 0, len(members))
	for _, m := range members {
		kinds := m.Kinds
		if kinds == nil {
			kinds = []string{}
		}
		out = append(out, memberJSON{ID: m.ID, Address: m.Address, Kinds: kinds, Status: m.Status})
	}
	c.Response().Header().Set(headerServedBy, g.deps.Member.ID())
	return c.JSON(http.StatusOK, map[string]any{"members": out, "self": g.deps.Member.ID()})
}
