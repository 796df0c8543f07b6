package registry

import (
	"testing"

	"go.uber.org/goleak"
)

// The watcher runs a polling goroutine; every test must leave none behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
