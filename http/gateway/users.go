package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"granary/actors/service"
	"granary/actors/user"
	"granary/messages"
)

// userJSON is the contract's User; the id is the username, which is also
// the `sub` of the user's tokens.
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
	return userJSON{ID: u.GetUsername(), Username: u.GetUsername(), DisplayName: u.GetDisplayName(), Roles: roles}
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
	case b.Username == nil || !user.UsernamePattern.MatchString(*b.Username):
		return messages.Fail(messages.CodeValidationFailed, "username: required, must match %s", user.UsernamePattern)
	case b.Password == nil || utf8.RuneCountInString(*b.Password) < MinPasswordLen:
		return messages.Fail(messages.CodeValidationFailed, "password: required, at least %d characters", MinPasswordLen)
	case len(*b.Password) > service.MaxPasswordLen:
		return messages.Fail(messages.CodeValidationFailed, "password: at most %d bytes", service.MaxPasswordLen)
	}
	display := *b.Username
	if b.DisplayName != nil {
		display = *b.DisplayName
	}
	if !utf8.ValidString(display) || utf8.RuneCountInString(display) > user.MaxDisplayName {
		return messages.Fail(messages.CodeValidationFailed, "display_name: at most %d characters", user.MaxDisplayName)
	}
	u, err := RegisterUser(c.Request().Context(), g.deps, g.cfg.CallTimeout, *b.Username, *b.Password, display, nil, c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, renderUser(u))
}

// RegisterUser hashes the password on an auth instance and registers the
// user grain. It is exported for seeding the admin user at start-up; ec may
// be nil outside a request.
func RegisterUser(ctx context.Context, deps Deps, timeout time.Duration, username, password, display string, roles []string, ec echo.Context) (*messages.UserState, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	auth, err := deps.Services.Client(service.AuthService)
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
	reply, err := userCall(ctx, deps, username, ec, &messages.UserRequest{
		// A fresh id: two people racing for one name must not look like
		// one retried command (client retries use Idempotency-Key).
		CommandId: "register-" + randomHex(8),
		Command: &messages.UserRequest_Register{Register: &messages.RegisterUser{
			DisplayName: display, PasswordHash: hashed.GetPasswordHash(), Roles: roles}},
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
	// Whatever is wrong, the same work is done: an unknown user is
	// verified against a dummy hash, so time does not tell which half.
	hash, roles := service.DummyHash, []string(nil)
	known := false
	if user.UsernamePattern.MatchString(*b.Username) {
		u, err := getUser(ctx, g.deps, *b.Username, c)
		switch {
		case err == nil:
			hash, roles, known = u.GetPasswordHash(), u.GetRoles(), true
		case hasCode(err, messages.CodeNotFound):
		default:
			return err
		}
	}
	auth, err := g.deps.Services.Client(service.AuthService)
	if err != nil {
		return err
	}
	verdict, err := auth.Call(ctx, &messages.ServiceRequest{Call: &messages.ServiceRequest_VerifyPassword{
		VerifyPassword: &messages.VerifyPassword{EncodedHash: hash, Password: *b.Password}}}, true)
	if err != nil {
		return err
	}
	if !known || !verdict.GetPasswordOk() {
		return messages.Fail(messages.CodeUnauthorized, "invalid username or password")
	}
	tok, err := g.deps.Verifier.Issue(*b.Username, roles, time.Now(), g.cfg.TokenTTL)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{
		"access_token": tok, "token_type": "Bearer", "expires_in": int64(g.cfg.TokenTTL / time.Second),
	})
}

// me answers from the user grain when the subject is a registered user,
// else from the token itself (a token from an outside identity provider).
func (g *Gateway) me(c echo.Context) error {
	p := principal(c)
	ctx, cancel := context.WithTimeout(c.Request().Context(), g.cfg.CallTimeout)
	defer cancel()
	if user.UsernamePattern.MatchString(p.Subject) {
		u, err := getUser(ctx, g.deps, p.Subject, c)
		if err == nil {
			return c.JSON(http.StatusOK, renderUser(u))
		}
		if !hasCode(err, messages.CodeNotFound) {
			return err
		}
	}
	roles := p.Roles
	if roles == nil {
		roles = []string{}
	}
	return c.JSON(http.StatusOK, userJSON{ID: p.Subject, Username: p.Subject, Roles: roles})
}

func getUser(ctx context.Context, deps Deps, username string, ec echo.Context) (*messages.UserState, error) {
	reply, err := userCall(ctx, deps, username, ec, &messages.UserRequest{Command: &messages.UserRequest_Get{Get: &messages.GetUser{}}})
	if err != nil {
		return nil, err
	}
	return reply.GetUser(), nil
}

func userCall(ctx context.Context, deps Deps, username string, ec echo.Context, req *messages.UserRequest) (*messages.UserReply, error) {
	if dl, ok := ctx.Deadline(); ok {
		req.DeadlineUnixMs = dl.UnixMilli()
	}
	reply, err := callAs[*messages.UserReply](ctx, deps, user.Kind, username, req)
	if err != nil {
		return nil, err
	}
	if ec != nil && reply.GetServedBy() != "" {
		ec.Response().Header().Set(headerServedBy, reply.GetServedBy())
	}
	if f := reply.GetFailure(); f != nil {
		return nil, f
	}
	return reply, nil
}

// hasCode reports whether err is a Failure with code.
func hasCode(err error, code string) bool {
	var f *messages.Failure
	return errors.As(err, &f) && f.GetCode() == code
}
