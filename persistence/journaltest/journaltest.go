// Package journaltest is the conformance suite of persistence.Store. Every
// backend runs it, so "same semantics" is a tested claim, not a hope.
package journaltest

import (
	"context"
	"testing"

	"granary/persistence"
)

// NewStore returns an empty, open store with the given partition count.
// It must register any cleanup the backend needs with t.Cleanup; the suite
// closes the store itself (Close must be idempotent).
type NewStore func(t *testing.T, partitions int) persistence.Store

type suiteCase struct {
	name       string
	partitions int
	run        func(t *testing.T, s persistence.Store)
}

// Run runs every conformance test as a subtest of t, each on a fresh store.
func Run(t *testing.T, newStore NewStore) {
	var cases []suiteCase
	cases = append(cases, appendCases()...)
	cases = append(cases, fenceCases()...)
	cases = append(cases, concurrencyCases()...)
	cases = append(cases, partitionCases()...)
	cases = append(cases, snapshotCases()...)
	cases = append(cases, sizeCases()...)
	cases = append(cases, lifecycleCases()...)
	cases = append(cases, sagaIndexCases()...)
	cases = append(cases, readModelCases()...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t, c.partitions)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			c.run(t, s)
		})
	}
}

// ctx is the context of a test step; backends must honour it, and tests
// have no reason to cancel it.
func ctx(t *testing.T) context.Context { return t.Context() }
