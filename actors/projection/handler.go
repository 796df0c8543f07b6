package projection

import (
	"fmt"
	"strings"

	"granary/actors/account"
	"granary/persistence"
)

// Handler is one projection's logic, pure and without I/O: which documents
// a batch of events touches, and what they become. The Driver does the
// reading, the atomic commit and the bookkeeping.
type Handler interface {
	// Name keys the projection's checkpoints and documents; it must never
	// change once data is written (persistence.ValidProjectionName).
	Name() string
	// Keys lists, without repeats, the documents that events (one
	// partition's, in position order) touch.
	Keys(events []persistence.Event) []string
	// Fold folds events into docs, which holds the current document of
	// every key Keys listed (nil when missing), and returns the writes. An
	// event it cannot fold is an error: skipping it would lose it for good.
	Fold(docs map[string][]byte, events []persistence.Event) ([]persistence.DocWrite, error)
}

// AccountSummaryName names the AccountSummary projection: its grain
// identity, its storage keys and its rebuild URL.
const AccountSummaryName = "account_summary"

// Handlers returns every projection a member runs.
func Handlers() []Handler { return []Handler{AccountSummary{}} }

// Names lists the projections' names.
func Names() []string {
	var out []string
	for _, h := range Handlers() {
		out = append(out, h.Name())
	}
	return out
}

// handlerFor returns the projection named name, or nil.
func handlerFor(name string) Handler {
	for _, h := range Handlers() {
		if h.Name() == name {
			return h
		}
	}
	return nil
}

// AccountSummary keeps a Summary per account, keyed by account id, and an
// owner index document per account (OwnerIndexPrefix), from the events of
// the account streams; other streams' events are skipped.
type AccountSummary struct{}

var _ Handler = AccountSummary{}

// Name implements Handler.
func (AccountSummary) Name() string { return AccountSummaryName }

// accountOf returns the account id of an account stream.
func accountOf(stream string) (string, bool) {
	id, ok := strings.CutPrefix(stream, account.StreamFor(""))
	return id, ok && id != ""
}

// Keys implements Handler.
func (AccountSummary) Keys(events []persistence.Event) []string {
	var keys []string
	seen := make(map[string]bool, len(events))
	add := func(k string) {
		if k != "" && !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, e := range events {
		id, ok := accountOf(e.Stream)
		if !ok {
			continue
		}
		add(id)
		if e.Type == account.TypeAccountOpened {
			// An event that does not decode adds nothing: Fold refuses it.
			if ev, err := account.DecodeEvent(e); err == nil {
				add(ownerIndexKey(ev.GetOpened().GetOwner(), id))
			}
		}
	}
	return keys
}

// Fold implements Handler.
func (AccountSummary) Fold(docs map[string][]byte, events []persistence.Event) ([]persistence.DocWrite, error) {
	sums := make(map[string]Summary, len(docs))
	for id, data := range docs {
		if data == nil || isIndexKey(id) {
			continue
		}
		s, err := decodeSummary(id, data)
		if err != nil {
			return nil, err
		}
		sums[id] = s
	}
	var changed []string // in first-change order, so writes are deterministic
	isChanged := make(map[string]bool, len(docs))
	var index []persistence.DocWrite
	for _, e := range events {
		id, ok := accountOf(e.Stream)
		if !ok {
			continue
		}
		if len(id) > persistence.MaxDocKey {
			return nil, fmt.Errorf("account stream %s@%d: id longer than %d bytes: %w", e.Stream, e.Version, persistence.MaxDocKey, persistence.ErrCorrupt)
		}
		ev, err := account.DecodeEvent(e)
		if err != nil {
			return nil, err
		}
		before := sums[id]
		after, err := Apply(before, id, e.Version, ev)
		if err != nil {
			return nil, fmt.Errorf("fold %s@%d (partition %d position %d): %w", e.Stream, e.Version, e.Partition, e.Position, err)
		}
		if after.Version != before.Version {
			if o := ev.GetOpened(); o != nil {
				if k := ownerIndexKey(o.GetOwner(), id); k != "" {
					index = append(index, persistence.DocWrite{Key: k, Data: []byte(id)})
				}
			}
			if !isChanged[id] {
				isChanged[id] = true
				changed = append(changed, id)
			}
			sums[id] = after
		}
	}
	writes := make([]persistence.DocWrite, 0, len(changed)+len(index))
	for _, id := range changed {
		data, err := encodeSummary(sums[id])
		if err != nil {
			return nil, fmt.Errorf("encode summary %s: %w", id, err)
		}
		writes = append(writes, persistence.DocWrite{Key: id, Data: data})
	}
	return append(writes, index...), nil
}
