package es

// recentCommands remembers the last N command ids, oldest evicted first. It
// bounds memory per grain while catching the duplicates that matter: cluster
// re-sends arrive within seconds of the original.
//
// It costs what it holds, not what it may hold: most grains see a handful of
// commands before they passivate (a read of an unknown id sees none), so
// preallocating room for limit ids (a 1000-entry map was ~50 KB per grain)
// let a client grow a member's heap by activating many ids. The ring and
// the map grow on demand up to limit.
type recentCommands struct {
	limit int
	// ring holds the ids in insertion order starting at head once it is
	// full (len(ring) == limit); before that it is appended to.
	ring []string
	head int
	seen map[string]struct{}
}

func newRecentCommands(limit int) *recentCommands {
	return &recentCommands{limit: limit}
}

func (r *recentCommands) Has(id string) bool {
	_, ok := r.seen[id]
	return ok
}

func (r *recentCommands) Add(id string) {
	if id == "" || r.Has(id) || r.limit <= 0 {
		return
	}
	if r.seen == nil {
		r.seen = make(map[string]struct{})
	}
	if len(r.ring) < r.limit {
		r.ring = append(r.ring, id)
	} else {
		delete(r.seen, r.ring[r.head])
		r.ring[r.head] = id
		r.head = (r.head + 1) % r.limit
	}
	r.seen[id] = struct{}{}
}

// Len is how many ids are remembered.
func (r *recentCommands) Len() int { return len(r.ring) }

// IDs returns the remembered ids, oldest first.
func (r *recentCommands) IDs() []string {
	out := make([]string, 0, len(r.ring))
	out = append(out, r.ring[r.head:]...)
	return append(out, r.ring[:r.head]...)
}
