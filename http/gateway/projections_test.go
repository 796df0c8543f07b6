package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"granary/http/gateway"
	"granary/testkit"
)

type summaryBody struct {
	AccountID        string `json:"account_id"`
	AccountNumber    string `json:"account_number"`
	OwnerName        string `json:"owner_name"`
	CurrentBalance   int64  `json:"current_balance"`
	TotalDeposits    int64  `json:"total_deposits"`
	TotalWithdrawals int64  `json:"total_withdrawals"`
	TransactionCount int64  `json:"transaction_count"`
	IsClosed         bool   `json:"is_closed"`
	LastActivity     string `json:"last_activity"`
	Version          uint64 `json:"version"`
}

type projectionStatusBody struct {
	Name       string `json:"name"`
	Position   uint64 `json:"position"`
	Head       uint64 `json:"head"`
	Lag        uint64 `json:"lag"`
	Generation uint64 `json:"generation"`
	Rebuilding bool   `json:"rebuilding"`
	// Progress of a rebuild, and the same per journal partition.
	RebuildGeneration uint64  `json:"rebuild_generation"`
	RebuildPosition   uint64  `json:"rebuild_position"`
	RebuildProgress   float64 `json:"rebuild_progress"`
	Partitions        []struct {
		Partition       int    `json:"partition"`
		Position        uint64 `json:"position"`
		Head            uint64 `json:"head"`
		Lag             uint64 `json:"lag"`
		RebuildPosition uint64 `json:"rebuild_position"`
	} `json:"partitions"`
}

func (h *harness) summary(tok, id string, minVersion uint64) summaryBody {
	h.t.Helper()
	r := h.do("GET", fmt.Sprintf("/api/v1/accounts/%s/summary?min_version=%d", id, minVersion), tok, "")
	if r.status != http.StatusOK {
		h.t.Fatalf("summary of %s at %d: %s", id, minVersion, r)
	}
	var s summaryBody
	r.decode(h.t, &s)
	return s
}

// Issue 6, Done-means 1: the seed's CQRS demo through the API. The summary
// is read from the read model, and min_version makes it read-your-writes.
func TestSeedSummaryNumbers(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	a := h.open(alice, "CQRS-1", 100000)
	base := "/api/v1/accounts/" + a.ID
	var last accountBody
	for _, s := range []struct{ path, body string }{
		{"/deposits", `{"amount":50000}`},
		{"/withdrawals", `{"amount":20000}`},
		{"/deposits", `{"amount":30000}`},
		{"/withdrawals", `{"amount":10000}`},
	} {
		last = h.do("POST", base+s.path, alice, s.body).account(t, http.StatusOK)
	}
	s := h.summary(alice, a.ID, last.Version)
	want := summaryBody{AccountID: a.ID, AccountNumber: "CQRS-1", OwnerName: "Owner of CQRS-1",
		CurrentBalance: 150000, TotalDeposits: 180000, TotalWithdrawals: 30000, TransactionCount: 5, Version: 5}
	got := s
	got.LastActivity = ""
	if got != want {
		t.Fatalf("summary %+v\nwant    %+v", got, want)
	}
	if _, err := time.Parse(time.RFC3339Nano, s.LastActivity); err != nil {
		t.Fatalf("last_activity %q: %v", s.LastActivity, err)
	}

	h.do("POST", base+"/close", alice, `{"reason":"done"}`).account(t, http.StatusOK)
	if s := h.summary(alice, a.ID, 6); !s.IsClosed || s.Version != 6 || s.CurrentBalance != 150000 {
		t.Fatalf("after close: %+v", s)
	}
	// An admin reads anyone's summary, the same one.
	if s := h.summary(token(t, "root", "admin"), a.ID, 0); s.Version != 6 || !s.IsClosed {
		t.Fatalf("admin read %+v", s)
	}
}

// A summary asked for right after opening waits for the projection rather
// than answering 404 for an account that exists.
func TestSummaryOfNewAccountWaitsForIt(t *testing.T) {
	h := newHarness(t)
	bob := token(t, "bob")
	a := h.open(bob, "NEW-1", 700)
	r := h.do("GET", "/api/v1/accounts/"+a.ID+"/summary", bob, "")
	var s summaryBody
	r.decode(t, &s)
	if r.status != http.StatusOK || s.Version < 1 || s.CurrentBalance != 700 || s.TransactionCount != 1 {
		t.Fatalf("summary right after open: %s", r)
	}
}

func TestSummaryErrors(t *testing.T) {
	h := newHarness(t, withGatewayConfig(func(c *gateway.Config) { c.SummaryWait = 300 * time.Millisecond }))
	alice, mallory := token(t, "alice"), token(t, "mallory")
	a := h.open(alice, "SUMERR-1", 10)
	h.summary(alice, a.ID, 1)
	for _, c := range []struct {
		name, path, tok string
		status          int
		code            string
	}{
		{"someone else's", "/api/v1/accounts/" + a.ID + "/summary", mallory, 403, "forbidden"},
		{"someone else's, not projected", "/api/v1/accounts/acc_000000000000000000000000/summary", mallory, 404, "not_found"},
		{"no token", "/api/v1/accounts/" + a.ID + "/summary", "", 401, "unauthorized"},
		{"min_version not a number", "/api/v1/accounts/" + a.ID + "/summary?min_version=two", alice, 400, "validation_failed"},
		{"min_version negative", "/api/v1/accounts/" + a.ID + "/summary?min_version=-1", alice, 400, "validation_failed"},
		// Version 9 never comes: the wait ends in 504, not a stale 200.
		{"min_version never reached", "/api/v1/accounts/" + a.ID + "/summary?min_version=9", alice, 504, "timeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h.as(t).do("GET", c.path, c.tok, "").problem(t, c.status, c.code)
		})
	}
}

// Issue 6, Done-means 3, through the API: a rebuild while clients write.
// Every summary read during it answers 200 and never goes back; when the
// rebuild is done, each summary equals the account as its grain has it.
func TestRebuildThroughAPIUnderWriteLoad(t *testing.T) {
	h := newHarness(t)
	admin, alice := token(t, "root", "admin"), token(t, "alice")
	const accounts = 4
	ids := make([]string, accounts)
	for i := range ids {
		ids[i] = h.open(alice, fmt.Sprintf("RB-%d", i), 1000).ID
		for range 20 {
			h.do("POST", "/api/v1/accounts/"+ids[i]+"/deposits", alice, `{"amount":5}`).account(t, http.StatusOK)
		}
		h.summary(alice, ids[i], 21)
	}

	before := h.projectionStatus(admin)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 2*accounts)
	for i, id := range ids {
		wg.Add(2)
		go func() { // writer
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				r, err := h.send("POST", "/api/v1/accounts/"+id+"/deposits", alice, `{"amount":1}`)
				if err != nil || r.status != http.StatusOK {
					errs <- fmt.Errorf("writer %d: %v %v", i, r, err)
					return
				}
			}
		}()
		go func() { // reader
			defer wg.Done()
			var seen uint64
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := h.send("GET", "/api/v1/accounts/"+id+"/summary", alice, "")
				if err != nil || r.status != http.StatusOK {
					errs <- fmt.Errorf("reader %d: %v %v", i, r, err)
					return
				}
				var s summaryBody
				if err := json.Unmarshal(r.body, &s); err != nil {
					errs <- fmt.Errorf("reader %d: %w", i, err)
					return
				}
				if s.Version < seen {
					errs <- fmt.Errorf("reader %d: summary went back from version %d to %d", i, seen, s.Version)
					return
				}
				seen = s.Version
			}
		}()
	}

	r := h.do("POST", "/api/v1/projections/account_summary/rebuild", admin, "")
	if r.status != http.StatusAccepted {
		t.Fatalf("rebuild: %s", r)
	}
	if got := r.header.Get("X-Served-By"); got != h.cluster.Member(0).ID() {
		t.Fatalf("rebuild X-Served-By %q, want %q", got, h.cluster.Member(0).ID())
	}
	testkit.WaitFor(t, 30*time.Second, func() error {
		st := h.projectionStatus(admin)
		if st.Rebuilding || st.Generation <= before.Generation {
			return fmt.Errorf("generation %d (was %d), rebuilding %v", st.Generation, before.Generation, st.Rebuilding)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, id := range ids {
		acc := h.do("GET", "/api/v1/accounts/"+id, alice, "").account(t, http.StatusOK)
		s := h.summary(alice, id, acc.Version)
		if s.Version != acc.Version || s.CurrentBalance != acc.Balance {
			t.Fatalf("%s: summary version %d balance %d, account version %d balance %d", id, s.Version, s.CurrentBalance, acc.Version, acc.Balance)
		}
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if st := h.projectionStatus(admin); st.Lag != 0 || st.Position != st.Head {
			return fmt.Errorf("position %d head %d lag %d", st.Position, st.Head, st.Lag)
		}
		return nil
	})
}

func (h *harness) projectionStatus(admin string) projectionStatusBody {
	h.t.Helper()
	r := h.do("GET", "/api/v1/projections", admin, "")
	var body struct {
		Projections []projectionStatusBody `json:"projections"`
	}
	if r.status != http.StatusOK {
		h.t.Fatalf("projections: %s", r)
	}
	r.decode(h.t, &body)
	for _, p := range body.Projections {
		if p.Name == "account_summary" {
			return p
		}
	}
	h.t.Fatalf("no account_summary in %s", r)
	return projectionStatusBody{}
}

func TestProjectionsAdminOnly(t *testing.T) {
	h := newHarness(t)
	admin, alice := token(t, "root", "admin"), token(t, "alice")
	a := h.open(alice, "PRJ-1", 1)
	h.summary(alice, a.ID, 1)
	st := h.projectionStatus(admin)
	if st.Head == 0 || st.Position > st.Head || st.Lag != st.Head-st.Position {
		t.Fatalf("status %+v", st)
	}
	h.do("GET", "/api/v1/projections", alice, "").problem(t, 403, "forbidden")
	h.do("POST", "/api/v1/projections/account_summary/rebuild", alice, "").problem(t, 403, "forbidden")
	h.do("POST", "/api/v1/projections/no_such/rebuild", admin, "").problem(t, 404, "not_found")
}
