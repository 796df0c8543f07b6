package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	binMu    sync.Mutex
	binBuilt = map[string]string{}
)

// BuildBinary builds the main package pkg (an import path, such as
// "granary/cmd/granary") once per test binary and returns the executable's
// path, for tests that run the real program as a user would. The file is
// left in the temporary directory for the rest of the run.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	if bin, ok := binBuilt[pkg]; ok {
		return bin
	}
	dir, err := os.MkdirTemp("", "granary-bin")
	if err != nil {
		t.Fatalf("build %s: %v", pkg, err)
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatal(fmt.Errorf("go build %s: %v\n%s", pkg, err, out))
	}
	binBuilt[pkg] = bin
	return bin
}

// RemoveBuiltBinaries deletes what BuildBinary built; a TestMain calls it
// after m.Run.
func RemoveBuiltBinaries() {
	binMu.Lock()
	defer binMu.Unlock()
	for pkg, bin := range binBuilt {
		_ = os.RemoveAll(filepath.Dir(bin))
		delete(binBuilt, pkg)
	}
}
