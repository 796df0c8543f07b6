package problem_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"granary/http/problem"
	"granary/http/reqlog"
	"granary/messages"
)

// The contract's table of codes.
func TestStatusOf(t *testing.T) {
	for code, want := range map[string]int{
		messages.CodeInvalidJSON: 400, messages.CodeValidationFailed: 400,
		messages.CodeUnauthorized: 401, messages.CodeForbidden: 403,
		messages.CodeNotFound: 404, messages.CodeRouteNotFound: 404,
		messages.CodeMethodNotAllowed:  405,
		messages.CodeInsufficientFunds: 409, messages.CodeAccountClosed: 409,
		messages.CodeAlreadyExists: 409, messages.CodeVersionConflict: 409, messages.CodeIdempotencyReused: 409,
		messages.CodePayloadTooLarge: 413, messages.CodeUnsupportedMediaType: 415,
		messages.CodeSagaFailed: 422, messages.CodeRateLimited: 429,
		messages.CodeServiceUnavailable: 503, messages.CodeTimeout: 504,
		"no_such_code": 500, "": 500,
	} {
		if got := problem.StatusOf(code); got != want {
			t.Errorf("StatusOf(%q) = %d, want %d", code, got, want)
		}
	}
}

type rendered struct {
	status int
	header http.Header
	body   problem.Problem
	raw    string
}

func render(t *testing.T, method string, err error, prepare func(echo.Context)) rendered {
	t.Helper()
	e := echo.New()
	req := httptest.NewRequest(method, "/api/v1/things/1", nil)
	rec := httptest.NewRecorder()
	c := e.NewContext(req, rec)
	c.Response().Header().Set(echo.HeaderXRequestID, "rid-1")
	if prepare != nil {
		prepare(c)
	}
	problem.Handler(slog.New(slog.NewTextHandler(io.Discard, nil)))(err, c)
	out := rendered{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	if rec.Body.Len() > 0 && rec.Header().Get("Content-Type") == problem.ContentType {
		if err := json.Unmarshal(rec.Body.Bytes(), &out.body); err != nil {
			t.Fatalf("body %q: %v", rec.Body.String(), err)
		}
	}
	return out
}

func TestHandler(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"domain failure", messages.Fail(messages.CodeInsufficientFunds, "balance %d", 5), 409, messages.CodeInsufficientFunds},
		{"wrapped failure", errors.Join(errors.New("context"), messages.Fail(messages.CodeForbidden, "no")), 403, messages.CodeForbidden},
		{"echo not found", echo.ErrNotFound, 404, messages.CodeRouteNotFound},
		{"echo method not allowed", echo.ErrMethodNotAllowed, 405, messages.CodeMethodNotAllowed},
		{"echo too large", echo.ErrStatusRequestEntityTooLarge, 413, messages.CodePayloadTooLarge},
		{"echo media type", echo.ErrUnsupportedMediaType, 415, messages.CodeUnsupportedMediaType},
		{"echo unauthorized", echo.ErrUnauthorized, 401, messages.CodeUnauthorized},
		{"echo bad request", echo.ErrBadRequest, 400, messages.CodeInvalidJSON},
		{"echo unavailable", echo.ErrServiceUnavailable, 503, messages.CodeServiceUnavailable},
		{"timeout", messages.Fail(messages.CodeTimeout, "slow"), 504, messages.CodeTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, "POST", tc.err, nil)
			if r.status != tc.status || r.header.Get("Content-Type") != problem.ContentType {
				t.Fatalf("%d %q, want %d problem+json", r.status, r.header.Get("Content-Type"), tc.status)
			}
			b := r.body
			if b.Status != tc.status || b.Code != tc.code || b.Title != http.StatusText(tc.status) || b.Detail == "" ||
				b.RequestID != "rid-1" || b.Instance != "/api/v1/things/1" || b.Type != "about:blank" {
				t.Fatalf("body %+v", b)
			}
		})
	}
}

// An error nobody coded is a bug: 500, logged, and its text (which may
// hold internals) is not shown.
func TestHandlerHidesUnknownErrors(t *testing.T) {
	r := render(t, "GET", errors.New("dial redis://:hunter2@db:6379"), nil)
	if r.status != 500 || r.body.Code != "internal" || strings.Contains(r.raw, "hunter2") {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}

func TestHandlerRetryAfter(t *testing.T) {
	for _, code := range []string{messages.CodeServiceUnavailable, messages.CodeRateLimited} {
		if r := render(t, "GET", messages.Fail(code, "later"), nil); r.header.Get("Retry-After") == "" {
			t.Errorf("%s without Retry-After", code)
		}
	}
	// A handler that knows better keeps its own value.
	r := render(t, "GET", messages.Fail(messages.CodeRateLimited, "later"), func(c echo.Context) {
		c.Response().Header().Set("Retry-After", "42")
	})
	if got := r.header.Get("Retry-After"); got != "42" {
		t.Errorf("Retry-After %q, want 42", got)
	}
	if r := render(t, "GET", messages.Fail(messages.CodeNotFound, "x"), nil); r.header.Get("Retry-After") != "" {
		t.Errorf("404 with Retry-After")
	}
}

func TestHandlerHeadAndCommitted(t *testing.T) {
	if r := render(t, "HEAD", messages.Fail(messages.CodeNotFound, "x"), nil); r.status != 404 || r.raw != "" {
		t.Errorf("HEAD: %d %q, want 404 without body", r.status, r.raw)
	}
	// Once a response is on its way, the handler must not write a second one.
	r := render(t, "GET", messages.Fail(messages.CodeTimeout, "x"), func(c echo.Context) {
		_ = c.String(http.StatusOK, "partial")
	})
	if r.status != http.StatusOK || r.raw != "partial" {
		t.Errorf("committed response rewritten: %d %q", r.status, r.raw)
	}
}

// The handler logs through the request's own logger, so a 500's line
// names the request like every other line about it.
func TestHandlerLogsWithRequestLogger(t *testing.T) {
	var fallback, scoped strings.Builder
	e := echo.New()
	req := httptest.NewRequest("GET", "/x", nil)
	reqLog := slog.New(slog.NewTextHandler(&scoped, nil))
	req = req.WithContext(reqlog.With(req.Context(), reqLog, "scoped-1"))
	c := e.NewContext(req, httptest.NewRecorder())
	problem.Handler(slog.New(slog.NewTextHandler(&fallback, nil)))(errors.New("boom"), c)
	if !strings.Contains(scoped.String(), "request_id=scoped-1") || !strings.Contains(scoped.String(), "boom") || fallback.Len() != 0 {
		t.Fatalf("scoped log %q, fallback log %q", scoped.String(), fallback.String())
	}
	// Without one, the fallback logger names the request id itself.
	c = e.NewContext(httptest.NewRequest("GET", "/x", nil), httptest.NewRecorder())
	c.Response().Header().Set(echo.HeaderXRequestID, "rid-9")
	problem.Handler(slog.New(slog.NewTextHandler(&fallback, nil)))(errors.New("boom"), c)
	if !strings.Contains(fallback.String(), "request_id=rid-9") {
		t.Fatalf("fallback log %q", fallback.String())
	}
}
