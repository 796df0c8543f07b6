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
	"google.golang.org/protobuf/proto"

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

// maxConflictRetries bounds how often one command re-decides after another
// activation wrote first.
const maxConflictRetries = 3

// Grain hosts one account. Its state is only ever what the journal holds:
// it applies events after the journal accepted them, and after any append
// whose outcome is unknown it forgets its state and reloads.
type Grain struct {
	cfg    GrainConfig
	id     string
	log    *slog.Logger
	state  State
	recent *recentCommands
	loaded bool
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
		g.log.Debug("account grain passivating", "version", g.state.Version)
	case *messages.AccountRequest:
		ctx.Respond(g.handle(msg))
	}
}

func (g *Grain) init(id string) {
	g.id = id
	g.log = g.cfg.Logger.With("account", id, "member", g.cfg.MemberID)
	g.state = State{}
	g.recent = newRecentCommands(g.cfg.RecentCommands)
	g.loaded = false
}

// handle answers every request, panics included: a panicking request would
// otherwise get no reply and its caller would wait for the timeout.
func (g *Grain) handle(req *messages.AccountRequest) (reply *messages.AccountReply) {
	defer func() {
		if r := recover(); r != nil {
			g.log.Error("account grain panicked; state will reload", "panic", r, "stack", string(debug.Stack()))
			g.loaded = false
			reply = g.fail(messages.Fail(messages.CodeServiceUnavailable, "account grain failed; retry"))
		}
	}()
	if g.id == "" {
		// Sent to the actor directly rather than through the cluster.
		return g.fail(messages.Fail(messages.CodeServiceUnavailable, "account grain has no identity"))
	}
	now := g.cfg.Now()
	if d := req.GetDeadlineUnixMs(); d > 0 && now.UnixMilli() >= d {
		return g.fail(messages.Fail(messages.CodeTimeout, "request expired before the account could handle it"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
	defer cancel()

	if !g.loaded {
		if err := g.load(ctx); err != nil {
			g.log.Error("account activation failed", "err", err)
			return g.fail(messages.Fail(messages.CodeServiceUnavailable, "account storage unavailable"))
		}
	}
	for attempt := 0; ; attempt++ {
		if g.recent.Has(req.GetCommandId()) {
			return &messages.AccountReply{Account: g.state.ToProto(), ServedBy: g.cfg.MemberID, Duplicate: true}
		}
		events, err := Decide(g.state, req, now)
		if err != nil || len(events) == 0 {
			// A refusal or a read must not rest on a stale view: another
			// activation (membership change) may have written since we
			// loaded. One LLEN tells; catch up and decide again if so.
			behind, ferr := g.freshen(ctx)
			if ferr != nil {
				g.loaded = false
				g.log.Error("checking the journal's version failed", "err", ferr)
				return g.fail(messages.Fail(messages.CodeServiceUnavailable, "account storage unavailable"))
			}
			if behind && attempt < maxConflictRetries {
				continue
			}
			if err != nil {
				return g.fail(messages.AsFailure(err, messages.CodeValidationFailed))
			}
			return g.ok()
		}
		err = g.append(ctx, events)
		if err == nil {
			return g.ok()
		}
		if !errors.Is(err, persistence.ErrConflict) {
			// The append may or may not be stored: forget what we hold.
			g.loaded = false
			g.log.Error("account append failed", "err", err)
			return g.fail(messages.Fail(messages.CodeServiceUnavailable, "account storage unavailable; the change may or may not be applied"))
		}
		if attempt >= maxConflictRetries {
			return g.fail(messages.Fail(messages.CodeServiceUnavailable, "account is contended by another activation; retry"))
		}
		// Another activation of this account wrote first (membership
		// change): catch up with its events and decide again.
		g.log.Warn("append conflict; catching up with the journal", "err", err)
		if err := g.replay(ctx); err != nil {
			g.loaded = false
			g.log.Error("catch-up after conflict failed", "err", err)
			return g.fail(messages.Fail(messages.CodeServiceUnavailable, "account storage unavailable"))
		}
	}
}

// freshen catches up when the journal holds events this activation has not
// seen, and reports whether it had to.
func (g *Grain) freshen(ctx context.Context) (bool, error) {
	stream := StreamFor(g.id)
	v, err := g.cfg.Store.StreamVersion(ctx, stream)
	if err != nil {
		return false, fmt.Errorf("version of %s: %w", stream, err)
	}
	switch {
	case v == g.state.Version:
		return false, nil
	case v < g.state.Version:
		return false, fmt.Errorf("%s: journal at version %d behind grain at %d: %w", stream, v, g.state.Version, persistence.ErrCorrupt)
	}
	g.log.Warn("journal is ahead of this activation; catching up", "grain_version", g.state.Version, "journal_version", v)
	return true, g.replay(ctx)
}

func (g *Grain) ok() *messages.AccountReply {
	return &messages.AccountReply{Account: g.state.ToProto(), ServedBy: g.cfg.MemberID}
}

func (g *Grain) fail(f *messages.Failure) *messages.AccountReply {
	return &messages.AccountReply{Failure: f, ServedBy: g.cfg.MemberID}
}

// append stores events at the grain's version and applies them once stored.
func (g *Grain) append(ctx context.Context, events []*messages.AccountEvent) error {
	stream := StreamFor(g.id)
	batch := make([]persistence.EventData, len(events))
	for i, ev := range events {
		data, err := proto.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode %s event: %w", stream, err)
		}
		batch[i] = persistence.EventData{Type: TypeOf(ev), Data: data, OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs())}
	}
	before := g.state.Version
	if _, err := g.cfg.Store.Append(ctx, stream, before, batch); err != nil {
		return fmt.Errorf("append %s@%d: %w", stream, before, err)
	}
	for _, ev := range events {
		g.state = Apply(g.state, g.id, ev)
		g.recent.Add(ev.GetCommandId())
	}
	if before/g.cfg.SnapshotEvery != g.state.Version/g.cfg.SnapshotEvery {
		g.snapshot(ctx)
	}
	return nil
}

// snapshot is best effort: a missing snapshot only costs replay time.
func (g *Grain) snapshot(ctx context.Context) {
	data, err := proto.Marshal(&messages.AccountSnapshot{State: g.state.ToProto(), RecentCommandIds: g.recent.IDs()})
	if err == nil {
		err = g.cfg.Store.SaveSnapshot(ctx, StreamFor(g.id), persistence.Snapshot{Version: g.state.Version, Data: data})
	}
	if err != nil {
		g.log.Warn("snapshot not saved", "version", g.state.Version, "err", err)
	}
}

// load rebuilds the state from the latest snapshot plus the journal's tail.
func (g *Grain) load(ctx context.Context) error {
	g.state = State{}
	g.recent = newRecentCommands(g.cfg.RecentCommands)
	stream := StreamFor(g.id)
	snap, ok, err := g.cfg.Store.LoadSnapshot(ctx, stream)
	if err != nil {
		return fmt.Errorf("load snapshot %s: %w", stream, err)
	}
	if ok {
		var s messages.AccountSnapshot
		if err := proto.Unmarshal(snap.Data, &s); err != nil || s.GetState().GetVersion() != snap.Version {
			// A snapshot is only a shortcut: replay everything instead.
			g.log.Warn("ignoring unreadable snapshot", "version", snap.Version, "err", err)
		} else {
			g.state = FromProto(s.GetState())
			for _, id := range s.GetRecentCommandIds() {
				g.recent.Add(id)
			}
		}
	}
	from := g.state.Version
	if err := g.replay(ctx); err != nil {
		return err
	}
	g.loaded = true
	// A long replay means no snapshot was near (written before snapshots
	// existed, or a save failed): save one now so the next activation is
	// short.
	if g.state.Version-from > g.cfg.SnapshotEvery {
		g.snapshot(ctx)
	}
	g.log.Debug("account activated", "version", g.state.Version, "replayed", g.state.Version-from)
	return nil
}

// replayBatch bounds one journal read while catching up.
const replayBatch = 1000

// replay applies every stored event after the grain's version.
func (g *Grain) replay(ctx context.Context) error {
	stream := StreamFor(g.id)
	for {
		events, err := g.cfg.Store.ReadStream(ctx, stream, g.state.Version, replayBatch)
		if err != nil {
			return fmt.Errorf("replay %s after %d: %w", stream, g.state.Version, err)
		}
		for _, e := range events {
			ev, err := DecodeEvent(e)
			if err != nil {
				return err
			}
			if e.Version != g.state.Version+1 {
				return fmt.Errorf("replay %s: event version %d after %d: %w", stream, e.Version, g.state.Version, persistence.ErrCorrupt)
			}
			g.state = Apply(g.state, g.id, ev)
			g.recent.Add(ev.GetCommandId())
		}
		if len(events) < replayBatch {
			return nil
		}
	}
}

// DecodeEvent reads an account event from its journal form.
func DecodeEvent(e persistence.Event) (*messages.AccountEvent, error) {
	var ev messages.AccountEvent
	if err := proto.Unmarshal(e.Data, &ev); err != nil {
		return nil, fmt.Errorf("decode %s@%d: %v: %w", e.Stream, e.Version, err, persistence.ErrCorrupt)
	}
	if TypeOf(&ev) != e.Type {
		return nil, fmt.Errorf("decode %s@%d: type %q does not match payload %q: %w", e.Stream, e.Version, e.Type, TypeOf(&ev), persistence.ErrCorrupt)
	}
	return &ev, nil
}
