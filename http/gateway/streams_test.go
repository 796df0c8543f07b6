package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

type sse struct{ id, event, data string }

// openStream connects to an SSE endpoint; read returns the next event
// (pings skipped) or fails the test after 10 s.
func (h *harness) openStream(t *testing.T, path, tok, lastID string) (read func() sse, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream %s: %d %s", path, res.StatusCode, res.Header.Get("Content-Type"))
	}
	events := make(chan sse, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(res.Body)
		cur := sse{}
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "" && cur.event != "":
				events <- cur
				cur = sse{}
			case strings.HasPrefix(line, "id: "):
				cur.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				cur.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				cur.data += line[6:]
			}
		}
	}()
	read = func() sse {
		t.Helper()
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
		}
		return sse{}
	}
	return read, func() {
		cancel()
		res.Body.Close()
		for range events {
		}
	}
}

// Done-means 4 of issue 6: resuming with Last-Event-ID misses and
// duplicates nothing, across history and live events.
func TestAccountStreamResumes(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	acc := h.open(alice, "SSE-1", 100)
	deposit := func(n int) {
		for range n {
			h.do("POST", "/api/v1/accounts/"+acc.ID+"/deposits", alice, `{"amount":1}`).account(t, http.StatusOK)
		}
	}
	deposit(2) // versions 2, 3
	read, stop := h.openStream(t, "/api/v1/accounts/"+acc.ID+"/events/stream", alice, "")
	var got []sse
	for range 3 {
		got = append(got, read())
	}
	deposit(2) // live: 4, 5
	got = append(got, read(), read())
	stop()
	deposit(3) // while away: 6, 7, 8
	read, stop = h.openStream(t, "/api/v1/accounts/"+acc.ID+"/events/stream", alice, got[len(got)-1].id)
	defer stop()
	for range 3 {
		got = append(got, read())
	}
	deposit(1) // live again: 9
	got = append(got, read())
	for i, e := range got {
		want := "MoneyDeposited"
		if i == 0 {
			want = "AccountOpened"
		}
		var body struct {
			Version uint64 `json:"version"`
		}
		if err := json.Unmarshal([]byte(e.data), &body); err != nil || e.id != strconv.Itoa(i+1) || e.event != want || body.Version != uint64(i+1) {
			t.Fatalf("event %d: %+v (%v)", i+1, e, err)
		}
	}
	h.do("GET", "/api/v1/accounts/"+acc.ID+"/events/stream", token(t, "mallory"), "").problem(t, http.StatusForbidden, "forbidden")
}

func TestGlobalStreamShowsEveryWriteForAdmins(t *testing.T) {
	h := newHarness(t)
	admin := token(t, "root", "admin")
	h.do("GET", "/api/v1/stream", token(t, "alice"), "").problem(t, http.StatusForbidden, "forbidden")
	acc := h.open(admin, "SSE-G", 5)
	read, stop := h.openStream(t, "/api/v1/stream", admin, "")
	defer stop()
	first := read() // recent history starts with the open
	if first.event != "AccountOpened" || !strings.Contains(first.data, acc.ID) {
		t.Fatalf("first global event %+v", first)
	}
	h.do("POST", "/api/v1/counters/g/increment", admin, "").decodeStatus(t, http.StatusOK, &map[string]any{})
	next := read()
	if next.event != "CounterIncremented" || next.id != fmt.Sprint(mustAtoi(t, first.id)+1) {
		t.Fatalf("next global event %+v after %+v", next, first)
	}
}

func mustAtoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDashboardIsServed(t *testing.T) {
	h := newHarness(t)
	r := h.do("GET", "/", "", "")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !strings.Contains(string(r.body), "/assets/app.js") {
		t.Fatalf("dashboard: %d %s", r.status, r.header.Get("Content-Type"))
	}
	for _, asset := range []string{"/assets/app.js", "/assets/style.css"} {
		if r := h.do("GET", asset, "", ""); r.status != 200 || len(r.body) < 100 {
			t.Fatalf("%s: %d", asset, r.status)
		}
	}
	h.do("GET", "/assets/nope.js", "", "").problem(t, http.StatusNotFound, "route_not_found")
}
