package logx

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"granary/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestDedupeWritesOncePerWindowWithACount(t *testing.T) {
	var buf bytes.Buffer
	h := Dedupe(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), slog.LevelInfo, 30*time.Second, 8).(*dedupe)
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	h.st.now = clk.now
	log := slog.New(h).With("lib", "protoactor")
	for range 30 { // one a second, as Proto.Actor does for a dead peer
		log.Error("failed to connect", "address", "127.0.0.1:1")
		clk.t = clk.t.Add(time.Second)
	}
	log.Error("failed to connect", "address", "127.0.0.1:1") // 30 s after the first
	log.Warn("another message")
	log.Debug("debug passes", "n", 1)
	log.Debug("debug passes", "n", 2)

	got := lines(t, &buf)
	if len(got) != 5 {
		t.Fatalf("wrote %d lines, want 5: %v", len(got), got)
	}
	if got[0]["msg"] != "failed to connect" || got[0]["repeated"] != nil || got[0]["lib"] != "protoactor" {
		t.Errorf("first line %v", got[0])
	}
	if got[1]["msg"] != "failed to connect" || got[1]["repeated"] != float64(29) {
		t.Errorf("line after the window %v, want repeated 29", got[1])
	}
	if got[2]["msg"] != "another message" || got[3]["n"] != float64(1) || got[4]["n"] != float64(2) {
		t.Errorf("other lines %v", got[2:])
	}
}

func TestDedupeForgetsWhenFull(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(Dedupe(slog.NewJSONHandler(&buf, nil), slog.LevelInfo, time.Hour, 2))
	log.Info("a")
	log.Info("b")
	log.Info("c") // full: forgets a and b
	log.Info("a")
	log.Info("a") // remembered again
	if got := lines(t, &buf); len(got) != 4 {
		t.Fatalf("wrote %d lines, want 4 (a b c a): %v", len(got), got)
	}
	h := Dedupe(slog.NewJSONHandler(&buf, nil), slog.LevelInfo, time.Hour, 2).(*dedupe)
	for i := range 100 {
		h.st.admit(dedupeKey{slog.LevelInfo, strings.Repeat("x", i)})
	}
	if n := len(h.st.seen); n > 2 {
		t.Fatalf("remembers %d messages, bound 2", n)
	}
}

func TestRedisLoggerIsStructured(t *testing.T) {
	var buf bytes.Buffer
	Redis(slog.New(slog.NewJSONHandler(&buf, nil))).Printf(context.Background(), "redis: %s: connection pool timeout", "127.0.0.1:6379")
	got := lines(t, &buf)
	if len(got) != 1 || got[0]["level"] != "WARN" || got[0]["lib"] != "go-redis" || got[0]["msg"] != "redis: 127.0.0.1:6379: connection pool timeout" {
		t.Fatalf("go-redis line %v", got)
	}
}
