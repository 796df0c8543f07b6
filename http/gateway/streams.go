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

	"granary/actors/account"
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

	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Stream limits.
const (
	maxStreams     = 256 // open SSE connections per gateway
	tailInterval   = 50 * time.Millisecond
	recentOnGlobal = 50 // events per partition the global stream starts with
)

func (g *Gateway) initStreams() {
	ctx, cancel := context.WithCancel(context.Background())
	g.streams = &streams{tailer: stream.NewTailer(g.deps.Store, tailInterval, maxStreams, g.deps.Logger),
		opt: stream.DefaultOptions(), ctx: ctx, cancel: cancel}
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

// Close ends every open stream and the tailer. Shutdown calls it; tests
// serving Handler() directly call it themselves.
func (g *Gateway) Close() {
	g.streams.cancel()
	g.streams.wg.Wait()
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
	if _, err := g.authorizeRead(c, id); err != nil {
		return err
	}
	g.streams.start(g)
	ctx, cancel := g.streamContext(c)
	defer cancel()
	err = stream.ServeStream(ctx, c.Response(), g.deps.Store, g.streams.tailer, account.StreamFor(id), after, renderAccountEvent, g.streams.opt)
	return g.streamError(c, err)
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
	g.streams.start(g)
	ctx, cancel := g.streamContext(c)
	defer cancel()
	err := stream.ServeAll(ctx, c.Response(), g.deps.Store, g.streams.tailer, from, recentOnGlobal, renderGlobalEvent, g.streams.opt)
	return g.streamError(c, err)
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

func renderAccountEvent(e persistence.Event) (string, []byte, error) {
	ev, err := account.DecodeEvent(e)
	if err != nil {
		return "", nil, err
	}
	data, err := json.Marshal(eventJSON{Version: e.Version, Type: e.Type, Data: eventData(ev),
		OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs()).UTC().Format(time.RFC3339Nano)})
	return e.Type, data, err
}

// renderGlobalEvent shows any journal event; account events with their
// data, others (sagas, counters …) by stream, type and version.
func renderGlobalEvent(e persistence.Event) (string, []byte, error) {
	out := map[string]any{"stream": e.Stream, "version": e.Version, "partition": e.Partition, "position": e.Position,
		"type": e.Type, "occurred_at": e.OccurredAt.UTC().Format(time.RFC3339Nano)}
	if strings.HasPrefix(e.Stream, "account-") {
		if ev, err := account.DecodeEvent(e); err == nil {
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
