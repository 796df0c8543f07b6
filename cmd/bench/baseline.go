package main

// The baseline is the service a user would write by hand for the same
// contract: Echo, golang-jwt (HS256, verified on every request) and
// go-redis, one Lua script per change, no actors and no Granary package.
// Each change is a compare-and-append done in Redis: the script reads the
// account's version, refuses a stale If-Match, appends the event to the
// account's list and updates its balance hash, all atomically, so an
// answer is sent only after the event is in Redis (and as durable as the
// server's appendfsync makes it, like Granary's journal).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
)

// maxMoney is the API's ceiling for an amount (10^15 minor units).
const maxMoney = 1_000_000_000_000_000

// baselineCallTimeout bounds every Redis call a request makes, like
// Granary's call timeout.
const baselineCallTimeout = 5 * time.Second

// Every script returns the account's state as
// {balance, version, account_number, owner, owner_name, closed}.
var (
	openScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('already_exists') end
redis.call('HSET', KEYS[1], 'account_number', ARGV[1], 'owner', ARGV[2], 'owner_name', ARGV[3],
  'balance', ARGV[4], 'version', 1, 'closed', 0)
redis.call('RPUSH', KEYS[2], '{"version":1,"type":"AccountOpened","initial_balance":' .. ARGV[4] ..
  ',"occurred_at":"' .. ARGV[5] .. '"}')
return {tonumber(ARGV[4]), 1, ARGV[1], ARGV[2], ARGV[3], 0}
`)

	depositScript = redis.NewScript(`
local a = redis.call('HMGET', KEYS[1], 'owner', 'version', 'closed')
if not a[1] then return redis.error_reply('not_found') end
if ARGV[2] ~= '1' and a[1] ~= ARGV[1] then return redis.error_reply('forbidden') end
if a[3] == '1' then return redis.error_reply('account_closed') end
if ARGV[4] ~= '' and ARGV[4] ~= a[2] then return redis.error_reply('version_conflict') end
local v = redis.call('HINCRBY', KEYS[1], 'version', 1)
local b = redis.call('HINCRBY', KEYS[1], 'balance', ARGV[3])
redis.call('RPUSH', KEYS[2], '{"version":' .. v .. ',"type":"MoneyDeposited","amount":' .. ARGV[3] ..
  ',"description":' .. ARGV[6] .. ',"occurred_at":"' .. ARGV[5] .. '"}')
local s = redis.call('HMGET', KEYS[1], 'account_number', 'owner', 'owner_name')
return {b, v, s[1], s[2], s[3], 0}
`)

	// transferScript moves money between two accounts in one step: the
	// hand-written answer to what Granary does with a saga.
	transferScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'owner', 'balance', 'closed')
if not f[1] then return redis.error_reply('not_found') end
if ARGV[2] ~= '1' and f[1] ~= ARGV[1] then return redis.error_reply('forbidden') end
if f[3] == '1' then return redis.error_reply('account_closed') end
local t = redis.call('HMGET', KEYS[3], 'closed')
if not t[1] then return redis.error_reply('target_not_found') end
if t[1] == '1' then return redis.error_reply('target_closed') end
if tonumber(f[2]) < tonumber(ARGV[3]) then return redis.error_reply('insufficient_funds') end
local fv = redis.call('HINCRBY', KEYS[1], 'version', 1)
local fb = redis.call('HINCRBY', KEYS[1], 'balance', '-' .. ARGV[3])
redis.call('RPUSH', KEYS[2], '{"version":' .. fv .. ',"type":"MoneyWithdrawn","amount":' .. ARGV[3] ..
  ',"transfer_id":"' .. ARGV[5] .. '","occurred_at":"' .. ARGV[4] .. '"}')
local tv = redis.call('HINCRBY', KEYS[3], 'version', 1)
local tb = redis.call('HINCRBY', KEYS[3], 'balance', ARGV[3])
redis.call('RPUSH', KEYS[4], '{"version":' .. tv .. ',"type":"MoneyDeposited","amount":' .. ARGV[3] ..
  ',"transfer_id":"' .. ARGV[5] .. '","occurred_at":"' .. ARGV[4] .. '"}')
return {fb, fv, tb, tv}
`)
)

// baselineAccount is the same shape as Granary's Account.
type baselineAccount struct {
	ID            string `json:"id"`
	AccountNumber string `json:"account_number"`
	Owner         string `json:"owner"`
	OwnerName     string `json:"owner_name"`
	Balance       int64  `json:"balance"`
	Version       int64  `json:"version"`
	Closed        bool   `json:"closed"`
}

type baselineServer struct {
	rdb    *redis.Client
	secret []byte
	parser *jwt.Parser
	prefix string
}

// baselineClaims are what the baseline reads from a token.
type baselineClaims struct {
	jwt.RegisteredClaims
	Roles []string `json:"roles,omitempty"`
}

type caller struct {
	subject string
	admin   bool
}

// newBaseline returns the baseline's Echo server on rdb, its keys under
// prefix. accessLog, when not nil, gets one line per request (Granary
// logs one too, so both sides pay for it).
func newBaseline(rdb *redis.Client, secret []byte, prefix string, accessLog *slog.Logger) *echo.Echo {
	s := &baselineServer{
		rdb:    rdb,
		secret: secret,
		parser: jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired()),
		prefix: prefix,
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		status, code := http.StatusInternalServerError, "internal"
		var he *echo.HTTPError
		if errors.As(err, &he) {
			status, code = he.Code, fmt.Sprint(he.Message)
		}
		if !c.Response().Committed {
			_ = c.JSON(status, map[string]any{"status": status, "code": code, "detail": err.Error()})
		}
	}
	if accessLog != nil {
		e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
			return func(c echo.Context) error {
				start := time.Now()
				err := next(c)
				if err != nil {
					c.Error(err)
				}
				accessLog.Info("request", "method", c.Request().Method, "path", c.Path(),
					"status", c.Response().Status, "duration", time.Since(start))
				return nil
			}
		})
	}
	e.GET("/health", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	g := e.Group("", s.authenticate)
	g.POST("/accounts", s.open)
	g.GET("/accounts/:id", s.get)
	g.POST("/accounts/:id/deposits", s.deposit)
	g.POST("/transfers", s.transfer)
	return e
}

func fail(status int, code string) error { return echo.NewHTTPError(status, code) }

func (s *baselineServer) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw, ok := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
		if !ok {
			return fail(http.StatusUnauthorized, "unauthorized")
		}
		var claims baselineClaims
		if _, err := s.parser.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return s.secret, nil }); err != nil || claims.Subject == "" {
			return fail(http.StatusUnauthorized, "unauthorized")
		}
		c.Set("caller", caller{subject: claims.Subject, admin: slices.Contains(claims.Roles, "admin")})
		return next(c)
	}
}

func callerOf(c echo.Context) caller { cl, _ := c.Get("caller").(caller); return cl }

func (s *baselineServer) keys(id string) (acct, events string) {
	return s.prefix + ":{" + id + "}:account", s.prefix + ":{" + id + "}:events"
}

// baselineID derives an account's id from its number, as Granary does,
// so opening the same number twice is refused by the script.
func baselineID(number string) string {
	sum := sha256.Sum256([]byte(number))
	return "acc_" + hex.EncodeToString(sum[:10])
}

func bindBody(c echo.Context, v any) error {
	if !strings.HasPrefix(c.Request().Header.Get(echo.HeaderContentType), echo.MIMEApplicationJSON) {
		return fail(http.StatusUnsupportedMediaType, "unsupported_media_type")
	}
	dec := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 1<<20))
	if err := dec.Decode(v); err != nil {
		return fail(http.StatusBadRequest, "invalid_json")
	}
	return nil
}

func validAmount(v *int64, min int64) bool { return v != nil && *v >= min && *v <= maxMoney }

func (s *baselineServer) open(c echo.Context) error {
	var b struct {
		AccountNumber  string `json:"account_number"`
		OwnerName      string `json:"owner_name"`
		InitialBalance *int64 `json:"initial_balance"`
	}
	if err := bindBody(c, &b); err != nil {
		return err
	}
	initial := int64(0)
	if b.InitialBalance != nil {
		initial = *b.InitialBalance
	}
	if len(b.AccountNumber) < 1 || len(b.AccountNumber) > 64 || len(b.OwnerName) < 1 || len(b.OwnerName) > 200 || !validAmount(&initial, 0) {
		return fail(http.StatusBadRequest, "validation_failed")
	}
	id := baselineID(b.AccountNumber)
	acct, events := s.keys(id)
	ctx, cancel := context.WithTimeout(c.Request().Context(), baselineCallTimeout)
	defer cancel()
	res, err := openScript.Run(ctx, s.rdb, []string{acct, events},
		b.AccountNumber, callerOf(c).subject, b.OwnerName, initial, time.Now().UTC().Format(time.RFC3339Nano)).Slice()
	if err != nil {
		return scriptError(err)
	}
	a, err := accountFrom(id, res)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/accounts/"+id)
	return c.JSON(http.StatusCreated, a)
}

func (s *baselineServer) get(c echo.Context) error {
	id := c.Param("id")
	acct, _ := s.keys(id)
	ctx, cancel := context.WithTimeout(c.Request().Context(), baselineCallTimeout)
	defer cancel()
	h, err := s.rdb.HGetAll(ctx, acct).Result()
	if err != nil {
		return fmt.Errorf("read %s: %w", id, err)
	}
	if len(h) == 0 {
		return fail(http.StatusNotFound, "not_found")
	}
	if cl := callerOf(c); !cl.admin && h["owner"] != cl.subject {
		return fail(http.StatusForbidden, "forbidden")
	}
	bal, err1 := strconv.ParseInt(h["balance"], 10, 64)
	ver, err2 := strconv.ParseInt(h["version"], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("account %s: %w", id, err)
	}
	return c.JSON(http.StatusOK, baselineAccount{ID: id, AccountNumber: h["account_number"], Owner: h["owner"],
		OwnerName: h["owner_name"], Balance: bal, Version: ver, Closed: h["closed"] == "1"})
}

func (s *baselineServer) deposit(c echo.Context) error {
	var b struct {
		Amount      *int64 `json:"amount"`
		Description string `json:"description"`
	}
	if err := bindBody(c, &b); err != nil {
		return err
	}
	if !validAmount(b.Amount, 1) || len(b.Description) > 500 {
		return fail(http.StatusBadRequest, "validation_failed")
	}
	expected := ""
	if m := c.Request().Header.Get("If-Match"); m != "" {
		v, err := strconv.ParseInt(strings.Trim(m, `"`), 10, 64)
		if err != nil {
			return fail(http.StatusBadRequest, "validation_failed")
		}
		expected = strconv.FormatInt(v, 10)
	}
	desc, err := json.Marshal(b.Description)
	if err != nil {
		return fmt.Errorf("encode description: %w", err)
	}
	id := c.Param("id")
	acct, events := s.keys(id)
	cl := callerOf(c)
	ctx, cancel := context.WithTimeout(c.Request().Context(), baselineCallTimeout)
	defer cancel()
	res, err := depositScript.Run(ctx, s.rdb, []string{acct, events},
		cl.subject, boolArg(cl.admin), *b.Amount, expected, time.Now().UTC().Format(time.RFC3339Nano), string(desc)).Slice()
	if err != nil {
		return scriptError(err)
	}
	a, err := accountFrom(id, res)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, a)
}

func (s *baselineServer) transfer(c echo.Context) error {
	var b struct {
		TransferID string `json:"transfer_id"`
		From       string `json:"from_account"`
		To         string `json:"to_account"`
		Amount     *int64 `json:"amount"`
	}
	if err := bindBody(c, &b); err != nil {
		return err
	}
	if b.From == "" || b.To == "" || b.From == b.To || !validAmount(b.Amount, 1) || len(b.TransferID) > 64 {
		return fail(http.StatusBadRequest, "validation_failed")
	}
	if b.TransferID == "" {
		b.TransferID = fmt.Sprintf("tr_%d", time.Now().UnixNano())
	}
	fromAcct, fromEvents := s.keys(b.From)
	toAcct, toEvents := s.keys(b.To)
	cl := callerOf(c)
	ctx, cancel := context.WithTimeout(c.Request().Context(), baselineCallTimeout)
	defer cancel()
	if err := transferScript.Run(ctx, s.rdb, []string{fromAcct, fromEvents, toAcct, toEvents},
		cl.subject, boolArg(cl.admin), *b.Amount, time.Now().UTC().Format(time.RFC3339Nano), b.TransferID).Err(); err != nil {
		return scriptError(err)
	}
	return c.JSON(http.StatusCreated, map[string]any{"transfer_id": b.TransferID, "from_account": b.From,
		"to_account": b.To, "amount": *b.Amount, "status": "completed"})
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// scriptError maps a script's refusal to its HTTP answer; anything else
// is the storage failing (503, as Granary answers).
func scriptError(err error) error {
	// Servers differ in how they pass a script's error_reply on
	// (miniredis adds "ERR "), so the code is the first other word.
	var msg string
	if f := strings.Fields(strings.TrimPrefix(err.Error(), "ERR ")); len(f) > 0 {
		msg = f[0]
	}
	switch msg {
	case "already_exists", "account_closed", "version_conflict":
		return fail(http.StatusConflict, msg)
	case "insufficient_funds", "target_not_found", "target_closed":
		return fail(http.StatusUnprocessableEntity, "saga_failed")
	case "not_found":
		return fail(http.StatusNotFound, msg)
	case "forbidden":
		return fail(http.StatusForbidden, msg)
	}
	return echo.NewHTTPError(http.StatusServiceUnavailable, "service_unavailable").SetInternal(err)
}

func accountFrom(id string, res []any) (baselineAccount, error) {
	if len(res) != 6 {
		return baselineAccount{}, fmt.Errorf("script answered %d values for %s, want 6", len(res), id)
	}
	bal, ok1 := res[0].(int64)
	ver, ok2 := res[1].(int64)
	num, ok3 := res[2].(string)
	owner, ok4 := res[3].(string)
	name, ok5 := res[4].(string)
	closed, ok6 := res[5].(int64)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return baselineAccount{}, fmt.Errorf("script answered %v for %s", res, id)
	}
	return baselineAccount{ID: id, AccountNumber: num, Owner: owner, OwnerName: name, Balance: bal, Version: ver, Closed: closed == 1}, nil
}

// runBaseline is `bench baseline -addr … -redis …`: the baseline as its own
// process, so it competes for the CPU as Granary's node does. The secret
// comes from BENCH_JWT_SECRET (not argv, which ps shows).
func runBaseline(args []string) error {
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	redisURL := fs.String("redis", "", "Redis URL (redis://host:port/db)")
	prefix := fs.String("prefix", "baseline", "prefix of its Redis keys")
	accessLog := fs.Bool("access-log", true, "one log line per request on stderr (Granary's node logs one too)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret := os.Getenv("BENCH_JWT_SECRET")
	if len(secret) < 32 || *redisURL == "" {
		return errors.New("baseline needs -redis and BENCH_JWT_SECRET (≥ 32 bytes)")
	}
	opts, err := redis.ParseURL(*redisURL)
	if err != nil {
		return fmt.Errorf("redis URL: %w", err)
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 2*time.Second, 3*time.Second, 3*time.Second
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	var log *slog.Logger
	if *accessLog {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	e := newBaseline(rdb, []byte(secret), *prefix, log)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *addr, err)
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second}
	fmt.Printf("baseline listening on http://%s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shut)
}
