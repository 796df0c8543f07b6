package account_test

import (
	"testing"

	"granary/internal/leakcheck"
	"granary/testkit"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m, testkit.LeakOptions()...)
}
