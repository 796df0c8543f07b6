// Package problem owns the one place where an error becomes an HTTP answer:
// contract codes map to statuses, and every error is rendered as
// application/problem+json (RFC 9457).
package problem

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"granary/http/reqlog"
	"granary/messages"
)

// ContentType of every error body.
const ContentType = "application/problem+json"

// Problem is the error body.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	Instance  string `json:"instance,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

var statusOf = map[string]int{
	messages.CodeInvalidJSON:          http.StatusBadRequest,
	messages.CodeValidationFailed:     http.StatusBadRequest,
	messages.CodeUnauthorized:         http.StatusUnauthorized,
	messages.CodeForbidden:            http.StatusForbidden,
	messages.CodeNotFound:             http.StatusNotFound,
	messages.CodeRouteNotFound:        http.StatusNotFound,
	messages.CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	messages.CodeInsufficientFunds:    http.StatusConflict,
	messages.CodeAccountClosed:        http.StatusConflict,
	messages.CodeAlreadyExists:        http.StatusConflict,
	messages.CodeVersionConflict:      http.StatusConflict,
	messages.CodeIdempotencyReused:    http.StatusConflict,
	messages.CodeRequestInProgress:    http.StatusConflict,
	messages.CodePayloadTooLarge:      http.StatusRequestEntityTooLarge,
	messages.CodeUnsupportedMediaType: http.StatusUnsupportedMediaType,
	messages.CodeSagaFailed:           http.StatusUnprocessableEntity,
	messages.CodeRateLimited:          http.StatusTooManyRequests,
	messages.CodeServiceUnavailable:   http.StatusServiceUnavailable,
	messages.CodeTimeout:              http.StatusGatewayTimeout,
}

// StatusOf returns the HTTP status of a contract code (500 for an unknown
// code, which is a bug).
func StatusOf(code string) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// retryAfterSeconds is what a 503 tells clients to wait.
const retryAfterSeconds = 1

// CodeKey is where Handler leaves, in the echo.Context, the code of the
// problem it rendered, for the access log.
const CodeKey = "granary.problem_code"

// Handler returns Echo's HTTPErrorHandler: it renders *messages.Failure,
// Echo's own errors (404/405/413/...) and anything else (as 500, logged,
// with no internals leaked). It logs with the request's logger (see
// reqlog) when the request carries one, else with log.
func Handler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		log := requestLogger(c, log)
		f := toFailure(err)
		status := StatusOf(f.GetCode())
		if status >= 500 && status != http.StatusServiceUnavailable && status != http.StatusGatewayTimeout {
			log.Error("unhandled error", "err", err, "path", c.Request().URL.Path)
			f = &messages.Failure{Code: "internal", Detail: "internal error; it has been logged"}
		}
		if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
			if c.Response().Header().Get("Retry-After") == "" {
				c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
			}
		}
		p := Problem{
			Type:      "about:blank",
			Title:     http.StatusText(status),
			Status:    status,
			Detail:    f.GetDetail(),
			Code:      f.GetCode(),
			Instance:  c.Request().URL.Path,
			RequestID: c.Response().Header().Get(echo.HeaderXRequestID),
		}
		c.Set(CodeKey, p.Code)
		body := mustJSON(p)
		var ext *extended
		if errors.As(err, &ext) && status < 500 {
			if b, merr := withMember(body, ext); merr != nil {
				log.Error("problem extension not rendered", "err", merr)
			} else {
				body = b
			}
		}
		var werr error
		if c.Request().Method == http.MethodHead {
			werr = c.NoContent(status)
		} else {
			werr = c.Blob(status, ContentType, body)
		}
		if werr != nil {
			log.Debug("writing problem failed", "err", werr)
		}
	}
}

// requestLogger is the request's own logger, which already names the
// request id, or fallback naming it.
func requestLogger(c echo.Context, fallback *slog.Logger) *slog.Logger {
	if l := reqlog.From(c.Request().Context(), nil); l != nil {
		return l
	}
	return fallback.With("request_id", c.Response().Header().Get(echo.HeaderXRequestID))
}

func toFailure(err error) *messages.Failure {
	var f *messages.Failure
	if errors.As(err, &f) {
		return f
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		detail := http.StatusText(he.Code)
		if s, ok := he.Message.(string); ok && s != "" {
			detail = s
		}
		switch he.Code {
		case http.StatusNotFound:
			return &messages.Failure{Code: messages.CodeRouteNotFound, Detail: "no route matches this path"}
		case http.StatusMethodNotAllowed:
			return &messages.Failure{Code: messages.CodeMethodNotAllowed, Detail: "this path does not accept this method"}
		case http.StatusRequestEntityTooLarge:
			return &messages.Failure{Code: messages.CodePayloadTooLarge, Detail: detail}
		case http.StatusUnsupportedMediaType:
			return &messages.Failure{Code: messages.CodeUnsupportedMediaType, Detail: detail}
		case http.StatusUnauthorized:
			return &messages.Failure{Code: messages.CodeUnauthorized, Detail: detail}
		case http.StatusBadRequest:
			return &messages.Failure{Code: messages.CodeInvalidJSON, Detail: detail}
		case http.StatusServiceUnavailable:
			return &messages.Failure{Code: messages.CodeServiceUnavailable, Detail: detail}
		}
	}
	return &messages.Failure{Code: "internal", Detail: err.Error()}
}
