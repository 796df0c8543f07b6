// Package messages is Granary's wire contract: the protobuf messages that
// cross grain calls and the journal, and the catalogue of error codes that
// the gateway maps onto HTTP statuses.
package messages

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative account.proto counter.proto service.proto saga.proto projection.proto registry.proto

import (
	"errors"
	"fmt"
)

// Error codes of the HTTP contract. They are API: never rename one.
const (
	CodeInvalidJSON          = "invalid_json"
	CodeValidationFailed     = "validation_failed"
	CodeUnauthorized         = "unauthorized"
	CodeForbidden            = "forbidden"
	CodeNotFound             = "not_found"
	CodeRouteNotFound        = "route_not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeInsufficientFunds    = "insufficient_funds"
	CodeAccountClosed        = "account_closed"
	CodeAlreadyExists        = "already_exists"
	CodeVersionConflict      = "version_conflict"
	CodeIdempotencyReused    = "idempotency_key_reused"
	CodeRequestInProgress    = "request_in_progress"
	CodePayloadTooLarge      = "payload_too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeSagaFailed           = "saga_failed"
	CodeRateLimited          = "rate_limited"
	CodeServiceUnavailable   = "service_unavailable"
	CodeTimeout              = "timeout"
)

// Error makes a Failure usable as a Go error on the caller's side of a
// grain call.
func (f *Failure) Error() string { return f.GetCode() + ": " + f.GetDetail() }

// Fail builds a Failure with a formatted detail.
func Fail(code, format string, args ...any) *Failure {
	return &Failure{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Coder is implemented by domain errors that know their contract code.
type Coder interface {
	error
	Code() string
}

// AsFailure turns err into the Failure that crosses the wire: a Failure or a
// Coder keeps its code, anything else becomes fallback with err's text.
func AsFailure(err error, fallback string) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	var c Coder
	if errors.As(err, &c) {
		return &Failure{Code: c.Code(), Detail: c.Error()}
	}
	return &Failure{Code: fallback, Detail: err.Error()}
}
