package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"

	"granary/messages"
)

// Call sends msg to the grain (kind, identity) and returns its answer.
//
// It waits until ctx's deadline (or the member's RequestTimeout when ctx
// has none). Proto.Actor re-sends the request after a dead letter (the
// owner died or moved), so grains must drop duplicate command ids. Errors are
// *messages.Failure: CodeTimeout when no answer came in time (the request
// may still be applied), CodeServiceUnavailable when no member could host
// the grain. Cancelling ctx early does not interrupt a request in flight.
func (m *Member) Call(ctx context.Context, kind, identity string, msg any) (any, error) {
	timeout := m.cfg.RequestTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if timeout <= 0 {
		return nil, messages.Fail(messages.CodeTimeout, "no time left to call %s/%s", kind, identity)
	}
	// Pass the root context and timeout explicitly: the package-level
	// defaults are shared by every cluster in the process.
	resp, err := m.Cluster.Request(identity, kind, msg,
		pcluster.WithTimeout(timeout), pcluster.WithContext(m.System.Root))
	if err != nil {
		if isTimeout(err) {
			return nil, messages.Fail(messages.CodeTimeout, "%s %s did not answer within %v", kind, identity, timeout.Round(time.Millisecond))
		}
		return nil, messages.Fail(messages.CodeServiceUnavailable, "no member could serve %s %s: %v", kind, identity, err)
	}
	if resp == nil {
		return nil, messages.Fail(messages.CodeServiceUnavailable, "%s %s answered nothing", kind, identity)
	}
	return resp, nil
}

func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, actor.ErrTimeout) || errors.Is(err, remote.ErrTimeout)
}

// CallAs is Call with the answer's type checked.
func CallAs[T any](ctx context.Context, m *Member, kind, identity string, msg any) (T, error) {
	var zero T
	resp, err := m.Call(ctx, kind, identity, msg)
	if err != nil {
		return zero, err
	}
	out, ok := resp.(T)
	if !ok {
		return zero, fmt.Errorf("%s %s answered %T, want %T", kind, identity, resp, zero)
	}
	return out, nil
}
