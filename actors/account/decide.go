package account

import (
	"fmt"
	"time"
	"unicode/utf8"

	"granary/messages"
)

// Decide turns a request into the events it causes, or the rule it breaks.
// It is pure: now is the caller's clock reading, stamped on the events. A
// GetAccount (or any request that changes nothing) yields no events.
func Decide(s State, req *messages.AccountRequest, now time.Time) ([]*messages.AccountEvent, error) {
	if open := req.GetOpen(); open != nil {
		return decideOpen(s, req, open, now)
	}
	if !s.Opened() {
		return nil, ErrNotFound
	}
	if c := req.GetCaller(); !c.GetAdmin() && c.GetSubject() != s.Owner {
		return nil, ErrForbidden
	}
	if req.GetCommand() == nil {
		return nil, &ValidationError{Field: "command", Reason: "missing"}
	}
	if _, isGet := req.GetCommand().(*messages.AccountRequest_Get); isGet {
		return nil, nil
	}
	if req.GetCheckVersion() && req.GetExpectedVersion() != s.Version {
		return nil, &VersionConflictError{Expected: req.GetExpectedVersion(), Actual: s.Version}
	}
	// A saga's compensation gives money back even to a closed account:
	// destroying it is worse than a deposit after closing.
	refund := req.GetDeposit().GetCompensation() && req.GetCaller().GetAdmin()
	if s.Closed && !refund {
		return nil, ErrClosed
	}
	ev := &messages.AccountEvent{CommandId: req.GetCommandId(), OccurredAtUnixMs: now.UnixMilli()}
	switch cmd := req.GetCommand().(type) {
	case *messages.AccountRequest_Deposit:
		d := cmd.Deposit
		if err := checkAmount(d.GetAmount(), d.GetDescription()); err != nil {
			return nil, err
		}
		if d.GetAmount() > MaxBalance-s.Balance {
			return nil, &ValidationError{Field: "amount", Reason: fmt.Sprintf("balance would exceed %d", MaxBalance)}
		}
		ev.Event = &messages.AccountEvent_Deposited{Deposited: &messages.MoneyDeposited{
			Amount: d.GetAmount(), Description: d.GetDescription(), TransferId: d.GetTransferId()}}
	case *messages.AccountRequest_Withdraw:
		w := cmd.Withdraw
		if err := checkAmount(w.GetAmount(), w.GetDescription()); err != nil {
			return nil, err
		}
		if w.GetAmount() > s.Balance {
			return nil, &InsufficientFundsError{Balance: s.Balance, Requested: w.GetAmount()}
		}
		ev.Event = &messages.AccountEvent_Withdrawn{Withdrawn: &messages.MoneyWithdrawn{
			Amount: w.GetAmount(), Description: w.GetDescription(), TransferId: w.GetTransferId()}}
	case *messages.AccountRequest_Close:
		if err := checkText("reason", cmd.Close.GetReason(), 0, 500); err != nil {
			return nil, err
		}
		ev.Event = &messages.AccountEvent_Closed{Closed: &messages.AccountClosed{Reason: cmd.Close.GetReason()}}
	default:
		return nil, &ValidationError{Field: "command", Reason: fmt.Sprintf("unknown command %T", cmd)}
	}
	return []*messages.AccountEvent{ev}, nil
}

func decideOpen(s State, req *messages.AccountRequest, open *messages.OpenAccount, now time.Time) ([]*messages.AccountEvent, error) {
	if s.Opened() {
		return nil, ErrAlreadyExists
	}
	if err := checkText("account_number", open.GetAccountNumber(), 1, 64); err != nil {
		return nil, err
	}
	if err := checkText("owner_name", open.GetOwnerName(), 1, 200); err != nil {
		return nil, err
	}
	if b := open.GetInitialBalance(); b < 0 || b > MaxAmount {
		return nil, &ValidationError{Field: "initial_balance", Reason: fmt.Sprintf("must be between 0 and %d", MaxAmount)}
	}
	owner := req.GetCaller().GetSubject()
	if owner == "" {
		return nil, &ValidationError{Field: "owner", Reason: "caller has no subject"}
	}
	return []*messages.AccountEvent{{
		CommandId:        req.GetCommandId(),
		OccurredAtUnixMs: now.UnixMilli(),
		Event: &messages.AccountEvent_Opened{Opened: &messages.AccountOpened{
			AccountNumber:  open.GetAccountNumber(),
			Owner:          owner,
			OwnerName:      open.GetOwnerName(),
			InitialBalance: open.GetInitialBalance(),
		}},
	}}, nil
}

func checkAmount(amount int64, description string) error {
	if amount <= 0 || amount > MaxAmount {
		return &ValidationError{Field: "amount", Reason: fmt.Sprintf("must be between 1 and %d", MaxAmount)}
	}
	return checkText("description", description, 0, 500)
}

func checkText(field, v string, min, max int) error {
	if !utf8.ValidString(v) {
		return &ValidationError{Field: field, Reason: "must be valid UTF-8"}
	}
	if n := utf8.RuneCountInString(v); n < min || n > max {
		return &ValidationError{Field: field, Reason: fmt.Sprintf("length must be between %d and %d characters", min, max)}
	}
	return nil
}
