package gateway

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"granary/cluster/grains"
	"granary/persistence"
)

// Paging of GET /api/v1/accounts (the contract's "Listing").
const (
	defaultAccountsLimit = 100
	maxAccountsLimit     = 1000
)

// accountListRoutes lists accounts from the read model.
func (g *Gateway) accountListRoutes(e *echo.Echo) {
	e.GET("/api/v1/accounts", g.listAccounts, g.authenticate)
}

// accountPage is the contract's answer to a listing; NextCursor is null on
// the last page.
type accountPage struct {
	Accounts   []grains.Summary `json:"accounts"`
	NextCursor *string          `json:"next_cursor"`
}

// listAccounts answers from the read model, so it may lag the grains by
// the projection's lag. A non-admin lists only their own accounts,
// whatever owner says; an admin lists owner's, or everyone's without it.
func (g *Gateway) listAccounts(c echo.Context) error {
	limit, err := queryUint(c, "limit", defaultAccountsLimit, 1, maxAccountsLimit)
	if err != nil {
		return err
	}
	p := principal(c)
	owner := c.QueryParam("owner")
	if !p.Admin() {
		owner = p.Subject
	}
	cursor, err := decodeAccountCursor(c.QueryParam("cursor"), owner)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), g.cfg.CallTimeout)
	defer cancel()
	page := accountPage{Accounts: []grains.Summary{}}
	if number := c.QueryParam("account_number"); number != "" {
		s, found, err := g.deps.Summaries.Summary(ctx, g.accounts.IDFor(number))
		if err != nil {
			return summaryFailure(err)
		}
		if found && (owner == "" || s.Owner == owner) {
			page.Accounts = append(page.Accounts, s)
		}
		return c.JSON(http.StatusOK, page)
	}
	sums, next, err := g.deps.Summaries.ListAccounts(ctx, owner, cursor, int(limit))
	if err != nil {
		return summaryFailure(err)
	}
	page.Accounts = append(page.Accounts, sums...)
	if next != nil {
		s := encodeAccountCursor(*next, owner)
		page.NextCursor = &s
	}
	return c.JSON(http.StatusOK, page)
}

// accountCursor is the opaque cursor's content. F ties it to the owner
// filter it was made for: resuming a listing under another filter would
// skip or repeat accounts, so it is refused.
type accountCursor struct {
	P int    `json:"p"`
	K string `json:"k"`
	F string `json:"f"`
}

func encodeAccountCursor(at grains.AccountCursor, owner string) string {
	return encodeCursor(accountCursor{P: at.Partition, K: at.Key, F: filterHash("owner:" + owner)})
}

// decodeAccountCursor reads a cursor made for owner's filter; "" is the
// start. Anything else is 400 validation_failed.
func decodeAccountCursor(raw, owner string) (grains.AccountCursor, error) {
	if raw == "" {
		return grains.AccountCursor{}, nil
	}
	var cur accountCursor
	if err := decodeCursor(raw, &cur); err != nil {
		return grains.AccountCursor{}, err
	}
	if cur.F != filterHash("owner:"+owner) || cur.P < 0 || persistence.CheckDocKey(cur.K) != nil {
		return grains.AccountCursor{}, errBadCursor()
	}
	return grains.AccountCursor{Partition: cur.P, Key: cur.K}, nil
}
