package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"granary/messages"
)

const (
	headerServedBy       = "X-Served-By"
	headerIdempotencyKey = "Idempotency-Key"
	maxIdempotencyKeyLen = 255
)

// accountJSON is the contract's Account.
type accountJSON struct {
	ID            string `json:"id"`
	AccountNumber string `json:"account_number"`
	Owner         string `json:"owner"`
	OwnerName     string `json:"owner_name"`
	Balance       int64  `json:"balance"`
	Version       uint64 `json:"version"`
	Closed        bool   `json:"closed"`
}

func renderAccount(s *messages.AccountState) accountJSON {
	return accountJSON{
		ID: s.GetId(), AccountNumber: s.GetAccountNumber(), Owner: s.GetOwner(),
		OwnerName: s.GetOwnerName(), Balance: s.GetBalance(), Version: s.GetVersion(), Closed: s.GetClosed(),
	}
}

// Account ids are derived (grains.Accounts.IDFor); anything else names no account
// and never reaches the cluster, so clients cannot spawn arbitrary grains.
var accountIDPattern = regexp.MustCompile(`^acc_[0-9a-f]{24}$`)

func accountID(c echo.Context) (string, error) {
	id := c.Param("id")
	if !accountIDPattern.MatchString(id) {
		return "", messages.Fail(messages.CodeNotFound, "account %q not found", id)
	}
	return id, nil
}

type openAccountBody struct {
	AccountNumber  *string `json:"account_number"`
	OwnerName      *string `json:"owner_name"`
	InitialBalance *int64  `json:"initial_balance"`
}

func (g *Gateway) openAccount(c echo.Context) error {
	var b openAccountBody
	if err := g.bindJSON(c, &b); err != nil {
		return err
	}
	if b.AccountNumber == nil {
		return messages.Fail(messages.CodeValidationFailed, "account_number: required")
	}
	if b.OwnerName == nil {
		return messages.Fail(messages.CodeValidationFailed, "owner_name: required")
	}
	var initial int64
	if b.InitialBalance != nil {
		initial = *b.InitialBalance
	}
	open := &messages.OpenAccount{AccountNumber: *b.AccountNumber, OwnerName: *b.OwnerName, InitialBalance: initial}
	// Validate here too so a bad body never activates a grain.
	if err := g.accounts.CheckOpen(&messages.Caller{Subject: principal(c).Subject}, open); err != nil {
		return messages.AsFailure(err, messages.CodeValidationFailed)
	}
	id := g.accounts.IDFor(*b.AccountNumber)
	req, err := g.accountRequest(c)
	if err != nil {
		return err
	}
	reply, err := call(g, c, func(ctx context.Context) (*messages.AccountReply, error) {
		return g.accounts.Open(ctx, id, req, open)
	})
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/accounts/"+id)
	return g.renderReply(c, http.StatusCreated, reply)
}

func (g *Gateway) getAccount(c echo.Context) error {
	id, err := accountID(c)
	if err != nil {
		return err
	}
	if raw, ok := c.QueryParams()["at_version"]; ok {
		return g.accountAtVersion(c, id, raw[0])
	}
	req, err := g.accountRequest(c)
	if err != nil {
		return err
	}
	// A read has nothing to deduplicate, and without an id its refusals
	// (not found, forbidden) need no fence in the journal.
	req.CommandId = ""
	reply, err := call(g, c, func(ctx context.Context) (*messages.AccountReply, error) {
		return g.accounts.Get(ctx, id, req)
	})
	if err != nil {
		return err
	}
	return g.renderReply(c, http.StatusOK, reply)
}

type moneyBody struct {
	Amount      *int64  `json:"amount"`
	Description *string `json:"description"`
}

func (g *Gateway) deposit(c echo.Context) error {
	return g.moveMoney(c, func(ctx context.Context, id string, req *messages.AccountRequest, amount int64, desc string) (*messages.AccountReply, error) {
		return g.accounts.Deposit(ctx, id, req, &messages.Deposit{Amount: amount, Description: desc})
	})
}

func (g *Gateway) withdraw(c echo.Context) error {
	return g.moveMoney(c, func(ctx context.Context, id string, req *messages.AccountRequest, amount int64, desc string) (*messages.AccountReply, error) {
		return g.accounts.Withdraw(ctx, id, req, &messages.Withdraw{Amount: amount, Description: desc})
	})
}

type moveFunc func(ctx context.Context, id string, req *messages.AccountRequest, amount int64, desc string) (*messages.AccountReply, error)

func (g *Gateway) moveMoney(c echo.Context, move moveFunc) error {
	id, err := accountID(c)
	if err != nil {
		return err
	}
	var b moneyBody
	if err := g.bindJSON(c, &b); err != nil {
		return err
	}
	if b.Amount == nil {
		return messages.Fail(messages.CodeValidationFailed, "amount: required")
	}
	if *b.Amount <= 0 || *b.Amount > messages.MaxAmount {
		return messages.Fail(messages.CodeValidationFailed, "amount: must be between 1 and %d", messages.MaxAmount)
	}
	desc := ""
	if b.Description != nil {
		desc = *b.Description
	}
	req, err := g.accountRequest(c)
	if err != nil {
		return err
	}
	reply, err := call(g, c, func(ctx context.Context) (*messages.AccountReply, error) {
		return move(ctx, id, req, *b.Amount, desc)
	})
	if err != nil {
		return err
	}
	return g.renderReply(c, http.StatusOK, reply)
}

type closeBody struct {
	Reason *string `json:"reason"`
}

func (g *Gateway) closeAccount(c echo.Context) error {
	id, err := accountID(c)
	if err != nil {
		return err
	}
	var b closeBody
	if err := g.bindJSON(c, &b); err != nil {
		return err
	}
	reason := ""
	if b.Reason != nil {
		reason = *b.Reason
	}
	req, err := g.accountRequest(c)
	if err != nil {
		return err
	}
	reply, err := call(g, c, func(ctx context.Context) (*messages.AccountReply, error) {
		return g.accounts.Close(ctx, id, req, &messages.CloseAccount{Reason: reason})
	})
	if err != nil {
		return err
	}
	return g.renderReply(c, http.StatusOK, reply)
}

// accountRequest fills what every account request carries: caller, command
// id, If-Match and deadline.
func (g *Gateway) accountRequest(c echo.Context) (*messages.AccountRequest, error) {
	p := principal(c)
	req := &messages.AccountRequest{Caller: &messages.Caller{Subject: p.Subject, Admin: p.Admin()}}
	cmdID, err := commandID(c, p.Subject)
	if err != nil {
		return nil, err
	}
	req.CommandId = cmdID
	if v, ok, err := ifMatch(c); err != nil {
		return nil, err
	} else if ok {
		req.CheckVersion, req.ExpectedVersion = true, v
	}
	return req, nil
}

// commandID names the command for the grain's duplicate check. With an
// Idempotency-Key it is derived from the caller, route and key, so a client
// retry of the same command lands on the same id.
//
// A keyed id keeps the form earlier builds gave it ("idem-" and 32 hex
// digits): a retry of an attempt that got no final answer (a 504, a
// gateway that died) is answered by the grain's duplicate check alone, and
// during a rolling upgrade it may reach a gateway of the other build. A
// random id needs no such care, so it is 128 bits in unpadded base64url,
// 22 characters in a 24-byte allocation where hex took 32 (the grain keeps
// its recent ids: issue 10). The lengths keep the two kinds apart.
func commandID(c echo.Context, subject string) (string, error) {
	sum, keyed, err := keyedSum(c, subject)
	switch {
	case err != nil:
		return "", err
	case !keyed:
		var b [16]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
		return base64.RawURLEncoding.EncodeToString(b[:]), nil
	}
	return "idem-" + hex.EncodeToString(sum[:16]), nil
}

// keyedSum is a hash of the caller, route and Idempotency-Key of c, when
// it has one (keyed).
func keyedSum(c echo.Context, subject string) (sum [sha256.Size]byte, keyed bool, err error) {
	key := c.Request().Header.Get(headerIdempotencyKey)
	if key == "" {
		return sum, false, nil
	}
	if len(key) > maxIdempotencyKeyLen {
		return sum, false, messages.Fail(messages.CodeValidationFailed, "Idempotency-Key: at most %d characters", maxIdempotencyKeyLen)
	}
	return sha256.Sum256([]byte(subject + "\x00" + c.Request().Method + "\x00" + c.Request().URL.Path + "\x00" + key)), true, nil
}

// ifMatch parses If-Match: "<version>" (a strong ETag of the version). "*"
// matches any version, i.e. no check.
func ifMatch(c echo.Context) (uint64, bool, error) {
	h := strings.TrimSpace(c.Request().Header.Get("If-Match"))
	if h == "" || h == "*" {
		return 0, false, nil
	}
	v, err := strconv.ParseUint(strings.Trim(strings.TrimPrefix(h, "W/"), `"`), 10, 64)
	if err != nil {
		return 0, false, messages.Fail(messages.CodeValidationFailed, `If-Match: must be "<version>", got %q`, h)
	}
	return v, true, nil
}

func (g *Gateway) renderReply(c echo.Context, status int, reply *messages.AccountReply) error {
	a := reply.GetAccount()
	c.Response().Header().Set("ETag", strconv.Quote(strconv.FormatUint(a.GetVersion(), 10)))
	return c.JSON(status, renderAccount(a))
}
