package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// printVersion writes what a bug report needs to pin a binary down: the
// module and its version, the commit it was built from (and whether the
// tree had uncommitted changes), and the Go toolchain. bi is nil when the
// binary carries no build information (built without module support).
func printVersion(w io.Writer, bi *debug.BuildInfo) {
	path, version := "granary", "(devel)"
	goVersion := runtime.Version()
	var revision, vcsTime, modified string
	if bi != nil {
		if bi.Main.Path != "" {
			path = bi.Main.Path
		}
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				vcsTime = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
	}
	fmt.Fprintf(w, "%s %s\n", path, version)
	switch {
	case revision == "":
		// go run and go test do not stamp VCS settings.
		fmt.Fprintln(w, "commit:  unknown (built without VCS information)")
	default:
		dirty := ""
		if modified == "true" {
			dirty = " (dirty: uncommitted changes)"
		}
		fmt.Fprintf(w, "commit:  %s%s\n", revision, dirty)
		if vcsTime != "" {
			fmt.Fprintf(w, "time:    %s\n", vcsTime)
		}
	}
	fmt.Fprintf(w, "go:      %s %s/%s\n", goVersion, runtime.GOOS, runtime.GOARCH)
}

func buildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return bi
}
