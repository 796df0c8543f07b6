package counter_test

import (
	"testing"

	"go.uber.org/goleak"

	"granary/testkit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testkit.LeakOptions()...)
}
