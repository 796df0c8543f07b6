package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"granary/http/gateway"
	"granary/testkit"
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

// streamStatus opens a stream only as far as its headers and ends it:
// the status a client gets, and whether it carries Retry-After.
func (h *harness) streamStatus(t *testing.T, path, tok string) (status int, retryAfter string) {
	t.Helper()
	a := headersOf(t, h, http.MethodGet, path, tok)
	return a.status, a.header.Get("Retry-After")
}

// Issue 9, item 4: one subject holds at most 8 streams; the 9th is 429
// with Retry-After while other users and admins still get theirs, and a
// closed stream gives its slot back.
func TestStreamsPerSubjectCap(t *testing.T) {
	h := newHarness(t)
	alice, bob, admin := token(t, "alice"), token(t, "bob"), token(t, "root", "admin")
	acc := h.open(alice, "CAP-1", 1)
	path := "/api/v1/accounts/" + acc.ID + "/events/stream"
	var stops []func()
	for range 8 {
		_, stop := h.openStream(t, path, alice, "")
		stops = append(stops, stop)
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	if status, retry := h.streamStatus(t, path, alice); status != http.StatusTooManyRequests || retry == "" {
		t.Fatalf("alice's 9th stream: %d, Retry-After %q; want 429 with Retry-After", status, retry)
	}
	r := h.do("GET", path, alice, "") // a refusal is a problem like any other
	r.problem(t, http.StatusTooManyRequests, "rate_limited")
	bobAcc := h.open(bob, "CAP-2", 1)
	if status, _ := h.streamStatus(t, "/api/v1/accounts/"+bobAcc.ID+"/events/stream", bob); status != http.StatusOK {
		t.Fatalf("bob's stream while alice is at her cap: %d", status)
	}
	if status, _ := h.streamStatus(t, "/api/v1/stream", admin); status != http.StatusOK {
		t.Fatalf("admin stream while alice is at her cap: %d", status)
	}
	stops[0]()
	stops = stops[1:]
	testkit.WaitFor(t, 5*time.Second, func() error {
		if status, _ := h.streamStatus(t, path, alice); status != http.StatusOK {
			return fmt.Errorf("stream: %d, want %d", status, http.StatusOK)
		}
		return nil
	})
}

// Issue 9, item 4: a client that stops reading is cut once a write has
// not gone through for StreamWriteTimeout, and so gives its slot back.
// The connection's buffers are made small, and heartbeats frequent, so
// that they fill in well under a second.
func TestStreamCutsClientThatDoesNotRead(t *testing.T) {
	h := newHarness(t, withGatewayConfig(func(c *gateway.Config) {
		c.StreamsPerSubject = 1
		// Long enough that the test sees the slot held before the cut.
		c.StreamWriteTimeout = time.Second
		c.StreamHeartbeat = 200 * time.Microsecond
	}))
	alice := token(t, "alice")
	acc := h.open(alice, "IDLE-1", 1)
	path := "/api/v1/accounts/" + acc.ID + "/events/stream"

	srv := httptest.NewUnstartedServer(h.gw.Handler())
	srv.Listener = smallSendBuffers{srv.Listener}
	srv.Start()
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.(*net.TCPConn).SetReadBuffer(1024); err != nil {
		t.Fatal(err)
	}
	// Ask for the stream, read its status line and headers byte by byte
	// (so as to take nothing more), then never read again.
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: granary\r\nAuthorization: Bearer %s\r\n\r\n", path, alice)
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var head []byte
	for !strings.HasSuffix(string(head), "\r\n\r\n") {
		b := make([]byte, 1)
		if _, err := conn.Read(b); err != nil {
			t.Fatalf("stream headers: %v after %q", err, head)
		}
		head = append(head, b[0])
	}
	if !strings.HasPrefix(string(head), "HTTP/1.1 200 ") {
		t.Fatalf("stream: %q", head)
	}
	start := time.Now()
	// The stream holds alice's one slot ...
	if status, _ := h.streamStatus(t, path, alice); status != http.StatusTooManyRequests {
		t.Fatalf("alice's second stream while the first is open: %d, want 429", status)
	}
	// ... until its writes stall for a second; without the write deadline
	// it would hold it for as long as the client likes.
	testkit.WaitFor(t, 15*time.Second, func() error {
		if status, _ := h.streamStatus(t, path, alice); status != http.StatusOK {
			return fmt.Errorf("stream: %d, want %d", status, http.StatusOK)
		}
		return nil
	})
	t.Logf("idle client cut within %v of its headers", time.Since(start).Round(time.Millisecond))
}

type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		err = c.(*net.TCPConn).SetWriteBuffer(1024)
	}
	return c, err
}

// A client that reads is never cut, however long the stream is idle:
// heartbeats go through and renew the write deadline.
func TestStreamKeepsClientThatReads(t *testing.T) {
	h := newHarness(t, withGatewayConfig(func(c *gateway.Config) {
		c.StreamWriteTimeout = 300 * time.Millisecond
		c.StreamHeartbeat = 50 * time.Millisecond
	}))
	alice := token(t, "alice")
	acc := h.open(alice, "READ-1", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/api/v1/accounts/"+acc.ID+"/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header.Set("Last-Event-ID", "1")
	res, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	// 20 heartbeats span 1 s: more than three write timeouts.
	for pings := 0; pings < 20; {
		if !sc.Scan() {
			t.Fatalf("stream ended after %d heartbeats: %v", pings, sc.Err())
		}
		if sc.Text() == ": ping" {
			pings++
		}
	}
	h.do("POST", "/api/v1/accounts/"+acc.ID+"/deposits", alice, `{"amount":1}`).account(t, http.StatusOK)
	for sc.Scan() {
		if sc.Text() == "event: MoneyDeposited" {
			return
		}
	}
	t.Fatalf("stream ended before the deposit's event: %v", sc.Err())
}

// A stream sends its status and headers at once, before any event: a
// client with nothing to catch up on still learns it is connected.
func TestStreamSendsHeadersAtOnce(t *testing.T) {
	h := newHarness(t) // heartbeats every 15 s: none within the test
	alice := token(t, "alice")
	acc := h.open(alice, "HDRS-1", 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/api/v1/accounts/"+acc.ID+"/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header.Set("Last-Event-ID", "1") // caught up: no event to send
	got := make(chan *http.Response, 1)
	go func() {
		res, err := h.srv.Client().Do(req)
		if err != nil {
			close(got)
			return
		}
		got <- res
	}()
	select {
	case res, ok := <-got:
		if !ok {
			t.Fatal("stream request failed")
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no headers within 3 s of opening a stream with no event to send")
	}
}
