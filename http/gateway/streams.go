package gateway

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/labstack/echo/v4"

	"granary/http/auth"
	"granary/http/dashboard"
	"granary/http/stream"
	"granary/messages"
	"granary/persistence"
)

// streams owns the live-stream machinery of one gateway: the journal
// tailer, started with the first subscriber, and a context that Close
// ends, so open streams let a shutdown finish.
type streams struct {
	tailer *stream.Tailer
	opt    stream.Options
	slots  *streamSlots

	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Stream limits.
const (
	maxStreams = 256 // open SSE connections of non-admin subjects per gateway
	// adminStreams is set aside for admins (the global stream, the
	// dashboard), so that users, however many, cannot lock operators out.
	adminStreams   = 32
	tailInterval   = 50 * time.Millisecond
	recentOnGlobal = 50 // events per partition the global stream starts with
)

func (g *Gateway) initStreams() {
	ctx, cancel := context.WithCancel(context.Background())
	opt := stream.DefaultOptions()
	opt.WriteTimeout, opt.Heartbeat = g.cfg.StreamWriteTimeout, g.cfg.StreamHeartbeat
	g.streams = &streams{tailer: stream.NewTailer(g.deps.Store, tailInterval, maxStreams+adminStreams, g.deps.Logger),
		opt: opt, slots: newStreamSlots(g.cfg.StreamsPerSubject, maxStreams, adminStreams), ctx: ctx, cancel: cancel}
}

// streamSlots counts open streams per subject and per pool. Its map holds
// only subjects with a stream open, so it is bounded by the pools' sizes.
type streamSlots struct {
	perSubject, users, admins int

	mu        sync.Mutex
	open      map[string]int
	openUsers int
	openAdmin int
}

func newStreamSlots(perSubject, users, admins int) *streamSlots {
	return &streamSlots{perSubject: perSubject, users: users, admins: admins, open: map[string]int{}}
}

// acquire takes a slot for p's next stream; release gives it back, once.
// A subject at its cap gets 429 (it is holding its share already); a full
// pool is 503 (the gateway is busy, not the caller at fault).
func (s *streamSlots) acquire(p auth.Principal) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[p.Subject] >= s.perSubject {
		return nil, messages.Fail(messages.CodeRateLimited, "this subject already holds %d open streams on this gateway; close one first", s.perSubject)
	}
	pool, size := &s.openUsers, s.users
	if p.Admin() {
		pool, size = &s.openAdmin, s.admins
	}
	if *pool >= size {
		return nil, messages.Fail(messages.CodeServiceUnavailable, "too many live streams on this gateway; retry later")
	}
	s.open[p.Subject]++
	*pool++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.open[p.Subject]--; s.open[p.Subject] <= 0 {
				delete(s.open, p.Subject)
			}
			*pool--
		})
	}, nil
}

// counts are the streams open now in each pool.
func (s *streamSlots) counts() (users, admins int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.openUsers, s.openAdmin
}

// serveStream runs serve as a stream of the caller's: it holds one of the
// caller's slots throughout. HEAD gets the stream's status and headers and
// ends there, as a GET would go on with events.
func (g *Gateway) serveStream(c echo.Context, serve func(ctx context.Context) error) error {
	release, err := g.streams.slots.acquire(principal(c))
	if err != nil {
		return err
	}
	defer release()
	if isHead(c) {
		stream.WriteHeaders(c.Response())
		return nil
	}
	g.streams.start(g)
	ctx, cancel := g.streamContext(c)
	defer cancel()
	return g.streamError(c, serve(ctx))
}

// start runs the tailer and forwards topology changes, once.
func (s *streams) start(g *Gateway) {
	s.once.Do(func() {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.tailer.Run(s.ctx)
		}()
		sub := g.deps.Member.System.EventStream.Subscribe(func(evt any) {
			t, ok := evt.(*pcluster.ClusterTopology)
			if !ok {
				return
			}
			top := stream.Topology{Members: ids(t.GetMembers()), Joined: ids(t.GetJoined()), Left: ids(t.GetLeft())}
			s.tailer.PublishTopology(top)
		})
		context.AfterFunc(s.ctx, func() { g.deps.Member.System.EventStream.Unsubscribe(sub) })
	})
}

func ids(ms []*pcluster.Member) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.GetId())
	}
	return out
}

// Close ends every open stream and the tailer, and stops the pipeline of
// the idempotency store the gateway built (requests still draining then go
// to Redis a round trip each). Shutdown calls it; tests serving Handler()
// directly call it themselves.
func (g *Gateway) Close() {
	g.closeStreams()
	g.closeIdempotency()
	g.stopRegistry()
}

func (g *Gateway) closeStreams() {
	g.streams.cancel()
	g.streams.wg.Wait()
}

func (g *Gateway) closeIdempotency() {
	if g.idem != nil {
		g.idem.Close()
	}
	if g.ownIdem != nil {
		_ = g.ownIdem.Close() // never fails
	}
}

// streamContext ends when the client goes or the gateway closes.
func (g *Gateway) streamContext(c echo.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(c.Request().Context())
	stop := context.AfterFunc(g.streams.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

func lastEventID(c echo.Context) string {
	if id := c.Request().Header.Get("Last-Event-ID"); id != "" {
		return id
	}
	return c.QueryParam("last_event_id")
}

// accountStream is GET /api/v1/accounts/{id}/events/stream: the account's
// events after Last-Event-ID (its version), then live.
func (g *Gateway) accountStream(c echo.Context) error {
	id, err := accountID(c)
	if err != nil {
		return err
	}
	var after uint64
	if raw := lastEventID(c); raw != "" {
		if after, err = strconv.ParseUint(raw, 10, 64); err != nil {
			return messages.Fail(messages.CodeValidationFailed, "Last-Event-ID: must be an event version")
		}
	}
	if err := g.authorize(c, id); err != nil {
		return err
	}
	return g.serveStream(c, func(ctx context.Context) error {
		return stream.ServeStream(ctx, c.Response(), g.deps.Store, g.streams.tailer, g.events.AccountStream(id), after, g.renderAccountEvent, g.streams.opt)
	})
}

// globalStream is GET /api/v1/stream (admin): every journal event by its
// position, and topology changes.
func (g *Gateway) globalStream(c echo.Context) error {
	var from map[int]uint64
	if raw := lastEventID(c); raw != "" {
		p, pos, err := stream.ParseGlobalID(raw, g.deps.Store.Partitions())
		if err != nil {
			return messages.Fail(messages.CodeValidationFailed, "%v", err)
		}
		from = map[int]uint64{p: pos}
	}
	return g.serveStream(c, func(ctx context.Context) error {
		return stream.ServeAll(ctx, c.Response(), g.deps.Store, g.streams.tailer, from, recentOnGlobal, g.renderGlobalEvent, g.streams.opt)
	})
}

// streamError maps an error from before the stream started to a problem;
// once the stream has begun it can only end.
func (g *Gateway) streamError(c echo.Context, err error) error {
	if err == nil {
		return nil
	}
	if _, busy := err.(stream.ErrTooManySubscribers); busy {
		return messages.Fail(messages.CodeServiceUnavailable, "too many live streams on this gateway; retry later")
	}
	if c.Response().Committed {
		g.deps.Logger.Debug("stream ended", "err", err)
		return nil
	}
	return storageFailure(err)
}

func (g *Gateway) renderAccountEvent(e persistence.Event) (string, []byte, error) {
	ev, err := g.events.DecodeAccountEvent(e)
	if err != nil {
		return "", nil, err
	}
	data, err := json.Marshal(eventJSON{Version: e.Version, Type: e.Type, Data: eventData(ev),
		OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs()).UTC().Format(time.RFC3339Nano)})
	return e.Type, data, err
}

// renderGlobalEvent shows any journal event; account events with their
// data, others (sagas, counters …) by stream, type and version.
func (g *Gateway) renderGlobalEvent(e persistence.Event) (string, []byte, error) {
	out := map[string]any{"stream": e.Stream, "version": e.Version, "partition": e.Partition, "position": e.Position,
		"type": e.Type, "occurred_at": e.OccurredAt.UTC().Format(time.RFC3339Nano)}
	if strings.HasPrefix(e.Stream, "account-") {
		if ev, err := g.events.DecodeAccountEvent(e); err == nil {
			out["data"] = eventData(ev)
		}
	}
	data, err := json.Marshal(out)
	return e.Type, data, err
}

// streamRoutes registers the streams and the dashboard.
func (g *Gateway) streamRoutes(e *echo.Echo) {
	e.GET("/api/v1/accounts/:id/events/stream", g.accountStream, g.authenticate)
	e.GET("/api/v1/stream", g.globalStream, g.authenticate, requireAdmin)
	page := echo.WrapHandler(dashboard.Handler())
	e.GET("/", page)
	e.GET("/assets/*", func(c echo.Context) error {
		if !dashboard.Has(c.Param("*")) {
			return messages.Fail(messages.CodeRouteNotFound, "no dashboard asset %q", c.Param("*"))
		}
		return page(c)
	})
}
