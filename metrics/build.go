package metrics

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Build is what pins a binary down: its module and version, the commit it
// was built from and whether that tree had uncommitted changes, and the Go
// toolchain. `granary version` prints it; granary_build_info exports it.
type Build struct {
	Path, Version       string
	Revision, Time      string // empty when built without VCS stamping (go run, go test)
	Modified            bool
	GoVersion, Platform string
}

// BuildOf reads bi (nil: a binary without build information).
func BuildOf(bi *debug.BuildInfo) Build {
	b := Build{Path: "granary", Version: "(devel)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		return b
	}
	if bi.Main.Path != "" {
		b.Path = bi.Main.Path
	}
	if bi.Main.Version != "" {
		b.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		b.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// ThisBuild is the running binary's Build.
func ThisBuild() Build {
	bi, _ := debug.ReadBuildInfo()
	return BuildOf(bi)
}

// buildInfo is granary_build_info: always 1, the build in its labels, the
// usual way to join a version onto every other series.
func buildInfo(b Build) prometheus.Collector {
	rev := b.Revision
	if rev == "" {
		rev = "unknown"
	}
	if b.Modified {
		rev += "-dirty"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "Always 1; labels say which build this process runs.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": rev, "goversion": b.GoVersion},
	})
	g.Set(1)
	return g
}
