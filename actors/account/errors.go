package account

import (
	"fmt"

	"granary/messages"
)

// Error is a domain rule violation with its contract code.
type Error struct {
	code string
	msg  string
}

func (e *Error) Error() string { return e.msg }

// Code is the contract error code.
func (e *Error) Code() string { return e.code }

var (
	ErrNotFound      = &Error{messages.CodeNotFound, "account not found"}
	ErrForbidden     = &Error{messages.CodeForbidden, "not the owner of this account"}
	ErrClosed        = &Error{messages.CodeAccountClosed, "account is closed"}
	ErrAlreadyExists = &Error{messages.CodeAlreadyExists, "account number already taken"}
)

// InsufficientFundsError carries the numbers of a refused withdrawal.
type InsufficientFundsError struct {
	Balance   int64
	Requested int64
}

func (e *InsufficientFundsError) Error() string {
	return fmt.Sprintf("insufficient funds: balance %d, requested %d", e.Balance, e.Requested)
}

func (e *InsufficientFundsError) Code() string { return messages.CodeInsufficientFunds }

// VersionConflictError: If-Match named another version.
type VersionConflictError struct {
	Expected uint64
	Actual   uint64
}

func (e *VersionConflictError) Error() string {
	return fmt.Sprintf("version conflict: If-Match %d, account is at version %d", e.Expected, e.Actual)
}

func (e *VersionConflictError) Code() string { return messages.CodeVersionConflict }

// ValidationError names the field that is out of range.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

func (e *ValidationError) Code() string { return messages.CodeValidationFailed }
