package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"granary/http/gateway"
	"granary/testkit"
)

// TestDepartedMemberShowsDead: a member that leaves does not vanish from
// GET /api/v1/cluster/members: it is listed as "dead" after the live ones,
// and the dashboard's metrics say when it left, while the live member's
// grains are counted. (A crash, which leaks Proto.Actor's redials in this
// package's leak check, is cluster's TestKilledMemberIsSuspectedThenDead.)
func TestDepartedMemberShowsDead(t *testing.T) {
	rdb, prefix, advance := edgeRedis(t)
	c := testkit.NewCluster(t, 2) // skipped under -race (see testkit)
	h := &harness{t: t, cluster: c, redis: rdb, prefix: prefix, advance: advance}
	cfg := gateway.DefaultConfig()
	cfg.KeyPrefix = prefix
	h.gw = h.newGateway(c.Member(0), cfg, nil)
	h.srv = httptest.NewServer(h.gw.Handler())
	h.base, h.client = h.srv.URL, h.srv.Client()
	t.Cleanup(h.gw.Close)
	t.Cleanup(h.srv.Close)
	admin := token(t, "root", "admin")
	victim := c.Member(1).ID()

	type member struct {
		ID      string   `json:"id"`
		Address string   `json:"address"`
		Kinds   []string `json:"kinds"`
		Status  string   `json:"status"`
	}
	var members struct {
		Members []member `json:"members"`
		Self    string   `json:"self"`
	}
	var metrics struct {
		Interval float64           `json:"interval_seconds"`
		Measured bool              `json:"journal_measured"`
		Samples  []json.RawMessage `json:"samples"`
		Members  map[string]struct {
			Grains map[string]int64 `json:"grains"`
			LeftAt string           `json:"left_at"`
		} `json:"members"`
	}
	// Before: the other member's gossiped heartbeat brings its grain
	// counts, and a member heard from is alive, not suspected.
	testkit.WaitFor(t, 10*time.Second, func() error {
		metrics.Members = nil
		h.do("GET", "/api/v1/dashboard/metrics", admin, "").decodeStatus(t, http.StatusOK, &metrics)
		if metrics.Members[victim].Grains == nil {
			return fmt.Errorf("no grain counts for the other member yet: %+v", metrics.Members)
		}
		return nil
	})
	h.do("GET", "/api/v1/cluster/members", admin, "").decodeStatus(t, http.StatusOK, &members)
	statuses := map[string]string{}
	for _, m := range members.Members {
		statuses[m.ID] = m.Status
	}
	if len(statuses) != 2 || statuses[victim] != "alive" || statuses[c.Member(0).ID()] != "alive (self)" {
		t.Fatalf("members before the departure: %+v", members.Members)
	}

	seen := map[string]bool{}
	c.Leave(1)
	testkit.WaitFor(t, 30*time.Second, func() error {
		r := h.do("GET", "/api/v1/cluster/members", admin, "")
		members.Members = nil
		r.decodeStatus(t, http.StatusOK, &members)
		for _, m := range members.Members {
			if m.ID == victim {
				seen[m.Status] = true
				if m.Status == "dead" {
					return nil
				}
				return fmt.Errorf("departed member is %q", m.Status)
			}
		}
		return fmt.Errorf("departed member not listed: %+v", members.Members)
	})
	t.Logf("statuses the departed member went through: %v", seen)
	if len(members.Members) != 2 || members.Members[0].ID != c.Member(0).ID() || members.Members[0].Status != "alive (self)" {
		t.Fatalf("members after the departure: %+v", members.Members)
	}

	metrics.Members = nil
	h.do("GET", "/api/v1/dashboard/metrics", admin, "").decodeStatus(t, http.StatusOK, &metrics)
	left, err := time.Parse(time.RFC3339Nano, metrics.Members[victim].LeftAt)
	if err != nil || time.Since(left) > time.Minute {
		t.Errorf("left_at of the departed member: %q (%v)", metrics.Members[victim].LeftAt, err)
	}
	if g := metrics.Members[c.Member(0).ID()].Grains; g["projection"] < 1 {
		t.Errorf("the live member's grains: %v", g)
	}
}
