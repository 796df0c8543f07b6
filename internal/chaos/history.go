// Package chaos records what clients saw while faults were injected into a
// real Granary cluster, and checks that history against the journal: per
// account linearizability (porcupine), nothing acknowledged lost, nothing
// applied that nobody asked for or that a client was told was refused, money
// conserved, every transfer finished, only statuses the contract allows.
package chaos

import "time"

// Kind is a client operation.
type Kind string

// The operations the chaos clients run.
const (
	Deposit  Kind = "deposit"
	Withdraw Kind = "withdraw"
	Read     Kind = "read"
	Transfer Kind = "transfer"
)

// Outcome is what the client finally learned about an operation, after its
// retries.
type Outcome string

const (
	// OK is a 2xx answer: applied (or, for a read, the balance).
	OK Outcome = "ok"
	// Insufficient is 409 insufficient_funds: a definite "not applied".
	Insufficient Outcome = "insufficient_funds"
	// Refused is any other definite "not applied" (a 4xx such as
	// idempotency_key_reused, 404, 422 saga_failed for a transfer).
	Refused Outcome = "refused"
	// Indeterminate is a timeout, connection error, 503, 504 or 409
	// request_in_progress that retries never resolved: it may or may not
	// have been applied.
	Indeterminate Outcome = "indeterminate"
)

// Op is one logical client operation (all attempts with one Idempotency-Key).
type Op struct {
	ID       string // also the Idempotency-Key and the event description
	Client   int
	Kind     Kind
	Account  string // deposit, withdraw, read; the source of a transfer
	To       string // transfer target
	Amount   int64
	Call     time.Time // first attempt sent
	Return   time.Time // definite answer received; zero when Indeterminate
	Outcome  Outcome
	Balance  int64  // balance in a 2xx account answer
	Status   string // final transfer status from the answer ("completed", "compensated", "started" …)
	Attempts []Attempt
}

// Attempt is one HTTP call of an operation.
type Attempt struct {
	Gateway string
	Status  int    // 0 when no answer (timeout, connection refused)
	Code    string // problem+json code, when any
	Err     string // transport error, when any
	At      time.Time
}

// Event is one journal event of an account, as GET …/events renders it.
type Event struct {
	Version     int64
	Type        string
	Amount      int64
	Description string
	TransferID  string
	Initial     int64     // AccountOpened's initial_balance
	OccurredAt  time.Time // when the grain decided it (for explaining failures)
}

// Journal is every account's events and final state after the run.
type Journal struct {
	Events    map[string][]Event // by account id
	Balances  map[string]int64   // final balance from GET /accounts/{id}
	Initial   map[string]int64   // balance each account was opened with
	Transfers map[string]string  // transfer id -> final status from GET /transfers/{id}
}

// Fault is one injected fault, for the unavailability figures.
type Fault struct {
	Kind  string // kill9, sigstop, redis-kill9, sigterm
	Start time.Time
	End   time.Time // when it was healed (process restarted / continued)
}
