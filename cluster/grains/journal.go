package grains

import (
	"context"
	"errors"
	"fmt"

	"granary/actors/account"
	"granary/messages"
	"granary/persistence"
)

// AccountJournal reads accounts' events straight from the journal,
// without their grains.
type AccountJournal struct{ Journal persistence.Journal }

// AccountStream is the journal stream of account id.
func (AccountJournal) AccountStream(id string) string { return account.StreamFor(id) }

// DecodeAccountEvent reads an account event; an event this release
// cannot read is an error matching persistence.ErrCorrupt.
func (AccountJournal) DecodeAccountEvent(e persistence.Event) (*messages.AccountEvent, error) {
	return account.DecodeEvent(e)
}

// ErrUnreadableEvent marks a stored event that was read but that this
// release cannot decode (damaged, or written by a newer release), as
// opposed to a journal that could not be read.
var ErrUnreadableEvent = errors.New("unreadable journal event")

// maxFoldBatch bounds each journal read of AccountAt.
const maxFoldBatch = 1000

// AccountAt folds the journal of account id up to version n: the account
// right after event n. Errors: the journal's own (wrapped), a decode error
// matching ErrUnreadableEvent and persistence.ErrCorrupt, or a CodeServiceUnavailable failure
// when the journal ends before n.
func (j AccountJournal) AccountAt(ctx context.Context, id string, n uint64) (*messages.AccountState, error) {
	var s account.State
	for s.Version < n {
		batch, err := j.Journal.ReadStream(ctx, account.StreamFor(id), s.Version, int(min(n-s.Version, maxFoldBatch)))
		if err != nil {
			return nil, fmt.Errorf("read %s after %d: %w", id, s.Version, err)
		}
		if len(batch) == 0 {
			return nil, messages.Fail(messages.CodeServiceUnavailable, "journal of %s ends before version %d", id, n)
		}
		for _, e := range batch {
			ev, err := account.DecodeEvent(e)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrUnreadableEvent, err)
			}
			s = account.Apply(s, id, ev)
		}
	}
	return s.ToProto(), nil
}
