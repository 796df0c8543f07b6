package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"granary/cluster/grains"
	"granary/messages"
)

const (
	defaultEventsLimit = 100
	maxEventsLimit     = 1000
)

type eventJSON struct {
	Version    uint64         `json:"version"`
	Type       string         `json:"type"`
	Data       map[string]any `json:"data"`
	OccurredAt string         `json:"occurred_at"`
}

// authorizeRead asks the grain for the account, which checks that it exists
// and that the caller may see it, and returns its current state.
func (g *Gateway) authorizeRead(c echo.Context, id string) (*messages.AccountState, error) {
	req, err := g.accountRequest(c)
	if err != nil {
		return nil, err
	}
	reply, err := call(g, c, func(ctx context.Context) (*messages.AccountReply, error) {
		return g.accounts.Get(ctx, id, req)
	})
	if err != nil {
		return nil, err
	}
	return reply.GetAccount(), nil
}

// authorize checks that the account exists and that the caller may see
// it, as authorizeRead does, where its current state is not needed: the
// grain answers from the state it holds (one round trip less).
func (g *Gateway) authorize(c echo.Context, id string) error {
	req, err := g.accountRequest(c)
	if err != nil {
		return err
	}
	_, err = call(g, c, func(ctx context.Context) (*messages.AccountReply, error) {
		return g.accounts.Authorize(ctx, id, req)
	})
	return err
}

func (g *Gateway) accountEvents(c echo.Context) error {
	id, err := accountID(c)
	if err != nil {
		return err
	}
	after, err := queryUint(c, "after_version", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	limit, err := queryUint(c, "limit", defaultEventsLimit, 1, maxEventsLimit)
	if err != nil {
		return err
	}
	if err := g.authorize(c, id); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), g.cfg.CallTimeout)
	defer cancel()
	// One more than the page, to tell whether another page follows.
	stored, err := g.deps.Store.ReadStream(ctx, g.events.AccountStream(id), after, int(limit)+1)
	if err != nil {
		return storageFailure(err)
	}
	var next *uint64
	if len(stored) > int(limit) {
		stored = stored[:limit]
		v := stored[len(stored)-1].Version
		next = &v
	}
	out := make([]eventJSON, 0, len(stored))
	for _, e := range stored {
		ev, err := g.events.DecodeAccountEvent(e)
		if err != nil {
			return g.unreadableEvent(err)
		}
		out = append(out, eventJSON{
			Version: e.Version, Type: e.Type, Data: eventData(ev),
			OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs()).UTC().Format(time.RFC3339Nano),
		})
	}
	return c.JSON(http.StatusOK, map[string]any{"events": out, "next_after_version": next})
}

// accountAtVersion answers "what did the account look like right after
// event n" by folding the journal, without touching the live grain's state.
func (g *Gateway) accountAtVersion(c echo.Context, id, raw string) error {
	n, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		return messages.Fail(messages.CodeValidationFailed, "at_version: must be a positive integer")
	}
	current, err := g.authorizeRead(c, id)
	if err != nil {
		return err
	}
	if n < 1 || n > current.GetVersion() {
		return messages.Fail(messages.CodeValidationFailed, "at_version: must be between 1 and %d", current.GetVersion())
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), g.cfg.CallTimeout)
	defer cancel()
	s, err := g.events.AccountAt(ctx, id, n)
	var f *messages.Failure
	switch {
	case errors.As(err, &f):
		return f
	case errors.Is(err, grains.ErrUnreadableEvent):
		return g.unreadableEvent(err)
	case err != nil:
		return storageFailure(err)
	}
	c.Response().Header().Set("ETag", strconv.Quote(strconv.FormatUint(s.GetVersion(), 10)))
	return c.JSON(http.StatusOK, renderAccount(s))
}

// unreadableEvent reports a stored event this release cannot decode
// (damaged, or written by a newer release) as the storage failure it is:
// a 503 like any other, logged here because the problem handler logs only
// 500s.
func (g *Gateway) unreadableEvent(err error) error {
	g.deps.Logger.Error("unreadable journal event", "err", err)
	return messages.Fail(messages.CodeServiceUnavailable, "journal holds an event this member cannot read")
}

func storageFailure(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return messages.Fail(messages.CodeTimeout, "journal did not answer in time")
	}
	return messages.Fail(messages.CodeServiceUnavailable, "journal unavailable")
}

func queryUint(c echo.Context, name string, def, lo, hi uint64) (uint64, error) {
	raw := c.QueryParam(name)
	if raw == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(raw, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, messages.Fail(messages.CodeValidationFailed, "%s: must be an integer between %d and %d", name, lo, hi)
	}
	return v, nil
}

// eventData renders an event's payload with integer money.
func eventData(ev *messages.AccountEvent) map[string]any {
	switch e := ev.GetEvent().(type) {
	case *messages.AccountEvent_Opened:
		return map[string]any{"account_number": e.Opened.GetAccountNumber(), "owner": e.Opened.GetOwner(),
			"owner_name": e.Opened.GetOwnerName(), "initial_balance": e.Opened.GetInitialBalance()}
	case *messages.AccountEvent_Deposited:
		return moneyData(e.Deposited.GetAmount(), e.Deposited.GetDescription(), e.Deposited.GetTransferId())
	case *messages.AccountEvent_Withdrawn:
		return moneyData(e.Withdrawn.GetAmount(), e.Withdrawn.GetDescription(), e.Withdrawn.GetTransferId())
	case *messages.AccountEvent_Closed:
		return map[string]any{"reason": e.Closed.GetReason()}
	}
	return map[string]any{}
}

func moneyData(amount int64, desc, transfer string) map[string]any {
	d := map[string]any{"amount": amount, "description": desc}
	if transfer != "" {
		d["transfer_id"] = transfer
	}
	return d
}
