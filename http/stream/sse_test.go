package stream_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"granary/http/stream"
	"granary/persistence"
	"granary/persistence/memory"
	"granary/testkit"
)

type sseEvent struct{ id, event, data string }

// readEvents reads n events (skipping pings) from an SSE body.
func readEvents(t *testing.T, sc *bufio.Scanner, n int) []sseEvent {
	t.Helper()
	var out []sseEvent
	cur := sseEvent{}
	for len(out) < n && sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.event != "" {
				out = append(out, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			cur.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			cur.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			cur.data += line[6:]
		}
	}
	if len(out) < n {
		t.Fatalf("stream ended after %d of %d events: %v", len(out), n, sc.Err())
	}
	return out
}

func render(e persistence.Event) (string, []byte, error) {
	return e.Type, []byte(fmt.Sprintf(`{"v":%d}`, e.Version)), nil
}

func connect(t *testing.T, ctx context.Context, url, lastID string) (*bufio.Scanner, func()) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", res.Header.Get("Content-Type"))
	}
	return bufio.NewScanner(res.Body), func() { res.Body.Close() }
}

// Resuming with Last-Event-ID misses nothing and repeats nothing, across
// the switch from history to live events.
func TestStreamResumeMissesAndDuplicatesNothing(t *testing.T) {
	j := memory.New(1)
	appendN(t, j, "acc", 0, 5)
	tl := stream.NewTailer(j, 5*time.Millisecond, 10, testkit.Logger(t))
	run(t, tl)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		after, _ := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64)
		_ = stream.ServeStream(r.Context(), w, j, tl, "acc", after, render, stream.DefaultOptions())
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	sc, closeBody := connect(t, ctx, srv.URL, "")
	got := readEvents(t, sc, 5)
	appendN(t, j, "acc", 5, 3) // live: 6..8
	got = append(got, readEvents(t, sc, 2)...)
	cancel()
	closeBody()
	if last := got[len(got)-1].id; last != "7" {
		t.Fatalf("first connection ended at %s", last)
	}
	appendN(t, j, "acc", 8, 2) // written while disconnected: 9, 10

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	sc2, closeBody2 := connect(t, ctx2, srv.URL, "7")
	defer closeBody2()
	got = append(got, readEvents(t, sc2, 3)...) // 8, 9, 10 from the journal
	appendN(t, j, "acc", 10, 2)                 // 11, 12 live
	got = append(got, readEvents(t, sc2, 2)...)
	for i, e := range got {
		if e.id != strconv.Itoa(i+1) || e.event != "E" || e.data != fmt.Sprintf(`{"v":%d}`, i+1) {
			t.Fatalf("event %d: %+v (all: %v)", i+1, e, got)
		}
	}
}

func TestGlobalStreamIDs(t *testing.T) {
	for _, tc := range []struct {
		id    string
		parts int
		p     int
		pos   uint64
		ok    bool
	}{{"12", 1, 0, 12, true}, {"1.12", 2, 1, 12, true}, {"12", 2, 0, 0, false}, {"5.1", 2, 0, 0, false}, {"x", 1, 0, 0, false}} {
		p, pos, err := stream.ParseGlobalID(tc.id, tc.parts)
		if (err == nil) != tc.ok || (tc.ok && (p != tc.p || pos != tc.pos)) {
			t.Errorf("ParseGlobalID(%q, %d) = %d %d %v", tc.id, tc.parts, p, pos, err)
		}
	}
	if got := stream.GlobalID(persistence.Event{Partition: 1, Position: 9}, 2); got != "1.9" {
		t.Fatalf("GlobalID = %s", got)
	}
}
