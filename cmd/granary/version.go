package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"granary/metrics"
)

// printVersion writes what a bug report needs to pin a binary down: the
// module and its version, the commit it was built from (and whether the
// tree had uncommitted changes), and the Go toolchain. bi is nil when the
// binary carries no build information (built without module support).
func printVersion(w io.Writer, bi *debug.BuildInfo) {
	b := metrics.BuildOf(bi)
	fmt.Fprintf(w, "%s %s\n", b.Path, b.Version)
	switch {
	case b.Revision == "":
		// go run and go test do not stamp VCS settings.
		fmt.Fprintln(w, "commit:  unknown (built without VCS information)")
	default:
		dirty := ""
		if b.Modified {
			dirty = " (dirty: uncommitted changes)"
		}
		fmt.Fprintf(w, "commit:  %s%s\n", b.Revision, dirty)
		if b.Time != "" {
			fmt.Fprintf(w, "time:    %s\n", b.Time)
		}
	}
	fmt.Fprintf(w, "go:      %s %s\n", b.GoVersion, b.Platform)
}

func buildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return bi
}
