package persistence

import "context"

// StreamLoader is implemented by stores that read what an activation
// needs, a stream's latest snapshot and the events after it, in one round
// trip where LoadSnapshot and then ReadStream take two. Wrappers of a Store
// implement it by calling LoadStream on what they wrap.
type StreamLoader interface {
	// LoadStream returns what LoadSnapshot returns and then what
	// ReadStream(stream, snap.Version (0 without a snapshot), limit) does.
	LoadStream(ctx context.Context, stream string, limit int) (snap Snapshot, ok bool, events []Event, err error)
}

// LoadStream is s's LoadStream when it has one, else LoadSnapshot and then
// ReadStream.
func LoadStream(ctx context.Context, s Store, stream string, limit int) (Snapshot, bool, []Event, error) {
	if l, ok := s.(StreamLoader); ok {
		return l.LoadStream(ctx, stream, limit)
	}
	snap, ok, err := s.LoadSnapshot(ctx, stream)
	if err != nil {
		return Snapshot{}, false, nil, err
	}
	events, err := s.ReadStream(ctx, stream, snap.Version, limit)
	if err != nil {
		return Snapshot{}, false, nil, err
	}
	return snap, ok, events, nil
}
