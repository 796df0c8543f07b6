package registry

import (
	"testing"

	"granary/internal/leakcheck"
)

// The watcher runs a polling goroutine; every test must leave none behind.
func TestMain(m *testing.M) { leakcheck.Main(m) }
