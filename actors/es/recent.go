package es

// recentCommands remembers the last N command ids, oldest evicted first. It
// bounds memory per grain while catching the duplicates that matter: cluster
// re-sends arrive within seconds of the original.
type recentCommands struct {
	limit int
	order []string
	seen  map[string]struct{}
}

func newRecentCommands(limit int) *recentCommands {
	return &recentCommands{limit: limit, seen: make(map[string]struct{}, limit)}
}

func (r *recentCommands) Has(id string) bool {
	_, ok := r.seen[id]
	return ok
}

func (r *recentCommands) Add(id string) {
	if id == "" || r.Has(id) {
		return
	}
	if len(r.order) >= r.limit {
		delete(r.seen, r.order[0])
		r.order = r.order[1:]
	}
	r.order = append(r.order, id)
	r.seen[id] = struct{}{}
}

// IDs returns the remembered ids, oldest first.
func (r *recentCommands) IDs() []string { return append([]string(nil), r.order...) }
