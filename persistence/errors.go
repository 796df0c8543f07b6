package persistence

import "errors"

// ErrClosed is reported by every method of a Store after Close. It is not
// one of the outcome-unknown errors: nothing was attempted.
var ErrClosed = errors.New("store closed")
