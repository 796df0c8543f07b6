package account

import "granary/messages"

// Event type names as stored in the journal. They never change once written.
const (
	TypeAccountOpened  = "AccountOpened"
	TypeMoneyDeposited = "MoneyDeposited"
	TypeMoneyWithdrawn = "MoneyWithdrawn"
	TypeAccountClosed  = "AccountClosed"
)

// TypeOf is the one place that names an event for the journal.
func TypeOf(ev *messages.AccountEvent) string {
	switch ev.GetEvent().(type) {
	case *messages.AccountEvent_Opened:
		return TypeAccountOpened
	case *messages.AccountEvent_Deposited:
		return TypeMoneyDeposited
	case *messages.AccountEvent_Withdrawn:
		return TypeMoneyWithdrawn
	case *messages.AccountEvent_Closed:
		return TypeAccountClosed
	default:
		return ""
	}
}

// Apply folds one stored event into the state. It trusts the event: the
// rules were checked by Decide before the event was stored, and a stored
// event is a fact.
func Apply(s State, id string, ev *messages.AccountEvent) State {
	at := ev.GetOccurredAtUnixMs()
	switch e := ev.GetEvent().(type) {
	case *messages.AccountEvent_Opened:
		s.ID = id
		s.Number = e.Opened.GetAccountNumber()
		s.Owner = e.Opened.GetOwner()
		s.OwnerName = e.Opened.GetOwnerName()
		s.Balance = e.Opened.GetInitialBalance()
		s.OpenedAtMs = at
	case *messages.AccountEvent_Deposited:
		s.Balance += e.Deposited.GetAmount()
	case *messages.AccountEvent_Withdrawn:
		s.Balance -= e.Withdrawn.GetAmount()
	case *messages.AccountEvent_Closed:
		s.Closed = true
	}
	s.Version++
	s.LastActivityMs = at
	return s
}
