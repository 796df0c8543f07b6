package journaltest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"granary/persistence"
)

func sagaIndexCases() []suiteCase {
	return []suiteCase{{name: "SagaIndex", partitions: 1, run: testSagaIndex}}
}

func testSagaIndex(t *testing.T, s persistence.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	put := func(r persistence.SagaRecord) {
		t.Helper()
		if err := s.PutSaga(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		kind := "order"
		if i%2 == 1 {
			kind = "transfer"
		}
		at := t0.Add(time.Duration(i) * time.Second)
		put(persistence.SagaRecord{Kind: kind, ID: fmt.Sprint(i), Status: "started", StartedAt: at, UpdatedAt: at})
	}
	// Saga 0 finishes, saga 1 compensates; a later put keeps the first
	// StartedAt.
	put(persistence.SagaRecord{Kind: "order", ID: "0", Status: "completed", StartedAt: t0.Add(time.Hour), UpdatedAt: t0.Add(time.Minute)})
	put(persistence.SagaRecord{Kind: "transfer", ID: "1", Status: "compensating", FailedStep: "deposit", StartedAt: t0.Add(time.Second), UpdatedAt: t0.Add(2 * time.Minute)})

	all, err := s.ListSagas(ctx, persistence.SagaFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 6 || all[0].ID != "5" || all[5].ID != "0" {
		t.Fatalf("newest first: %+v", all)
	}
	if !all[5].StartedAt.Equal(t0) || all[5].Status != "completed" {
		t.Fatalf("saga 0: %+v", all[5])
	}
	orders, err := s.ListSagas(ctx, persistence.SagaFilter{Kinds: []string{"order"}, Statuses: []string{"started"}, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(orders) != 2 || orders[0].ID != "4" || orders[1].ID != "2" {
		t.Fatalf("filtered: %+v", orders)
	}
	open, err := s.OpenSagas(ctx, t0.Add(time.Minute), 10)
	if err != nil {
		t.Fatal(err)
	}
	// 0 is finished; 1 was updated after the cut-off.
	if len(open) != 4 || open[0].ID != "2" || open[3].ID != "5" {
		t.Fatalf("open: %+v", open)
	}
	if open, _ := s.OpenSagas(ctx, t0.Add(time.Hour), 2); len(open) != 2 || open[0].ID != "2" {
		t.Fatalf("open limited: %+v", open)
	}
}
