package projection

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"granary/messages"
)

// Caller reaches grains by identity; a cluster member is one.
type Caller interface {
	Call(ctx context.Context, kind, identity string, msg any) (any, error)
}

// Keeper pings every projection grain every Interval, which activates it
// on whichever member owns its identity: after the member running it dies,
// the next ping starts it elsewhere. Every member runs one; the grain is
// the same wherever the ping comes from.
type Keeper struct {
	Call     Caller
	Interval time.Duration
	Logger   *slog.Logger
}

// warnAfter is how many failed pings in a row make a warning (a member
// leaving makes a few fail normally).
const warnAfter = 5

// Run pings at once and then every Interval, until ctx ends.
func (k Keeper) Run(ctx context.Context) {
	t := time.NewTicker(k.Interval)
	defer t.Stop()
	names := Names()
	failures := make([]int, len(names))
	for {
		for i, name := range names {
			if ctx.Err() != nil {
				return
			}
			failures[i] = k.ping(ctx, name, failures[i])
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ping returns the number of failed pings in a row.
func (k Keeper) ping(ctx context.Context, name string, failures int) int {
	// Twice the interval: a grain busy with a step answers late, and a
	// ping that waits longer would only delay the next one.
	cctx, cancel := context.WithTimeout(ctx, max(2*k.Interval, time.Second))
	defer cancel()
	_, err := Ping(cctx, k.Call, name)
	switch {
	case err == nil && failures >= warnAfter:
		k.Logger.Info("projection reachable again", "projection", name, "after_failures", failures)
		return 0
	case err == nil:
		return 0
	case ctx.Err() != nil:
		return failures
	}
	failures++
	if failures == warnAfter || failures%60 == 0 {
		k.Logger.Warn("projection keep-alive ping failing", "projection", name, "failures", failures, "err", err)
	} else {
		k.Logger.Debug("projection keep-alive ping failed", "projection", name, "failures", failures, "err", err)
	}
	return failures
}

// Ping asks the projection grain name how it is, activating it if needed.
func Ping(ctx context.Context, call Caller, name string) (*messages.ProjectionReply, error) {
	return request(ctx, call, name, &messages.ProjectionRequest{Command: &messages.ProjectionRequest_Ping{Ping: &messages.PingProjection{}}})
}

// Rebuild asks the projection grain name to rebuild its read model (or to
// report the rebuild already running): the reply's RebuildGeneration is
// the generation being built, RebuildStarted whether this call started it.
// The rebuild goes on in the grain; Status shows its progress. An unknown
// name is ErrUnknownProjection (no grain is activated for it); a grain
// failure is a *messages.Failure.
func Rebuild(ctx context.Context, call Caller, name string) (*messages.ProjectionReply, error) {
	return request(ctx, call, name, &messages.ProjectionRequest{Command: &messages.ProjectionRequest_Rebuild{Rebuild: &messages.RebuildProjection{}}})
}

func request(ctx context.Context, call Caller, name string, req *messages.ProjectionRequest) (*messages.ProjectionReply, error) {
	if handlerFor(name) == nil {
		return nil, fmt.Errorf("projection %q: %w", name, ErrUnknownProjection)
	}
	if dl, ok := ctx.Deadline(); ok {
		req.DeadlineUnixMs = dl.UnixMilli()
	}
	res, err := call.Call(ctx, Kind, name, req)
	if err != nil {
		return nil, err
	}
	reply, ok := res.(*messages.ProjectionReply)
	if !ok {
		return nil, fmt.Errorf("projection %s answered %T, want *messages.ProjectionReply", name, res)
	}
	if f := reply.GetFailure(); f != nil {
		return reply, f
	}
	return reply, nil
}
