package main

import (
	"io"
	"log/slog"
	"slices"
	"strings"
)

// maxSuggestDistance is the largest edit distance at which a misspelt
// variable is matched to a known one; past it a suggestion is a guess.
const maxSuggestDistance = 3

// envReadElsewhere are GRANARY_* variables that are not member settings but
// are read on purpose by something else, so finding them set is no typo.
var envReadElsewhere = []string{
	// granary example-service: the gateway it registers with and its token.
	"GRANARY_URL",
	"GRANARY_TOKEN",
	// .ci/run and docker-compose.yml: Redis's appendfsync, not the member's.
	"GRANARY_REDIS_FSYNC",
	// scripts/cluster.sh: the ports of the Redis and etcd it starts.
	"GRANARY_CLUSTER_REDIS_PORT",
	"GRANARY_CLUSTER_ETCD_PORT",
	"GRANARY_CLUSTER_ETCD_PEER_PORT",
	// http/gateway/browser_test.go: the browser and where screenshots go.
	"GRANARY_CHROMIUM",
	"GRANARY_ARTIFACTS",
	// actors/saga/next_test.go: rewrites golden files.
	"GRANARY_REWRITE",
}

// unknownEnvVar is a set GRANARY_* variable nothing reads; Nearest is the
// known name it most likely misspells, "" when none is close.
type unknownEnvVar struct {
	Name, Nearest string
}

// knownEnvNames lists every GRANARY_* variable that is read: the settings
// (the same names in dev and node) and envReadElsewhere.
func knownEnvNames() []string {
	var names []string
	for _, s := range settings(modeNode) {
		names = append(names, s.name)
	}
	return append(names, envReadElsewhere...)
}

// unknownEnv finds the GRANARY_* entries of environ ("NAME=value") that no
// one reads. A variable getenv says is empty is skipped, as loadConfig skips
// it, which also keeps tests that pass their own getenv apart from the
// environment of the test process.
func unknownEnv(environ []string, getenv func(string) string, known []string) []unknownEnvVar {
	var out []unknownEnvVar
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "GRANARY_") || slices.Contains(known, name) || strings.TrimSpace(getenv(name)) == "" {
			continue
		}
		u := unknownEnvVar{Name: name}
		if near, d := nearestName(name, known); d <= maxSuggestDistance {
			u.Nearest = near
		}
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b unknownEnvVar) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// warnUnknownEnv logs a warning per unknown GRANARY_* variable. It runs
// before the configuration is loaded, because a misspelt variable is often
// why loading fails (GRANARY_JWT_SECRET "missing"), so it formats its lines
// from GRANARY_LOG_FORMAT and GRANARY_LOG_LEVEL itself.
func warnUnknownEnv(w io.Writer, environ []string, getenv func(string) string) {
	unknown := unknownEnv(environ, getenv, knownEnvNames())
	if len(unknown) == 0 {
		return
	}
	var c config
	// A bad level or format is reported by loadConfig; here the defaults do.
	_ = c.LogLevel.UnmarshalText([]byte(strings.TrimSpace(getenv("GRANARY_LOG_LEVEL"))))
	c.LogJSON = strings.TrimSpace(getenv("GRANARY_LOG_FORMAT")) == "json"
	log := newLogger(c, w)
	for _, u := range unknown {
		if u.Nearest != "" {
			log.Warn("unknown variable "+u.Name+" is ignored; did you mean "+u.Nearest+"? (granary help lists every setting)",
				slog.String("variable", u.Name), slog.String("did_you_mean", u.Nearest))
			continue
		}
		log.Warn("unknown variable "+u.Name+" is ignored (granary help lists every setting)", slog.String("variable", u.Name))
	}
}

// nearestName returns the candidate closest to name by edit distance and
// that distance; ties go to the candidate that sorts first, so the
// suggestion does not depend on the order of the settings table.
func nearestName(name string, candidates []string) (string, int) {
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(name, c)
		if bestD < 0 || d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	return best, bestD
}

// editDistance is the Levenshtein distance between a and b in bytes, enough
// for variable names, which are ASCII.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
