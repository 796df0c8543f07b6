package gateway

import (
	"context"
	"fmt"

	"github.com/labstack/echo/v4"

	"granary/cluster"
	"granary/messages"
)

// grainReply is what every grain reply carries besides its payload.
type grainReply interface {
	GetServedBy() string
	GetFailure() *messages.Failure
}

// callGrain sends the request built for the call's deadline to a grain,
// sets X-Served-By from the answer, and turns a grain failure into an error.
func callGrain[R grainReply](g *Gateway, c echo.Context, kind, id string, build func(deadlineUnixMs int64) any) (R, error) {
	var zero R
	ctx, cancel := context.WithTimeout(c.Request().Context(), g.cfg.CallTimeout)
	defer cancel()
	var deadline int64
	if dl, ok := ctx.Deadline(); ok {
		deadline = dl.UnixMilli()
	}
	reply, err := cluster.CallAs[R](ctx, g.deps.Member, kind, id, build(deadline))
	if err != nil {
		return zero, err
	}
	if by := reply.GetServedBy(); by != "" {
		c.Response().Header().Set(headerServedBy, by)
	}
	if f := reply.GetFailure(); f != nil {
		return zero, f
	}
	return reply, nil
}

// mustHave reports a reply that carries neither payload nor failure.
func mustHave(ok bool, kind, id string) error {
	if ok {
		return nil
	}
	return fmt.Errorf("%s %s answered neither a result nor a failure", kind, id)
}
