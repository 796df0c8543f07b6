package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"granary/persistence/reminder"
	"granary/testkit"
)

func at(d time.Duration) string { return time.Now().Add(d).UTC().Format(time.RFC3339Nano) }

func TestScheduledTransferRunsAtItsTime(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	a := h.open(alice, "SCH-A", 1000)
	b := h.open(alice, "SCH-B", 0)
	when := time.Now().Add(1500 * time.Millisecond)
	var tr transferBody
	h.do("POST", "/api/v1/transfers", alice, fmt.Sprintf(`{"transfer_id":"s1","from_account":%q,"to_account":%q,"amount":300,"execute_at":%q}`,
		a.ID, b.ID, when.UTC().Format(time.RFC3339Nano))).decodeStatus(t, http.StatusAccepted, &tr)
	if tr.Status != "scheduled" || tr.ExecuteAt == "" || stepsOf(tr.Steps) != "withdraw=pending() deposit=pending() " {
		t.Fatalf("scheduled %+v", tr)
	}
	if got := h.do("GET", "/api/v1/accounts/"+a.ID, alice, "").account(t, http.StatusOK); got.Balance != 1000 {
		t.Fatalf("a scheduled transfer moved money before its time: %+v", got)
	}
	// Posting it again returns it, still scheduled.
	h.do("POST", "/api/v1/transfers", alice, fmt.Sprintf(`{"transfer_id":"s1","from_account":%q,"to_account":%q,"amount":300,"execute_at":%q}`,
		a.ID, b.ID, at(time.Hour))).decodeStatus(t, http.StatusAccepted, &tr)
	// Never before its time, about a second after it at most.
	testkit.WaitFor(t, 5*time.Second, func() error {
		h.do("GET", "/api/v1/transfers/s1", alice, "").decodeStatus(t, http.StatusOK, &tr)
		if tr.Status == "scheduled" {
			return fmt.Errorf("still scheduled")
		}
		if time.Now().Before(when) {
			t.Fatalf("ran %v before its time: %+v", time.Until(when), tr)
		}
		return nil
	})
	late := time.Since(when)
	testkit.WaitFor(t, 5*time.Second, func() error {
		h.do("GET", "/api/v1/transfers/s1", alice, "").decodeStatus(t, http.StatusOK, &tr)
		if tr.Status != "completed" {
			return fmt.Errorf("status %s", tr.Status)
		}
		return nil
	})
	if late > 1500*time.Millisecond {
		t.Fatalf("ran %v after its time", late)
	}
	if got := h.do("GET", "/api/v1/accounts/"+b.ID, alice, "").account(t, http.StatusOK); got.Balance != 300 {
		t.Fatalf("target after the scheduled transfer: %+v", got)
	}
	h.do("POST", "/api/v1/transfers/s1/cancel", alice, "").problem(t, http.StatusConflict, "version_conflict")
	t.Logf("seen running %v after its time", late)
}

func TestScheduledTransferCancel(t *testing.T) {
	h := newHarness(t)
	alice, bob := token(t, "alice"), token(t, "bob")
	a := h.open(alice, "CAN-A", 1000)
	b := h.open(bob, "CAN-B", 0)
	var tr transferBody
	h.do("POST", "/api/v1/transfers", alice, fmt.Sprintf(`{"transfer_id":"c1","from_account":%q,"to_account":%q,"amount":100,"execute_at":%q}`,
		a.ID, b.ID, at(2*time.Second))).decodeStatus(t, http.StatusAccepted, &tr)
	h.do("POST", "/api/v1/transfers/c1/cancel", bob, "").problem(t, http.StatusForbidden, "forbidden")
	h.do("POST", "/api/v1/transfers/c1/cancel", alice, "").decodeStatus(t, http.StatusOK, &tr)
	if tr.Status != "cancelled" {
		t.Fatalf("cancelled %+v", tr)
	}
	h.do("POST", "/api/v1/transfers/c1/cancel", alice, "").decodeStatus(t, http.StatusOK, &tr) // again: same answer
	h.do("POST", "/api/v1/transfers/nope/cancel", alice, "").problem(t, http.StatusNotFound, "not_found")
	// Past its time (and its timer's) it still moved nothing: its
	// reminder was dropped with the cancel.
	testkit.WaitFor(t, 5*time.Second, func() error {
		if _, ok, err := h.cluster.Member(0).Reminders().Next(context.Background(), reminder.Key{Kind: "transfer", ID: "c1"}); err != nil || ok {
			return fmt.Errorf("timer still set (%v)", err)
		}
		return nil
	})
	h.do("GET", "/api/v1/transfers/c1", alice, "").decodeStatus(t, http.StatusOK, &tr)
	if tr.Status != "cancelled" {
		t.Fatalf("after its time: %+v", tr)
	}
	if got := h.do("GET", "/api/v1/accounts/"+a.ID, alice, "").account(t, http.StatusOK); got.Balance != 1000 {
		t.Fatalf("a cancelled transfer moved money: %+v", got)
	}
	// A transfer that ran cannot be cancelled.
	h.do("POST", "/api/v1/transfers", alice, fmt.Sprintf(`{"transfer_id":"c2","from_account":%q,"to_account":%q,"amount":1}`, a.ID, b.ID)).decodeStatus(t, http.StatusCreated, &tr)
	p := h.do("POST", "/api/v1/transfers/c2/cancel", alice, "").problem(t, http.StatusConflict, "version_conflict")
	if p.Detail == "" {
		t.Fatal("409 without the transfer's status")
	}
}

func TestScheduledTransferRefusesBadTimes(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	a := h.open(alice, "BAD-A", 1000)
	b := h.open(alice, "BAD-B", 0)
	for _, when := range []string{`"tomorrow"`, `"2026-13-01T00:00:00Z"`, fmt.Sprintf("%q", at(-time.Minute)), fmt.Sprintf("%q", at(200*time.Millisecond)),
		fmt.Sprintf("%q", at(367*24*time.Hour)), `""`} {
		h.do("POST", "/api/v1/transfers", alice, fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":1,"execute_at":%s}`, a.ID, b.ID, when)).
			problem(t, http.StatusBadRequest, "validation_failed")
	}
	h.do("POST", "/api/v1/transfers", alice, fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":1,"execute_at":5}`, a.ID, b.ID)).
		problem(t, http.StatusBadRequest, "invalid_json")
	if got := h.do("GET", "/api/v1/accounts/"+a.ID, alice, "").account(t, http.StatusOK); got.Balance != 1000 {
		t.Fatalf("a refused transfer moved money: %+v", got)
	}
}

// A keyed transfer without a transfer_id is answered 202 while scheduled,
// an answer the idempotency record does not keep (it is not final). Its
// retry, same key and body, must find that transfer, not schedule a
// second one: the money moves once.
func TestKeyedScheduledTransferRetriedMovesMoneyOnce(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	a := h.open(alice, "SCHK-A", 1000)
	b := h.open(alice, "SCHK-B", 0)
	body := fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":300,"execute_at":%q}`, a.ID, b.ID, at(1500*time.Millisecond))
	var first, again transferBody
	h.do("POST", "/api/v1/transfers", alice, body, "Idempotency-Key", "sched-1").decodeStatus(t, http.StatusAccepted, &first)
	h.do("POST", "/api/v1/transfers", alice, body, "Idempotency-Key", "sched-1").decodeStatus(t, http.StatusAccepted, &again)
	if again.TransferID != first.TransferID {
		t.Fatalf("the retry scheduled transfer %s beside the first, %s", again.TransferID, first.TransferID)
	}
	// Another key is another transfer.
	var other transferBody
	h.do("POST", "/api/v1/transfers", alice, body, "Idempotency-Key", "sched-2").decodeStatus(t, http.StatusAccepted, &other)
	if other.TransferID == first.TransferID {
		t.Fatalf("another key got the same transfer %s", other.TransferID)
	}
	// The same key for another request is refused, not answered with the
	// first transfer.
	changed := fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":301,"execute_at":%q}`, a.ID, b.ID, at(time.Hour))
	h.do("POST", "/api/v1/transfers", alice, changed, "Idempotency-Key", "sched-1").problem(t, http.StatusConflict, "idempotency_key_reused")
	// Another caller's same key is their own.
	bob := token(t, "bob")
	bobsA, bobsB := h.open(bob, "SCHK-BOB-A", 50), h.open(bob, "SCHK-BOB-B", 0)
	var bobs transferBody
	h.do("POST", "/api/v1/transfers", bob, fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":20}`, bobsA.ID, bobsB.ID),
		"Idempotency-Key", "sched-1").decodeStatus(t, http.StatusCreated, &bobs)
	if bobs.TransferID == first.TransferID || bobs.Status != "completed" {
		t.Fatalf("bob's transfer under alice's key: %+v (alice's is %s)", bobs, first.TransferID)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		for _, id := range []string{first.TransferID, other.TransferID} {
			var tr transferBody
			h.do("GET", "/api/v1/transfers/"+id, alice, "").decodeStatus(t, http.StatusOK, &tr)
			if tr.Status != "completed" {
				return fmt.Errorf("%s is %s", id, tr.Status)
			}
		}
		return nil
	})
	if got := h.do("GET", "/api/v1/accounts/"+b.ID, alice, "").account(t, http.StatusOK); got.Balance != 600 {
		t.Fatalf("target after two keys' transfers of 300: balance %d, want 600", got.Balance)
	}
	// Retried once its execute_at is past, the request still finds its
	// transfer (not "execute_at: at least 1s ahead"), and the 409 told to
	// the other body under the key was not kept as this request's answer.
	var late transferBody
	h.do("POST", "/api/v1/transfers", alice, body, "Idempotency-Key", "sched-1").decodeStatus(t, http.StatusCreated, &late)
	if late.TransferID != first.TransferID || late.Status != "completed" {
		t.Fatalf("late retry = %+v, want %s completed", late, first.TransferID)
	}
}
