package journaltest

import (
	"context"
	"fmt"
	"strings"
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

	all, next, err := s.ListSagas(ctx, persistence.SagaFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if next != nil {
		t.Fatalf("a listing of everything has a next page: %+v", next)
	}
	if len(all) != 6 || all[0].ID != "5" || all[5].ID != "0" {
		t.Fatalf("newest first: %+v", all)
	}
	if !all[5].StartedAt.Equal(t0) || all[5].Status != "completed" {
		t.Fatalf("saga 0: %+v", all[5])
	}
	orders, next, err := s.ListSagas(ctx, persistence.SagaFilter{Kinds: []string{"order"}, Statuses: []string{"started"}, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(orders) != 2 || orders[0].ID != "4" || orders[1].ID != "2" {
		t.Fatalf("filtered: %+v", orders)
	}
	// Only sagas 4 and 2 are started orders (0 completed): no next page.
	if next != nil {
		t.Fatalf("filtered listing has a next page: %+v", next)
	}
	paged, next, err := s.ListSagas(ctx, persistence.SagaFilter{Limit: 2})
	if err != nil || len(paged) != 2 || paged[0].ID != "5" || paged[1].ID != "4" || next == nil {
		t.Fatalf("first page of 2: %+v %+v %v", paged, next, err)
	}
	var ids []string
	for next != nil {
		var page []persistence.SagaRecord
		if page, next, err = s.ListSagas(ctx, persistence.SagaFilter{Limit: 2, After: next}); err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			ids = append(ids, r.ID)
		}
	}
	if strings.Join(ids, ",") != "3,2,1,0" {
		t.Fatalf("pages after the first: %v, want 3,2,1,0", ids)
	}
	// Sagas started in the same millisecond are split across pages by
	// kind/id, none repeated or skipped.
	same := t0.Add(time.Hour)
	for _, id := range []string{"a", "b", "c"} {
		put(persistence.SagaRecord{Kind: "order", ID: "same-" + id, Status: "started", StartedAt: same, UpdatedAt: same})
	}
	first, next, err := s.ListSagas(ctx, persistence.SagaFilter{Limit: 2})
	if err != nil || len(first) != 2 || first[0].ID != "same-c" || first[1].ID != "same-b" || next == nil {
		t.Fatalf("same-millisecond first page: %+v %+v %v", first, next, err)
	}
	rest, _, err := s.ListSagas(ctx, persistence.SagaFilter{Limit: 2, After: next})
	if err != nil || len(rest) != 2 || rest[0].ID != "same-a" || rest[1].ID != "5" {
		t.Fatalf("same-millisecond second page: %+v %v", rest, err)
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
