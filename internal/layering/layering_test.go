package layering

import (
	"go/build"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// rules: no package under dir may import a package with one of the
// forbidden prefixes; with tests, its tests may not either.
var rules = []struct {
	dir       string
	forbidden []string
	tests     bool
	why       string
}{
	// The gateway's tests too: fixtures that must write a grain's journal
	// by hand come from testkit/fixtures.
	{"http", []string{"granary/actors"}, true, "the gateway calls grains through cluster/grains and declares its own readers"},
	// The saga's own tests host saga grains in a test cluster, which is
	// what cluster is for.
	{"actors/saga", []string{"granary/cluster"}, false, "a saga's participants are interfaces the saga package declares"},
}

func TestLayers(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		checked := 0
		err := filepath.WalkDir(filepath.Join(root, r.dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			pkg, err := build.ImportDir(path, build.ImportComment)
			if _, noGo := err.(*build.NoGoError); noGo {
				return nil
			} else if err != nil {
				return err
			}
			checked++
			rel, _ := filepath.Rel(root, path)
			sets := [][]string{pkg.Imports}
			if r.tests {
				sets = append(sets, pkg.TestImports, pkg.XTestImports)
			}
			for _, imports := range sets {
				for _, imp := range imports {
					for _, bad := range r.forbidden {
						if imp == bad || strings.HasPrefix(imp, bad+"/") {
							t.Errorf("%s imports %s: %s", rel, imp, r.why)
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("walk %s: %v", r.dir, err)
		}
		if checked == 0 {
			t.Fatalf("no Go package found under %s: the rule checks nothing", r.dir)
		}
	}
}
