package memory_test

import (
	"testing"

	"granary/internal/leakcheck"
	"granary/persistence"
	"granary/persistence/journaltest"
	"granary/persistence/memory"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func TestConformance(t *testing.T) {
	journaltest.Run(t, func(t *testing.T, partitions int) persistence.Store {
		return memory.New(partitions)
	})
}

func TestOpen(t *testing.T) {
	s, err := memory.Open(t.Context(), persistence.BackendConfig{URL: "memory://", Partitions: 3})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if s.Partitions() != 3 {
		t.Fatalf("Partitions() = %d, want 3", s.Partitions())
	}
	s, err = memory.Open(t.Context(), persistence.BackendConfig{URL: "memory://"})
	if err != nil || s.Partitions() != 1 {
		t.Fatalf("Open with default partitions: %v, %v", s, err)
	}
	defer s.Close()
}
