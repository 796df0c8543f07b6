// Package projection builds read models from the journal. A projection
// (AccountSummary) folds every journal partition's events, from its
// checkpoint on, into documents, and commits each batch together with the
// new checkpoint in one compare-and-set (persistence.ReadModels), so a
// crash never applies an event twice or skips one, and two instances
// running at once cannot both apply.
//
// Each projection runs as one grain (kind Kind, identity = its name) that
// drives itself with a timer and never passivates; every member's Keeper
// pings it so it comes back on whichever member owns it after a crash. The
// fold (summary.go, handler.go) is pure; the Driver is the I/O around it.
package projection

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"granary/messages"
	"granary/persistence"
)

// Kind is the cluster kind name of projection grains.
const Kind = messages.ProjectionKind

// Settings are a projection's tunables; DefaultSettings has them all.
type Settings struct {
	// BatchSize is how many events one commit folds (at most
	// persistence.MaxDocBatch, since each may touch a document).
	BatchSize int
	// PollInterval is how long a caught-up projection waits before it
	// looks at the journal again: the floor of its lag.
	PollInterval time.Duration
	// StepBudget bounds the work between two looks at the grain's mailbox,
	// so pings and rebuild requests are answered during a long catch-up.
	StepBudget time.Duration
	// RetireGrace is how long a swapped-out generation stays readable:
	// a reader that looked up the generation just before the swap still
	// finds its document.
	RetireGrace time.Duration
	// RetireBatch bounds the documents one delete removes.
	RetireBatch int
	// KeepAlive is how often each member pings every projection grain,
	// which (re)activates it on its owner; 0 turns the pings off.
	KeepAlive time.Duration
}

// DefaultSettings returns the settings members run with.
func DefaultSettings() Settings {
	return Settings{
		BatchSize:    500,
		PollInterval: 100 * time.Millisecond,
		StepBudget:   200 * time.Millisecond,
		RetireGrace:  10 * time.Second,
		RetireBatch:  1000,
		KeepAlive:    time.Second,
	}
}

// Validate names the first unusable field.
func (s Settings) Validate() error {
	switch {
	case s.BatchSize < 1 || s.BatchSize > persistence.MaxDocBatch:
		return fmt.Errorf("projection: BatchSize %d must be between 1 and %d", s.BatchSize, persistence.MaxDocBatch)
	case s.PollInterval <= 0:
		return fmt.Errorf("projection: PollInterval %v must be > 0", s.PollInterval)
	case s.StepBudget <= 0:
		return fmt.Errorf("projection: StepBudget %v must be > 0", s.StepBudget)
	case s.RetireGrace < 0:
		return fmt.Errorf("projection: RetireGrace %v must be >= 0", s.RetireGrace)
	case s.RetireBatch < 1 || s.RetireBatch > persistence.MaxDeleteBatch:
		return fmt.Errorf("projection: RetireBatch %d must be between 1 and %d", s.RetireBatch, persistence.MaxDeleteBatch)
	case s.KeepAlive < 0:
		return fmt.Errorf("projection: KeepAlive %v must be >= 0", s.KeepAlive)
	}
	return nil
}

// Store is what a projection reads and writes; persistence.Store is one.
type Store interface {
	persistence.Journal
	persistence.ReadModels
}

// Config is what a projection grain needs from its member.
type Config struct {
	Settings
	Store Store
	// StoreTimeout bounds each storage call.
	StoreTimeout time.Duration
	MemberID     string
	Logger       *slog.Logger
	Now          func() time.Time
}

// Validate names the first unusable field.
func (c Config) Validate() error {
	if err := c.Settings.Validate(); err != nil {
		return err
	}
	switch {
	case c.Store == nil:
		return errors.New("projection: Store is nil")
	case c.StoreTimeout <= 0:
		return fmt.Errorf("projection: StoreTimeout %v must be > 0", c.StoreTimeout)
	case c.Logger == nil || c.Now == nil:
		return errors.New("projection: Logger and Now are required")
	}
	return nil
}
