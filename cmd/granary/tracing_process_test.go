package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"granary/http/auth"
	"granary/testkit"
)

// logLinesWithTrace counts n's JSON log lines that name traceID.
func (n *node) logLinesWithTrace(traceID string) (int, error) {
	lw := n.cmd.Stderr.(*lockedWriter)
	lw.mu.Lock()
	data := bytes.Clone(n.stderr.Bytes())
	lw.mu.Unlock()
	count := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue // not a log line of ours (a panic trace, say)
		}
		if rec["trace_id"] == traceID {
			count++
		}
	}
	return count, sc.Err()
}

// A request with a traceparent sent to one member's gateway, for an
// account hosted on another member: both processes' JSON logs name the
// request's trace id (the gateway's access line, the grain's debug line).
func TestTraceIDCrossesMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	redisURL := testkit.RealRedisURL(t)
	secret := "tracing-test-secret-0123456789abcdef"
	cl := startCluster3(t, redisURL, secret, "tracing-"+randHex(), "GRANARY_LOG_FORMAT=json", "GRANARY_LOG_LEVEL=debug")
	tok, err := auth.Issue([]byte(secret), "root", []string{auth.RoleAdmin}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	admin := client{token: tok, http: &http.Client{Timeout: 10 * time.Second}}
	cl.waitFormed(admin, 20*time.Second)

	// Open accounts through member 0 until one is hosted elsewhere; each
	// request has a trace of its own.
	admin.base = cl.nodes[0].base
	for n := 0; n < 30; n++ {
		b := make([]byte, 24)
		_, _ = rand.Read(b)
		traceID := hex.EncodeToString(b[:16])
		tp := "00-" + traceID + "-" + hex.EncodeToString(b[16:]) + "-01"
		var a accountBody
		code, hdr, err := admin.call("POST", "/api/v1/accounts",
			map[string]any{"account_number": fmt.Sprintf("TP-%s-%d", randHex(), n), "owner_name": "T"}, &a, map[string]string{"Traceparent": tp})
		if err != nil || code != 201 {
			t.Fatalf("open: %d %v", code, err)
		}
		home := -1
		for i, nd := range cl.nodes {
			if nd.member == hdr.Get("X-Served-By") {
				home = i
			}
		}
		if home <= 0 {
			continue // hosted by the gateway's own member (or unknown)
		}
		testkit.WaitFor(t, 10*time.Second, func() error {
			gw, err := cl.nodes[0].logLinesWithTrace(traceID)
			if err != nil {
				return err
			}
			grain, err := cl.nodes[home].logLinesWithTrace(traceID)
			if err != nil {
				return err
			}
			if gw == 0 || grain == 0 {
				return fmt.Errorf("trace %s: %d lines on the gateway's member, %d on the grain's (member %d)", traceID, gw, grain, home)
			}
			return nil
		})
		return
	}
	t.Fatal("no account of 30 was hosted off the gateway's member")
}
