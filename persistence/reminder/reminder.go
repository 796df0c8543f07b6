// Package reminder owns the cluster's durable timers: a grain, named by its
// kind and identity, asks to be woken at a time, under a timer name when it
// keeps several; the schedule lives in a Store (Redis in production, split
// into partitions like the journal) so that it outlives any one member; and
// every member runs a Poller that claims due reminders and wakes their
// grains.
//
// Delivery is at least once. A claim leases the reminder for a while instead
// of removing it, so a member that dies between claiming and waking leaves
// the reminder to fire again elsewhere once the lease ends; the price is that
// a slow or lost wake can be repeated. A woken grain must therefore treat a
// wake as "look at your deadlines", and it must re-arm (Set) or Cancel its
// reminder itself: a reminder whose grain does neither keeps firing once per
// lease.
//
// Times are kept to the millisecond, and "due" is judged by the claiming
// member's clock, so members' clock skew moves firings by that much.
package reminder

import (
	"context"
	"fmt"
	"strings"
	"time"

	"granary/persistence"
)

// Key names one timer of one grain: a grain may keep several, told apart by
// Name (Orleans' reminder names); the empty Name is its default timer.
type Key struct{ Kind, ID, Name string }

func (k Key) String() string {
	if k.Name == "" {
		return k.Kind + "/" + k.ID
	}
	return k.Kind + "/" + k.ID + "#" + k.Name
}

// Due is a claimed reminder: At is the time it was scheduled for.
type Due struct {
	Key
	At time.Time
}

// MaxPartLen bounds Key.Kind, Key.ID and Key.Name in bytes, so that a member of the
// schedule stays small whatever a caller passes.
const MaxPartLen = 512

// Store keeps the schedule: at most one time per Key. Implementations are
// safe for concurrent use. Every method honours ctx. A method refusing its
// arguments reports an error wrapping persistence.ErrInvalid; any other
// error leaves the outcome unknown (the write may or may not have happened).
type Store interface {
	// Set schedules key to be woken at at, replacing any earlier schedule of
	// key (a pending lease included). at is kept to the millisecond; a time
	// already past fires at the next claim. It reports ErrInvalid for an
	// invalid key or a zero at.
	Set(ctx context.Context, key Key, at time.Time) error
	// Cancel removes key's schedule (no error when there is none).
	Cancel(ctx context.Context, key Key) error
	// Claim returns up to limit reminders due at or before now, oldest first
	// (ties by kind, id, then name; a partitioned store may leave an older
	// one of another partition for the next claim when more than limit are
	// due), and atomically moves each one's schedule to
	// now+lease, so that no other claimer takes it before the lease ends; the
	// woken grain's own Set/Cancel then replaces that. A claimer that dies
	// leaves the reminder to fire again after lease. It reports ErrInvalid
	// for a lease under a millisecond or a limit below 1.
	Claim(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Due, error)
	// Next returns key's schedule (ok false when none): for tests and
	// operators.
	Next(ctx context.Context, key Key) (at time.Time, ok bool, err error)
	// Len counts scheduled reminders.
	Len(ctx context.Context) (int64, error)
}

// validKey refuses what cannot be encoded unambiguously or would let a
// caller grow one member without bound.
func validKey(k Key) error {
	for _, part := range [...]struct{ name, v string }{{"kind", k.Kind}, {"id", k.ID}, {"name", k.Name}} {
		switch {
		case part.v == "" && part.name != "name":
			return fmt.Errorf("reminder %q: empty %s: %w", k, part.name, persistence.ErrInvalid)
		case len(part.v) > MaxPartLen:
			return fmt.Errorf("reminder %.64q…: %s is %d bytes, over %d: %w", k, part.name, len(part.v), MaxPartLen, persistence.ErrInvalid)
		case strings.IndexByte(part.v, 0) >= 0:
			return fmt.Errorf("reminder %q: %s contains NUL: %w", k, part.name, persistence.ErrInvalid)
		}
	}
	return nil
}

func validSet(k Key, at time.Time) error {
	if err := validKey(k); err != nil {
		return err
	}
	if at.IsZero() {
		// A zero time is almost always a forgotten field, not a wish to fire
		// at once.
		return fmt.Errorf("reminder %q: zero time: %w", k, persistence.ErrInvalid)
	}
	return nil
}

func validClaim(lease time.Duration, limit int) error {
	if lease < time.Millisecond {
		return fmt.Errorf("claim: lease %v under 1ms: %w", lease, persistence.ErrInvalid)
	}
	if limit < 1 {
		return fmt.Errorf("claim: limit %d below 1: %w", limit, persistence.ErrInvalid)
	}
	return nil
}

// member encodes a key as one string: kind NUL id, then NUL name unless the
// name is empty (so a default timer is stored as it was before timers had
// names). NUL cannot occur in any part, so the encoding is unambiguous, and
// byte order of members is (kind, id, name) order, which both stores use to
// break ties.
func member(k Key) string {
	if k.Name == "" {
		return k.Kind + "\x00" + k.ID
	}
	return k.Kind + "\x00" + k.ID + "\x00" + k.Name
}

func parseMember(m string) (Key, error) {
	kind, rest, ok := strings.Cut(m, "\x00")
	id, name, named := strings.Cut(rest, "\x00")
	if !ok || kind == "" || id == "" || (named && name == "") {
		return Key{}, fmt.Errorf("reminder member %q: not kind NUL id [NUL name]", m)
	}
	return Key{Kind: kind, ID: id, Name: name}, nil
}
