package proxy

import (
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/sony/gobreaker/v2"
)

// candidate is a target with its gateway-local state.
type candidate struct {
	target Target
	inst   *instance
}

// pick chooses among targets not excluded and not open, by the route's
// strategy. allOpen says that targets were left but every one was open.
func (p *Proxy) pick(route Route, targets []Target, excluded map[string]bool, rot *rotation, now int64) (c *candidate, allOpen bool) {
	cands := make([]candidate, 0, len(targets))
	open := 0
	for _, t := range targets {
		in := p.state.get(route.Service, t, now)
		if excluded[t.ID] {
			continue
		}
		if in.breaker.State() == gobreaker.StateOpen {
			open++
			continue
		}
		cands = append(cands, candidate{target: t, inst: in})
	}
	if len(cands) == 0 {
		return nil, open > 0
	}
	// The rotation is only even over a stable order; the registry's usually is.
	byID := func(a, b candidate) int { return strings.Compare(a.target.ID, b.target.ID) }
	if !slices.IsSortedFunc(cands, byID) {
		slices.SortFunc(cands, byID)
	}
	switch route.Strategy {
	case StrategyRandom:
		return &cands[rand.IntN(len(cands))], false
	case StrategyLeastConnections:
		// Ties rotate, so equal loads still spread instead of piling on the first.
		best := cands[:0:0]
		var min int64
		for _, c := range cands {
			n := p.cfg.Counts.Total(c.target.ID)
			switch {
			case len(best) == 0 || n < min:
				best, min = append(best[:0], c), n
			case n == min:
				best = append(best, c)
			}
		}
		return &best[rot.next.Add(1)%uint64(len(best))], false
	default:
		return &cands[(rot.next.Add(1)-1)%uint64(len(cands))], false
	}
}
