package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"granary/internal/tracing"
	"granary/messages"
)

// Call sends msg to the grain (kind, identity) and returns its answer.
//
// It waits until ctx's deadline (or the member's RequestTimeout when ctx
// has none). An attempt that gets no answer within AttemptTimeout is sent
// again, to whichever member owns the identity by then: when the owner
// died, its requests would otherwise wait out the whole deadline, and
// Proto.Actor re-sends after dead letters anyway. Every grain request
// therefore carries a command id and grains drop duplicates; reads are
// naturally idempotent.
//
// Errors are *messages.Failure: CodeTimeout when no answer came in time
// (the request may still be applied), CodeServiceUnavailable when no member
// could host the grain. Cancelling ctx early does not interrupt an attempt
// in flight.
func (m *Member) Call(ctx context.Context, kind, identity string, msg any) (resp any, err error) {
	ctx, span := tracing.Start(ctx, "grain.call", clientSpan...)
	if span.IsRecording() {
		span.SetName("grain.call " + kind)
		span.SetAttributes(attribute.String("granary.grain.kind", kind), attribute.String("granary.grain.identity", identity))
		defer func() {
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}()
	}
	stampTrace(ctx, msg)
	start := time.Now()
	attempts := 0
	if m.metrics != nil {
		defer func() { m.metrics.observeCall(kind, time.Since(start), attempts, err) }()
	}
	return m.call(ctx, kind, identity, msg, start, &attempts)
}

func (m *Member) call(ctx context.Context, kind, identity string, msg any, start time.Time, attempts *int) (any, error) {
	deadline := start.Add(m.cfg.RequestTimeout)
	if dl, ok := ctx.Deadline(); ok {
		deadline = dl
	}
	var lastErr error
	for attempt := 1; ; attempt++ {
		remaining := time.Until(deadline)
		if ctx.Err() != nil {
			remaining = 0 // cancelled: no further attempt
		}
		if remaining <= 0 {
			if lastErr == nil {
				lastErr = messages.Fail(messages.CodeTimeout, "no time left to call %s/%s", kind, identity)
			}
			return nil, lastErr
		}
		*attempts = attempt
		timeout := min(remaining, m.cfg.AttemptTimeout)
		resp, err := m.request(kind, identity, msg, timeout)
		switch {
		case err == nil && resp != nil:
			return resp, nil
		case err == nil:
			lastErr = messages.Fail(messages.CodeServiceUnavailable, "%s %s answered nothing", kind, identity)
		case isTimeout(err):
			lastErr = messages.Fail(messages.CodeTimeout, "%s %s did not answer within %v", kind, identity, time.Since(start).Round(time.Millisecond))
		default:
			lastErr = messages.Fail(messages.CodeServiceUnavailable, "no member could serve %s %s: %v", kind, identity, err)
		}
		if attempt > 1 || err != nil {
			m.log.Debug("grain call attempt failed; re-sending", "kind", kind, "identity", identity, "attempt", attempt, "err", err)
		}
		// Give membership a moment to settle before asking again.
		if pause := min(time.Until(deadline), 50*time.Millisecond); pause > 0 && !isTimeout(err) {
			time.Sleep(pause)
		}
	}
}

// request is one attempt: straight to the activation when this member
// hosts or owns the identity, through Proto.Actor's cluster otherwise (its
// PID cache, its re-sends after a dead letter). A local activation that
// answers dead letter has just stopped: the next try activates it anew.
func (m *Member) request(kind, identity string, msg any, timeout time.Duration) (any, error) {
	for try := range 3 {
		pid, here := m.placement.local(kind, identity, try > 0, timeout)
		if !here {
			break
		}
		if pid == nil {
			return nil, fmt.Errorf("activate %s/%s here: %w", kind, identity, actor.ErrTimeout)
		}
		resp, err := m.System.Root.RequestFuture(pid, msg, timeout).Result()
		if !errors.Is(err, actor.ErrDeadLetter) {
			return resp, err
		}
	}
	// Pass the root context and timeout explicitly: the package-level
	// defaults are shared by every cluster in the process.
	return m.Cluster.Request(identity, kind, msg, pcluster.WithTimeout(timeout), pcluster.WithContext(m.System.Root))
}

// clientSpan is built once: a variadic option per call would allocate.
var clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

// stampTrace writes ctx's span context into the request messages that
// carry one, so the grain continues the caller's trace on whichever member
// hosts it (Proto.Actor's cluster request carries no headers).
func stampTrace(ctx context.Context, msg any) {
	tp := tracing.Traceparent(ctx)
	if tp == "" {
		return
	}
	switch r := msg.(type) {
	case *messages.AccountRequest:
		r.Traceparent = tp
	case *messages.SagaRequest:
		r.Traceparent = tp
	case *messages.InventoryRequest:
		r.Traceparent = tp
	case *messages.PaymentRequest:
		r.Traceparent = tp
	}
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
