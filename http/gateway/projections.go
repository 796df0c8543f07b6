package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"granary/cluster/grains"
	"granary/messages"
	"granary/persistence"
)

// projectionRoutes are the read side: summaries from the read model, and
// the admin view and rebuild of the projections that keep it.
func (g *Gateway) projectionRoutes(e *echo.Echo) {
	e.GET("/api/v1/accounts/:id/summary", g.accountSummary, g.authenticate)
	e.GET("/api/v1/projections", g.projections, g.authenticate, requireAdmin)
	e.POST("/api/v1/projections/:name/rebuild", g.rebuildProjection, g.authenticate, requireAdmin, g.mutating())
}

// accountSummary answers from the read model, never from the grain: it is
// the CQRS read path, eventually consistent unless min_version asks to
// wait for a version the caller has seen acknowledged.
func (g *Gateway) accountSummary(c echo.Context) error {
	id, err := accountID(c)
	if err != nil {
		return err
	}
	minVersion, err := queryUint(c, "min_version", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	p := principal(c)
	s, found, err := g.deps.Summaries.Summary(c.Request().Context(), id)
	if err != nil {
		return summaryFailure(err)
	}
	if found {
		if !p.Admin() && s.Owner != p.Subject {
			return messages.Fail(messages.CodeForbidden, "not the owner of this account")
		}
	} else {
		// Not in the read model: the grain tells an unknown account (404)
		// and someone else's (403) from one opened a moment ago that the
		// projection has not reached yet, whose first version is then
		// worth waiting for.
		if err := g.authorize(c, id); err != nil {
			return err
		}
		minVersion = max(minVersion, 1)
	}
	if found && s.Version >= minVersion {
		return c.JSON(http.StatusOK, s)
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), g.cfg.SummaryWait)
	defer cancel()
	s, err = g.deps.Summaries.WaitForVersion(ctx, id, minVersion)
	if errors.Is(err, grains.ErrNotCaughtUp) {
		return messages.Fail(messages.CodeTimeout, "read model of %s is at version %d, not yet %d; retry later", id, s.Version, minVersion)
	}
	if err != nil {
		return summaryFailure(err)
	}
	return c.JSON(http.StatusOK, s)
}

func summaryFailure(err error) error {
	if errors.Is(err, persistence.ErrInvalid) {
		return messages.Fail(messages.CodeValidationFailed, "%v", err)
	}
	return storageFailure(err)
}

func (g *Gateway) projections(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), g.cfg.CallTimeout)
	defer cancel()
	st, err := g.deps.Summaries.Projections(ctx)
	if err != nil {
		g.deps.Logger.Warn("projection status unavailable", "err", err)
		return storageFailure(err)
	}
	return c.JSON(http.StatusOK, map[string]any{"projections": st})
}

// rebuildProjection starts a rebuild in the projection's grain and answers
// at once: the new read model is built beside the live one, which keeps
// serving until it is swapped in; GET /api/v1/projections shows progress.
func (g *Gateway) rebuildProjection(c echo.Context) error {
	name := c.Param("name")
	reply, err := call(g, c, func(ctx context.Context) (*messages.ProjectionReply, error) {
		return g.projectors.Rebuild(ctx, name)
	})
	if errors.Is(err, grains.ErrUnknownProjection) {
		return messages.Fail(messages.CodeNotFound, "no projection %q; known: %v", name, g.projectors.Names())
	}
	if err != nil {
		return err
	}
	g.deps.Logger.Info("projection rebuild requested", "projection", name,
		"generation", reply.GetRebuildGeneration(), "started", reply.GetRebuildStarted(), "by", principal(c).Subject)
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/projections")
	return c.JSON(http.StatusAccepted, map[string]any{
		"name":               name,
		"rebuild_generation": reply.GetRebuildGeneration(),
		"started":            reply.GetRebuildStarted(),
	})
}
