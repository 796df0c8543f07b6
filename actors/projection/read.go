package projection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"granary/actors/account"
	"granary/persistence"
)

// Reader is what reading a read model needs; persistence.Store is one.
type Reader interface {
	persistence.ReadModels
	PartitionOf(stream string) int
}

// ErrNotCaughtUp: the read model did not reach the wanted version in time.
var ErrNotCaughtUp = errors.New("read model has not caught up")

// readTimeout bounds each storage call of a read.
const readTimeout = 3 * time.Second

// GetSummary reads the AccountSummary of accountID from the live
// generation; ok is false when the read model has none (unknown account,
// or not projected yet). Errors are storage trouble.
func GetSummary(ctx context.Context, r Reader, accountID string) (s Summary, ok bool, err error) {
	if err := persistence.CheckDocKey(accountID); err != nil {
		return Summary{}, false, fmt.Errorf("summary of %q: %w", accountID, err)
	}
	p := r.PartitionOf(account.StreamFor(accountID))
	var gen uint64
	// A rebuild's swap can retire the generation between reading the meta
	// and the document (a reader stalled longer than RetireGrace): when
	// the document is missing and the generation moved, read again.
	for range 3 {
		cctx, cancel := context.WithTimeout(ctx, readTimeout)
		meta, err := r.ProjectionMeta(cctx, AccountSummaryName)
		cancel()
		if err != nil {
			return Summary{}, false, fmt.Errorf("summary of %s: %w", accountID, err)
		}
		if meta.Current == gen {
			return Summary{}, false, nil
		}
		gen = meta.Current
		ref := persistence.ReadModelRef{Projection: AccountSummaryName, Generation: gen, Partition: p}
		cctx, cancel = context.WithTimeout(ctx, readTimeout)
		docs, err := r.ReadDocs(cctx, ref, []string{accountID})
		cancel()
		if err != nil {
			return Summary{}, false, fmt.Errorf("summary of %s: %w", accountID, err)
		}
		if docs[0] != nil {
			s, err := decodeSummary(accountID, docs[0])
			if err != nil {
				return Summary{}, false, err
			}
			return s, true, nil
		}
	}
	return Summary{}, false, nil
}

// Backoff of WaitForVersion: from the first to the largest pause.
const (
	waitFirst = 2 * time.Millisecond
	waitMax   = 100 * time.Millisecond
)

// WaitForVersion polls the AccountSummary of accountID until it has folded
// minVersion (read-your-writes after a command that answered version
// minVersion), with a backoff from 2ms to 100ms, until ctx ends. On
// timeout it returns an error matching both ErrNotCaughtUp and ctx's
// error (the gateway answers 504); when the last read failed on storage,
// that error instead (503). A summary not there yet (the account was just
// opened) is waited for like an old one.
func WaitForVersion(ctx context.Context, r Reader, accountID string, minVersion uint64) (Summary, error) {
	pause := waitFirst
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		s, ok, err := GetSummary(ctx, r, accountID)
		switch {
		case errors.Is(err, persistence.ErrInvalid):
			return Summary{}, err
		case err == nil && ok && s.Version >= minVersion:
			return s, nil
		}
		if timer == nil {
			timer = time.NewTimer(pause)
		} else {
			timer.Reset(pause)
		}
		select {
		case <-ctx.Done():
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				return Summary{}, fmt.Errorf("summary of %s: storage failing while waiting for version %d: %w", accountID, minVersion, err)
			}
			return s, fmt.Errorf("summary of %s at version %d, want %d: %w: %w", accountID, s.Version, minVersion, ErrNotCaughtUp, ctx.Err())
		case <-timer.C:
		}
		pause = min(2*pause, waitMax)
	}
}
