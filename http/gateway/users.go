package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"granary/cluster/grains"
	"granary/http/auth"
	"granary/http/ratelimit"
	"granary/http/reqlog"
	"granary/messages"
)

// userJSON is the contract's User; the id is the user's Granary-issued id
// (never the username), which is the `sub` of the user's tokens.
type userJSON struct {
	ID          string   `json:"id"`
	Username    string   `json:"username"`
	DisplayName string   `json:"display_name"`
	Roles       []string `json:"roles"`
}

func renderUser(u *messages.UserState) userJSON {
	roles := u.GetRoles()
	if roles == nil {
		roles = []string{}
	}
	return userJSON{ID: u.GetUserId(), Username: u.GetUsername(), DisplayName: u.GetDisplayName(), Roles: roles}
}

// MinPasswordLen is the contract's password rule (characters).
const MinPasswordLen = 8

type registerBody struct {
	Username    *string `json:"username"`
	Password    *string `json:"password"`
	DisplayName *string `json:"display_name"`
}

func (g *Gateway) register(c echo.Context) error {
	var b registerBody
	if err := g.bindJSON(c, &b); err != nil {
		return err
	}
	switch {
	case b.Username == nil || !messages.UsernamePattern.MatchString(*b.Username):
		return messages.Fail(messages.CodeValidationFailed, "username: required, must match %s", messages.UsernamePattern)
	case b.Password == nil || utf8.RuneCountInString(*b.Password) < MinPasswordLen:
		return messages.Fail(messages.CodeValidationFailed, "password: required, at least %d characters", MinPasswordLen)
	case len(*b.Password) > messages.MaxPasswordLen:
		return messages.Fail(messages.CodeValidationFailed, "password: at most %d bytes", messages.MaxPasswordLen)
	}
	display := *b.Username
	if b.DisplayName != nil {
		display = *b.DisplayName
	}
	if !utf8.ValidString(display) || utf8.RuneCountInString(display) > messages.MaxDisplayName {
		return messages.Fail(messages.CodeValidationFailed, "display_name: at most %d characters", messages.MaxDisplayName)
	}
	if grains.Reserved(*b.Username) {
		// Answered like any taken name, whether or not the operator's
		// bootstrap has run yet.
		return messages.Fail(messages.CodeAlreadyExists, "username %q is taken", *b.Username)
	}
	u, err := RegisterUser(c.Request().Context(), g.deps, g.cfg.CallTimeout, *b.Username, *b.Password, display, nil, c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, renderUser(u))
}

// RegisterUser hashes the password on an auth instance and registers the
// user grain under a fresh user id. It is exported for seeding the admin
// user at start-up (it does not refuse reserved names: the handler does);
// ec may be nil outside a request.
func RegisterUser(ctx context.Context, deps Deps, timeout time.Duration, username, password, display string, roles []string, ec echo.Context) (*messages.UserState, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	auth, err := deps.Services.Client(messages.AuthServiceName)
	if err != nil {
		return nil, err
	}
	// Hashing is costly: refuse a taken name before paying for it (the
	// grain decides again, so a race still ends in already_exists).
	if _, err := getUser(ctx, deps, username, ec); err == nil {
		return nil, messages.Fail(messages.CodeAlreadyExists, "username %q is taken", username)
	} else if !hasCode(err, messages.CodeNotFound) {
		return nil, err
	}
	hashed, err := auth.Call(ctx, &messages.ServiceRequest{Call: &messages.ServiceRequest_HashPassword{
		HashPassword: &messages.HashPassword{Password: password}}}, true)
	if err != nil {
		return nil, err
	}
	if f := hashed.GetFailure(); f != nil {
		return nil, f
	}
	users := grains.Users{Caller: deps.Member}
	reply, err := callGrain(ctx, ec, func(ctx context.Context) (*messages.UserReply, error) {
		// A fresh id: two people racing for one name must not look like
		// one retried command (client retries use Idempotency-Key).
		return users.Register(ctx, username, "register-"+randomHex(8), &messages.RegisterUser{UserId: grains.NewUserID(),
			DisplayName: display, PasswordHash: hashed.GetPasswordHash(), Roles: roles})
	})
	if err != nil {
		return nil, err
	}
	return reply.GetUser(), nil
}

type loginBody struct {
	Username *string `json:"username"`
	Password *string `json:"password"`
}

func (g *Gateway) login(c echo.Context) error {
	var b loginBody
	if err := g.bindJSON(c, &b); err != nil {
		return err
	}
	if b.Username == nil || b.Password == nil {
		return messages.Fail(messages.CodeValidationFailed, "username and password: required")
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), g.cfg.CallTimeout)
	defer cancel()
	// Throttled per username before anything else, known or not (an
	// unknown one must not answer differently), and the right password
	// gets no exception: that is what a guess looks like too.
	throttle, err := g.loginThrottle()
	if err != nil {
		return err
	}
	wait, err := throttle.Attempt(ctx, *b.Username)
	if err != nil {
		reqlog.From(ctx, g.deps.Logger).Error("login throttle unavailable; refusing logins", "err", err)
		return messages.Fail(messages.CodeServiceUnavailable, "login is unavailable; retry")
	}
	if wait > 0 {
		retry := ratelimit.RetryAfterSeconds(wait)
		c.Response().Header().Set("Retry-After", strconv.Itoa(retry))
		return messages.Fail(messages.CodeRateLimited, "too many failed logins for this username; retry in %d s", retry)
	}
	// Whatever is wrong, the same work is done: an unknown user is
	// verified against a dummy hash, so time does not tell which half.
	hash := grains.DummyHash()
	var u *messages.UserState
	if messages.UsernamePattern.MatchString(*b.Username) {
		switch u, err = getUser(ctx, g.deps, *b.Username, c); {
		case err == nil:
			hash = u.GetPasswordHash()
		case hasCode(err, messages.CodeNotFound):
		default:
			return err
		}
	}
	authSvc, err := g.deps.Services.Client(messages.AuthServiceName)
	if err != nil {
		return err
	}
	verdict, err := authSvc.Call(ctx, &messages.ServiceRequest{Call: &messages.ServiceRequest_VerifyPassword{
		VerifyPassword: &messages.VerifyPassword{EncodedHash: hash, Password: *b.Password}}}, true)
	if err != nil {
		return err
	}
	if u == nil || !verdict.GetPasswordOk() {
		return messages.Fail(messages.CodeUnauthorized, "invalid username or password")
	}
	if err := throttle.Succeeded(ctx, *b.Username); err != nil {
		// The login stands; at worst a count lingers until its TTL.
		reqlog.From(ctx, g.deps.Logger).Warn("login throttle: success not recorded", "err", err)
	}
	if u.GetUserId() == "" {
		// Registered before users had ids: issue one now, once.
		if u, err = assignUserID(ctx, g.deps, *b.Username, c); err != nil {
			return err
		}
	}
	tok, err := g.deps.Verifier.IssueFor(auth.Principal{Subject: u.GetUserId(), Username: u.GetUsername(), Roles: u.GetRoles()},
		time.Now(), g.cfg.TokenTTL)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{
		"access_token": tok, "token_type": "Bearer", "expires_in": int64(g.cfg.TokenTTL / time.Second),
	})
}

// me answers from the user grain when the token is a Granary user's (its
// preferred_username names a user whose id is the token's sub), else from
// the token itself (granary token, an outside identity provider): a
// username, in a claim or as a sub, proves nothing by itself.
func (g *Gateway) me(c echo.Context) error {
	p := principal(c)
	ctx, cancel := context.WithTimeout(c.Request().Context(), g.cfg.CallTimeout)
	defer cancel()
	if messages.UserIDPattern.MatchString(p.Subject) && messages.UsernamePattern.MatchString(p.Username) {
		u, err := getUser(ctx, g.deps, p.Username, c)
		switch {
		case err == nil && u.GetUserId() == p.Subject:
			return c.JSON(http.StatusOK, renderUser(u))
		case err != nil && !hasCode(err, messages.CodeNotFound):
			return err
		}
	}
	roles := p.Roles
	if roles == nil {
		roles = []string{}
	}
	return c.JSON(http.StatusOK, userJSON{ID: p.Subject, Username: p.Subject, Roles: roles})
}

// loginThrottle is built per login: it is two fields, and building it
// here keeps its one dependency (Redis) checked where it is used.
func (g *Gateway) loginThrottle() (*ratelimit.LoginThrottle, error) {
	if g.deps.Redis == nil {
		return nil, messages.Fail(messages.CodeServiceUnavailable, "login is unavailable: no Redis for its throttle")
	}
	cfg := g.cfg.Login
	cfg.KeyPrefix = g.cfg.KeyPrefix
	t, err := ratelimit.NewLoginThrottle(g.deps.Redis, cfg)
	if err != nil {
		return nil, fmt.Errorf("login throttle: %w", err)
	}
	return t, nil
}

// assignUserID gives a user stored without an id its id; whichever
// gateway asks first wins, and every caller gets the stored one.
func assignUserID(ctx context.Context, deps Deps, username string, ec echo.Context) (*messages.UserState, error) {
	users := grains.Users{Caller: deps.Member}
	reply, err := callGrain(ctx, ec, func(ctx context.Context) (*messages.UserReply, error) {
		return users.AssignID(ctx, username, "assign-id-"+randomHex(8), grains.NewUserID())
	})
	if err != nil {
		return nil, err
	}
	return reply.GetUser(), nil
}

func getUser(ctx context.Context, deps Deps, username string, ec echo.Context) (*messages.UserState, error) {
	users := grains.Users{Caller: deps.Member}
	reply, err := callGrain(ctx, ec, func(ctx context.Context) (*messages.UserReply, error) {
		return users.Get(ctx, username)
	})
	if err != nil {
		return nil, err
	}
	return reply.GetUser(), nil
}

// hasCode reports whether err is a Failure with code.
func hasCode(err error, code string) bool {
	var f *messages.Failure
	return errors.As(err, &f) && f.GetCode() == code
}
