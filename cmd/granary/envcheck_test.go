package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
)

func TestEnvEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "abc", 3}, {"kitten", "sitting", 3},
		{"GRANARY_HTTP_ADR", "GRANARY_HTTP_ADDR", 1}, {"GRANARY_JWT_SECERT", "GRANARY_JWT_SECRET", 2},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestEnvNearestKnownName(t *testing.T) {
	known := knownEnvNames()
	for _, tc := range []struct{ typo, want string }{
		{"GRANARY_HTTP_ADR", "GRANARY_HTTP_ADDR"},
		{"GRANARY_JWT_SECERT", "GRANARY_JWT_SECRET"},
		{"GRANARY_REDIS_URI", "GRANARY_REDIS_URL"},
		{"GRANARY_CLUSTER_PEER", "GRANARY_CLUSTER_PEERS"},
		{"GRANARY_LOGLEVEL", "GRANARY_LOG_LEVEL"},
		{"GRANARY_SOMETHING_ELSE_ENTIRELY", ""}, // too far for a suggestion
	} {
		got := unknownEnv([]string{tc.typo + "=x"}, func(string) string { return "x" }, known)
		if len(got) != 1 || got[0].Name != tc.typo || got[0].Nearest != tc.want {
			t.Errorf("%s: got %+v, want nearest %q", tc.typo, got, tc.want)
		}
	}
}

func TestEnvKnownAndForeignVariablesPass(t *testing.T) {
	environ := []string{
		"GRANARY_HTTP_ADDR=127.0.0.1:0", "GRANARY_PPROF_ADDR=127.0.0.1:6060", "GRANARY_URL=http://x",
		"GRANARY_TOKEN=t", "GRANARY_REDIS_FSYNC=always", "GRANARY_CLUSTER_REDIS_PORT=1",
		"PATH=/bin", "XGRANARY_HTTP_ADR=1", "GRANARY_HTTP_ADR=", // empty: loadConfig skips it too
	}
	all := func(k string) string {
		for _, kv := range environ {
			if name, v, _ := strings.Cut(kv, "="); name == k {
				return v
			}
		}
		return ""
	}
	if got := unknownEnv(environ, all, knownEnvNames()); len(got) != 0 {
		t.Fatalf("flagged %+v", got)
	}
	// A variable the caller's getenv does not see is not the caller's.
	if got := unknownEnv([]string{"GRANARY_HTTP_ADR=1"}, env(nil), knownEnvNames()); len(got) != 0 {
		t.Fatalf("flagged %+v past getenv", got)
	}
}

func TestEnvEveryNameReadElsewhereIsNoSetting(t *testing.T) {
	for _, s := range settings(modeNode) {
		for _, n := range envReadElsewhere {
			if s.name == n {
				t.Errorf("%s is a setting; drop it from envReadElsewhere", n)
			}
		}
	}
}

func TestEnvWarningIsLogged(t *testing.T) {
	getenv := env(map[string]string{"GRANARY_HTTP_ADR": "0.0.0.0:80", "GRANARY_LOG_FORMAT": "json"})
	var buf bytes.Buffer
	warnUnknownEnv(&buf, []string{"GRANARY_HTTP_ADR=0.0.0.0:80", "GRANARY_LOG_FORMAT=json"}, getenv)
	var line struct {
		Level, Msg, Variable string
		DidYouMean           string `json:"did_you_mean"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %v\n%s", err, buf.String())
	}
	if line.Level != "WARN" || line.Variable != "GRANARY_HTTP_ADR" || line.DidYouMean != "GRANARY_HTTP_ADDR" ||
		!strings.Contains(line.Msg, "did you mean GRANARY_HTTP_ADDR") {
		t.Fatalf("got %+v", line)
	}

	buf.Reset()
	warnUnknownEnv(&buf, []string{"GRANARY_HTTP_ADDR=127.0.0.1:1"}, env(map[string]string{"GRANARY_HTTP_ADDR": "127.0.0.1:1"}))
	if buf.Len() != 0 {
		t.Fatalf("warned about a known variable: %s", buf.String())
	}
}

// The port hint lives in start, but it is what a typo in GRANARY_HTTP_ADDR
// (or a second member on the same port) ends in, so it is tested here, with
// the warning granary dev prints first.
func TestEnvPortInUseNamesGranaryHTTPAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("GRANARY_HTTP_ADR", "127.0.0.1:1")
	getenv := env(map[string]string{"GRANARY_HTTP_ADDR": ln.Addr().String(), "GRANARY_HTTP_ADR": "127.0.0.1:1"})
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"dev"}, getenv, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "address already in use: another process holds it; set GRANARY_HTTP_ADDR") {
		t.Fatalf("got %v, want the GRANARY_HTTP_ADDR hint", err)
	}
	if !strings.Contains(stderr.String(), "did you mean GRANARY_HTTP_ADDR?") {
		t.Fatalf("no warning about GRANARY_HTTP_ADR in stderr:\n%s", stderr.String())
	}
}
