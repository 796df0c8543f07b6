// Package logx owns how libraries' logs join Granary's: go-redis's printf
// lines become structured records, and a line a library repeats (Proto.Actor
// logs an unreachable static peer every second) is written once per window
// with a count of the copies it stood for.
package logx

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Dedupe passes records to h, except that a record whose level and message
// were written in the last window is counted instead; the first one after
// the window carries "repeated": how many were left out. Records below
// minLevel pass untouched (debug lines are asked for). It remembers at most
// maxKeys messages, forgetting them all when full, so a library printing
// endless distinct messages costs a bounded map and, at worst, repeats.
func Dedupe(h slog.Handler, minLevel slog.Level, window time.Duration, maxKeys int) slog.Handler {
	return &dedupe{h: h, min: minLevel, st: &dedupeState{window: window, max: maxKeys, seen: map[dedupeKey]*seen{}, now: time.Now}}
}

type dedupeKey struct {
	level slog.Level
	msg   string
}

type seen struct {
	first time.Time
	left  int // records counted instead of written since first
}

type dedupeState struct {
	mu     sync.Mutex
	window time.Duration
	max    int
	seen   map[dedupeKey]*seen
	now    func() time.Time
}

type dedupe struct {
	h   slog.Handler
	min slog.Level
	st  *dedupeState // shared by the handlers WithAttrs and WithGroup derive
}

func (d *dedupe) Enabled(ctx context.Context, l slog.Level) bool { return d.h.Enabled(ctx, l) }

func (d *dedupe) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < d.min {
		return d.h.Handle(ctx, r)
	}
	repeated, write := d.st.admit(dedupeKey{r.Level, r.Message})
	if !write {
		return nil
	}
	if repeated > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("repeated", repeated))
	}
	return d.h.Handle(ctx, r)
}

// admit reports whether to write a record of k now, and how many of its
// copies were left out since the last one written.
func (s *dedupeState) admit(k dedupeKey) (repeated int, write bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if e, ok := s.seen[k]; ok {
		if now.Sub(e.first) < s.window {
			e.left++
			return 0, false
		}
		repeated = e.left
		e.first, e.left = now, 0
		return repeated, true
	}
	if len(s.seen) >= s.max {
		clear(s.seen)
	}
	s.seen[k] = &seen{first: now}
	return 0, true
}

func (d *dedupe) WithAttrs(as []slog.Attr) slog.Handler {
	return &dedupe{h: d.h.WithAttrs(as), min: d.min, st: d.st}
}

func (d *dedupe) WithGroup(name string) slog.Handler {
	return &dedupe{h: d.h.WithGroup(name), min: d.min, st: d.st}
}

// Redis adapts l to go-redis's logger (redis.SetLogger): its lines are
// about connections and pools going wrong, so they are warnings, tagged
// lib=go-redis.
func Redis(l *slog.Logger) RedisLogger { return RedisLogger{l.With("lib", "go-redis")} }

// RedisLogger is go-redis's Logging over slog.
type RedisLogger struct{ l *slog.Logger }

// Printf implements go-redis's internal.Logging.
func (r RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.Log(ctx, slog.LevelWarn, fmt.Sprintf(format, v...))
}
