package es

import "slices"

// recentCommands remembers the last N command ids, oldest evicted first. It
// bounds memory per grain while catching the duplicates that matter: cluster
// re-sends arrive within seconds of the original.
//
// It costs what it holds, not what it may hold: most grains see a handful of
// commands before they passivate (a read of an unknown id sees none), so
// preallocating room for limit ids (a 1000-entry map was ~50 KB per grain)
// let a client grow a member's heap by activating many ids. The ring grows
// on demand up to limit, and the index map exists only once the ring holds
// more than scanIDs ids: below that a scan of the ring is as fast, and a
// Go map holding one id costs ~250 B, the largest part of an idle grain
// that took one command (issue 10).
type recentCommands struct {
	// limit and head are 32-bit so they share a word: every idle grain
	// holds one of these.
	limit int32
	head  int32
	// ring holds the ids in insertion order starting at head once it is
	// full (len(ring) == limit); before that it is appended to.
	ring []string
	// seen indexes ring once it holds more than scanIDs ids; nil before.
	seen map[string]struct{}
}

// scanIDs is how many ids are looked up by scanning the ring rather than
// through the map.
const scanIDs = 16

func newRecentCommands(limit int) *recentCommands {
	return &recentCommands{limit: int32(limit)}
}

func (r *recentCommands) Has(id string) bool {
	if r.seen == nil {
		return slices.Contains(r.ring, id)
	}
	_, ok := r.seen[id]
	return ok
}

func (r *recentCommands) Add(id string) {
	if id == "" || r.limit <= 0 || r.Has(id) {
		return
	}
	if len(r.ring) < int(r.limit) {
		if len(r.ring) == cap(r.ring) {
			// Double as append would, but never past limit.
			grown := make([]string, len(r.ring), min(max(2*cap(r.ring), 1), int(r.limit)))
			copy(grown, r.ring)
			r.ring = grown
		}
		r.ring = append(r.ring, id)
		if r.seen == nil && len(r.ring) > scanIDs {
			r.seen = make(map[string]struct{}, len(r.ring))
			for _, old := range r.ring {
				r.seen[old] = struct{}{}
			}
			return
		}
	} else {
		if r.seen != nil {
			delete(r.seen, r.ring[r.head])
		}
		r.ring[r.head] = id
		r.head = (r.head + 1) % r.limit
	}
	if r.seen != nil {
		r.seen[id] = struct{}{}
	}
}

// Len is how many ids are remembered.
func (r *recentCommands) Len() int { return len(r.ring) }

// IDs returns the remembered ids, oldest first.
func (r *recentCommands) IDs() []string {
	out := make([]string, 0, len(r.ring))
	out = append(out, r.ring[r.head:]...)
	return append(out, r.ring[:r.head]...)
}
