package gateway

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"granary/cluster"
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
// Listed members whose link broke, or whose gossiped heartbeat is late by
// half the expiry, are "suspected"; members that left follow as "dead"
// (GET /api/v1/dashboard/metrics says when they left).
func (g *Gateway) clusterMembers(c echo.Context) error {
	m := g.deps.Member
	members := m.Members()
	beats := m.Heartbeats()
	late := m.Cluster.Config.HeartbeatExpiration / 2
	now := time.Now()
	out := make([]memberJSON, 0, len(members))
	for _, mi := range members {
		j := memberJSON{ID: mi.ID, Address: mi.Address, Kinds: nonNil(mi.Kinds), Status: mi.Status}
		if hb, ok := beats[mi.ID]; ok && mi.ID != m.ID() && late > 0 && now.Sub(hb.At) > late {
			j.Status = cluster.StatusSuspected
		}
		out = append(out, j)
	}
	for _, d := range m.Departed() {
		out = append(out, memberJSON{ID: d.ID, Address: d.Address, Kinds: nonNil(d.Kinds), Status: d.Status})
	}
	c.Response().Header().Set(headerServedBy, m.ID())
	return c.JSON(http.StatusOK, map[string]any{"members": out, "self": m.ID()})
}

func nonNil(kinds []string) []string {
	if kinds == nil {
		return []string{}
	}
	return kinds
}
