package persistence_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"granary/persistence"
	"granary/persistence/memory"
)

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		cfg   persistence.BackendConfig
		field string // named in the error; empty when valid
	}{
		{persistence.BackendConfig{URL: "memory://"}, ""},
		{persistence.BackendConfig{URL: "redis://h:6379/0", Partitions: 8, KeyPrefix: "app"}, ""},
		{persistence.BackendConfig{}, "URL"},
		{persistence.BackendConfig{URL: "localhost:6379"}, "URL"},
		{persistence.BackendConfig{URL: "no-scheme"}, "URL"},
		{persistence.BackendConfig{URL: "redis://h:bad port"}, "URL"},
		{persistence.BackendConfig{URL: "memory://", Partitions: -1}, "Partitions"},
		{persistence.BackendConfig{URL: "memory://", KeyPrefix: "a{b}"}, "KeyPrefix"},
	} {
		err := c.cfg.Validate()
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%+v: %v", c.cfg, err)
		case c.field != "" && (!errors.Is(err, persistence.ErrInvalid) || !strings.Contains(err.Error(), c.field)):
			t.Errorf("%+v: err %v, want ErrInvalid naming %s", c.cfg, err, c.field)
		}
	}
	if got := (persistence.BackendConfig{URL: "memory://"}).WithDefaults().Partitions; got != 1 {
		t.Errorf("default Partitions = %d, want 1", got)
	}
}

func TestValidateDoesNotLeakPassword(t *testing.T) {
	err := persistence.BackendConfig{URL: "redis://user:hunter2@h:bad port"}.Validate()
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err %v", err)
	}
}

// The registry is process-wide, so each test uses schemes of its own.
var registerOnce sync.Once

func register() {
	registerOnce.Do(func() {
		persistence.Register("test-memory", memory.Open)
		persistence.Register("Test-Failing", func(context.Context, persistence.BackendConfig) (persistence.Store, error) {
			return nil, errors.New("boom")
		})
	})
}

func TestOpen(t *testing.T) {
	register()
	s, err := persistence.Open(t.Context(), persistence.BackendConfig{URL: "TEST-MEMORY://", Partitions: 0})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if s.Partitions() != 1 {
		t.Fatalf("Partitions() = %d, want the default 1", s.Partitions())
	}

	_, err = persistence.Open(t.Context(), persistence.BackendConfig{URL: "test-failing://x"})
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "test-failing") {
		t.Fatalf("failing opener: err %v", err)
	}

	_, err = persistence.Open(t.Context(), persistence.BackendConfig{URL: "nope://x"})
	if !errors.Is(err, persistence.ErrInvalid) || !strings.Contains(err.Error(), `"nope"`) ||
		!strings.Contains(err.Error(), "test-failing, test-memory") {
		t.Fatalf("unknown scheme: err %v, want ErrInvalid listing the registered schemes", err)
	}

	if _, err := persistence.Open(t.Context(), persistence.BackendConfig{URL: "test-memory://", Partitions: -2}); !errors.Is(err, persistence.ErrInvalid) {
		t.Fatalf("invalid config: err %v", err)
	}
}

func TestRegisterPanics(t *testing.T) {
	register()
	for name, f := range map[string]func(){
		"duplicate":            func() { persistence.Register("test-memory", memory.Open) },
		"duplicate other case": func() { persistence.Register("TEST-MEMORY", memory.Open) },
		"empty scheme":         func() { persistence.Register("", memory.Open) },
		"scheme with colon":    func() { persistence.Register("x://", memory.Open) },
		"nil opener":           func() { persistence.Register("test-nil", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Register did not panic", name)
				}
			}()
			f()
		}()
	}
	for _, s := range persistence.Schemes() {
		if s == "test-nil" || s == "x" || s == "" {
			t.Errorf("rejected scheme %q was registered", s)
		}
	}
}

func TestPartitionOfIsStable(t *testing.T) {
	// The mapping must never change once data is written: pin it.
	for _, c := range []struct {
		stream  string
		n, want int
	}{{"", 16, 5}, {"account-1", 16, 6}, {"orders/42", 16, 15}, {"", 7, 2}, {"account-1", 7, 1}, {"orders/42", 7, 2}} {
		if got := persistence.PartitionOf(c.stream, c.n); got != c.want {
			t.Errorf("PartitionOf(%q, %d) = %d, want %d", c.stream, c.n, got, c.want)
		}
	}
	for _, n := range []int{-1, 0, 1} {
		if got := persistence.PartitionOf("anything", n); got != 0 {
			t.Errorf("PartitionOf with %d partitions = %d, want 0", n, got)
		}
	}
}
