package main

import (
	"bytes"
	"context"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionPrintsModuleCommitAndGo(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "granary", Version: "v1.4.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef"},
			{Key: "vcs.time", Value: "2026-12-02T18:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	var out bytes.Buffer
	printVersion(&out, bi)
	for _, want := range []string{
		"granary v1.4.0\n",
		"commit:  0123456789abcdef (dirty: uncommitted changes)\n",
		"time:    2026-12-02T18:00:00Z\n",
		"go:      go1.26.8 " + runtime.GOOS + "/" + runtime.GOARCH + "\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("version output lacks %q:\n%s", want, out.String())
		}
	}

	bi.Settings[2].Value = "false"
	out.Reset()
	printVersion(&out, bi)
	if strings.Contains(out.String(), "dirty") {
		t.Errorf("clean tree reported dirty:\n%s", out.String())
	}
}

func TestVersionWithoutBuildInfo(t *testing.T) {
	var out bytes.Buffer
	printVersion(&out, nil)
	want := "granary (devel)\ncommit:  unknown (built without VCS information)\ngo:      " +
		runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestVersionCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"version"}, env(nil), &stdout, &stderr); err != nil {
		t.Fatalf("granary version: %v (stderr %s)", err, stderr.String())
	}
	// A test binary's main module is this one, built without VCS stamps.
	if first, _, _ := strings.Cut(stdout.String(), "\n"); !strings.HasPrefix(first, "granary ") {
		t.Fatalf("first line %q, want the module path", first)
	}
	if !strings.Contains(stdout.String(), "go:      "+runtime.Version()) {
		t.Fatalf("no Go version in:\n%s", stdout.String())
	}
}
