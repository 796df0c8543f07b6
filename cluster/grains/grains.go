// Package grains owns the typed clients of the grain kinds the edge calls:
// one small client per kind, each building its kind's request, stamping
// the deadline from ctx, making the call through a Caller (a
// *cluster.Member) and returning the typed reply or the grain's
// *messages.Failure as the error. It also owns the narrow read-side
// adapters (account journal, read model, registry view) so that nothing
// at the HTTP edge imports actors/....
package grains

import (
	"context"
	"fmt"

	"granary/messages"
)

// Caller makes one grain call; *cluster.Member implements it (see
// cluster.Member.Call for its timeout and re-send contract).
type Caller interface {
	Call(ctx context.Context, kind, identity string, msg any) (any, error)
}

// reply is what every grain reply carries besides its payload.
type reply interface {
	comparable
	GetServedBy() string
	GetFailure() *messages.Failure
}

// deadline is ctx's deadline in unix ms, 0 when it has none: grains fence
// their journal appends with it.
func deadline(ctx context.Context) int64 {
	if dl, ok := ctx.Deadline(); ok {
		return dl.UnixMilli()
	}
	return 0
}

// call sends req to (kind, id) and checks the answer's type. On a grain
// failure the reply is returned too, with the failure as the error, so a
// caller can still tell who served it.
func call[R reply](ctx context.Context, c Caller, kind, id string, req any) (R, error) {
	var zero R
	resp, err := c.Call(ctx, kind, id, req)
	if err != nil {
		return zero, err
	}
	out, ok := resp.(R)
	if !ok || out == zero {
		return zero, fmt.Errorf("%s %s answered %T, want %T", kind, id, resp, zero)
	}
	if f := out.GetFailure(); f != nil {
		return out, f
	}
	return out, nil
}

// mustHave reports a reply that carries neither payload nor failure.
func mustHave(ok bool, kind, id string) error {
	if ok {
		return nil
	}
	return fmt.Errorf("%s %s answered neither a result nor a failure", kind, id)
}
