package account

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"granary/actors/es"
	"granary/messages"
	"granary/persistence"
)

// Kind is the cluster kind name of account grains.
const Kind = "account"

// GrainConfig is what an account grain needs from its member.
type GrainConfig struct {
	Store persistence.Store
	// SnapshotEvery: a snapshot is saved each time the version crosses a
	// multiple of it, so activation replays at most this many events.
	SnapshotEvery uint64
	// IdleTimeout passivates a grain that received nothing for this long.
	IdleTimeout time.Duration
	// StoreTimeout bounds each journal or snapshot call.
	StoreTimeout time.Duration
	// RecentCommands is how many command ids a grain remembers to drop
	// re-sent commands.
	RecentCommands int
	MemberID       string
	Logger         *slog.Logger
	Now            func() time.Time
}

// DefaultGrainConfig returns the defaults; Store, MemberID and Logger are
// the caller's to set.
func DefaultGrainConfig() GrainConfig {
	return GrainConfig{
		SnapshotEvery:  100,
		IdleTimeout:    5 * time.Minute,
		StoreTimeout:   3 * time.Second,
		RecentCommands: 1000,
		Now:            time.Now,
	}
}

// Validate names the first unusable field.
func (c GrainConfig) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("account grain: Store is nil")
	case c.SnapshotEvery == 0:
		return errors.New("account grain: SnapshotEvery must be > 0")
	case c.IdleTimeout <= 0:
		return fmt.Errorf("account grain: IdleTimeout %v must be > 0", c.IdleTimeout)
	case c.StoreTimeout <= 0:
		return fmt.Errorf("account grain: StoreTimeout %v must be > 0", c.StoreTimeout)
	case c.RecentCommands <= 0:
		return fmt.Errorf("account grain: RecentCommands %d must be > 0", c.RecentCommands)
	case c.Logger == nil || c.Now == nil:
		return errors.New("account grain: Logger and Now are required")
	}
	return nil
}

// Props builds the actor props of the account kind.
func Props(cfg GrainConfig) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &Grain{cfg: cfg} })
}

// Grain hosts one account. Its state is only ever what the journal holds
// (see es.Host): it applies events after the journal accepted them, and
// after any append whose outcome is unknown it reloads.
type Grain struct {
	cfg  GrainConfig
	id   string
	log  *slog.Logger
	host *es.Host[State, *messages.AccountEvent]
}

// Receive is the actor's entry point.
func (g *Grain) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
	case *cluster.ClusterInit:
		g.init(msg.Identity.GetIdentity())
		ctx.SetReceiveTimeout(g.cfg.IdleTimeout)
	case *actor.ReceiveTimeout:
		ctx.Poison(ctx.Self())
	case *actor.Stopping:
		if g.host != nil {
			g.log.Debug("account grain passivating", "version", g.host.State().Version)
		}
	case *messages.AccountRequest:
		ctx.Respond(g.handle(msg))
	}
}

func (g *Grain) init(id string) {
	g.id = id
	g.log = g.cfg.Logger.With("account", id, "member", g.cfg.MemberID)
	g.host = es.NewHost(&codec, es.Config{
		Store: g.cfg.Store, SnapshotEvery: g.cfg.SnapshotEvery, RecentCommands: g.cfg.RecentCommands, Logger: g.log,
	}, id)
}

// handle answers every request, panics included: a panicking request would
// otherwise get no reply and its caller would wait for the timeout.
func (g *Grain) handle(req *messages.AccountRequest) (reply *messages.AccountReply) {
	defer func() {
		if r := recover(); r != nil {
			g.log.Error("account grain panicked; state will reload", "panic", r, "stack", string(debug.Stack()))
			g.host.Invalidate()
			reply = g.fail(messages.Fail(messages.CodeServiceUnavailable, "account grain failed; retry"))
		}
	}()
	if g.host == nil {
		// Sent to the actor directly rather than through the cluster.
		return &messages.AccountReply{Failure: messages.Fail(messages.CodeServiceUnavailable, "account grain has no identity"), ServedBy: g.cfg.MemberID}
	}
	now := g.cfg.Now()
	if d := req.GetDeadlineUnixMs(); d > 0 && now.UnixMilli() >= d {
		return g.fail(messages.Fail(messages.CodeTimeout, "request expired before the account could handle it"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
	defer cancel()
	out, err := g.host.Execute(ctx, req.GetCommandId(), func(s State) ([]*messages.AccountEvent, error) {
		return Decide(s, req, now)
	})
	if err != nil {
		return g.fail(messages.AsFailure(err, messages.CodeValidationFailed))
	}
	return &messages.AccountReply{Account: out.State.ToProto(), ServedBy: g.cfg.MemberID, Duplicate: out.Duplicate}
}

func (g *Grain) fail(f *messages.Failure) *messages.AccountReply {
	return &messages.AccountReply{Failure: f, ServedBy: g.cfg.MemberID}
}
