package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"granary/testkit"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testkit.RemoveBuiltBinaries()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}
