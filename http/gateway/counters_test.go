package gateway_test

import (
	"net/http"
	"testing"
)

type counterBody struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
}

type groupBody struct {
	Group    string           `json:"group"`
	Counter  string           `json:"counter"`
	Counters map[string]int64 `json:"counters"`
	Stopped  []string         `json:"stopped"`
	Restarts map[string]int32 `json:"restarts"`
}

// decodeStatus asserts the status, then decodes the body strictly.
func (r *response) decodeStatus(t *testing.T, status int, v any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("got %s, want status %d", r, status)
	}
	r.decode(t, v)
}

func TestCountersOverHTTP(t *testing.T) {
	h := newHarness(t)
	tok := token(t, "carol")
	var c counterBody
	h.do("GET", "/api/v1/counters/hits", tok, "").decodeStatus(t, http.StatusOK, &c)
	if c.Name != "hits" || c.Value != 0 {
		t.Fatalf("new counter: %+v", c)
	}
	h.do("POST", "/api/v1/counters/hits/increment", tok, "").decodeStatus(t, http.StatusOK, &c)
	h.do("POST", "/api/v1/counters/hits/increment", tok, `{"by":41}`).decodeStatus(t, http.StatusOK, &c)
	if c.Value != 42 {
		t.Fatalf("after increments: %+v", c)
	}
	if r := h.do("POST", "/api/v1/counters/hits/increment", tok, ""); r.header.Get("X-Served-By") == "" {
		t.Fatal("counter answer without X-Served-By")
	}
	h.do("POST", "/api/v1/counters/hits/reset", tok, "").decodeStatus(t, http.StatusOK, &c)
	if c.Value != 0 {
		t.Fatalf("after reset: %+v", c)
	}
	h.do("POST", "/api/v1/counters/hits/increment", tok, `{"by":0}`).problem(t, http.StatusBadRequest, "validation_failed")
	h.do("POST", "/api/v1/counters/hits/increment", tok, `{"by":"1"}`).problem(t, http.StatusBadRequest, "invalid_json")
	h.do("GET", "/api/v1/counters/bad%20name", tok, "").problem(t, http.StatusBadRequest, "validation_failed")
	h.do("GET", "/api/v1/counters/hits", "", "").problem(t, http.StatusUnauthorized, "unauthorized")
}

func TestCounterGroupsOverHTTP(t *testing.T) {
	h := newHarness(t)
	tok := token(t, "dave")
	h.do("GET", "/api/v1/counter-groups/crew", tok, "").problem(t, http.StatusNotFound, "not_found")
	var g groupBody
	h.do("POST", "/api/v1/counter-groups/crew/counters", tok, "").decodeStatus(t, http.StatusCreated, &g)
	if g.Group != "crew" || g.Counter != "c1" {
		t.Fatalf("spawn: %+v", g)
	}
	h.do("POST", "/api/v1/counter-groups/crew/counters", tok, "").decodeStatus(t, http.StatusCreated, &g)
	h.do("POST", "/api/v1/counter-groups/crew/broadcast", tok, `{"command":"increment"}`).decodeStatus(t, http.StatusOK, &g)
	h.do("POST", "/api/v1/counter-groups/crew/broadcast", tok, `{"command":"increment"}`).decodeStatus(t, http.StatusOK, &g)
	if g.Counters["c1"] != 2 || g.Counters["c2"] != 2 || len(g.Counters) != 2 {
		t.Fatalf("after two broadcasts: %+v", g)
	}
	h.do("POST", "/api/v1/counter-groups/crew/broadcast", tok, `{"command":"reset"}`).decodeStatus(t, http.StatusOK, &g)
	h.do("GET", "/api/v1/counter-groups/crew", tok, "").decodeStatus(t, http.StatusOK, &g)
	if g.Counters["c1"] != 0 || g.Counters["c2"] != 0 || len(g.Stopped) != 0 {
		t.Fatalf("after reset: %+v", g)
	}
	h.do("POST", "/api/v1/counter-groups/crew/broadcast", tok, `{"command":"explode"}`).problem(t, http.StatusBadRequest, "validation_failed")
	h.do("POST", "/api/v1/counter-groups/crew/broadcast", tok, `{}`).problem(t, http.StatusBadRequest, "validation_failed")
}

type childBody struct {
	Group   string `json:"group"`
	Counter string `json:"counter"`
	Value   int64  `json:"value"`
}

// One child of a group is read, incremented and reset on its own (the
// seed's "reset one counter of the supervisor"); its siblings keep their
// values; unknown groups and children are 404.
func TestCounterGroupChildOverHTTP(t *testing.T) {
	h := newHarness(t)
	tok := token(t, "erin")
	h.do("GET", "/api/v1/counter-groups/team/counters/c1", tok, "").problem(t, http.StatusNotFound, "not_found")
	var g groupBody
	for range 2 {
		h.do("POST", "/api/v1/counter-groups/team/counters", tok, "").decodeStatus(t, http.StatusCreated, &g)
	}
	h.do("POST", "/api/v1/counter-groups/team/broadcast", tok, `{"command":"increment"}`).decodeStatus(t, http.StatusOK, &g)
	var c childBody
	h.do("POST", "/api/v1/counter-groups/team/counters/c2/increment", tok, `{"by":5}`).decodeStatus(t, http.StatusOK, &c)
	if c != (childBody{Group: "team", Counter: "c2", Value: 6}) {
		t.Fatalf("increment c2 by 5: %+v", c)
	}
	h.do("POST", "/api/v1/counter-groups/team/counters/c1/increment", tok, "").decodeStatus(t, http.StatusOK, &c)
	if c.Value != 2 {
		t.Fatalf("increment c1: %+v", c)
	}
	h.do("POST", "/api/v1/counter-groups/team/counters/c2/reset", tok, "").decodeStatus(t, http.StatusOK, &c)
	if c != (childBody{Group: "team", Counter: "c2", Value: 0}) {
		t.Fatalf("reset c2: %+v", c)
	}
	h.do("GET", "/api/v1/counter-groups/team/counters/c1", tok, "").decodeStatus(t, http.StatusOK, &c)
	if c.Value != 2 {
		t.Fatalf("c1 after resetting c2: %+v", c)
	}
	h.do("GET", "/api/v1/counter-groups/team", tok, "").decodeStatus(t, http.StatusOK, &g)
	if g.Counters["c1"] != 2 || g.Counters["c2"] != 0 {
		t.Fatalf("group after one child's reset: %+v", g)
	}
	h.do("GET", "/api/v1/counter-groups/team/counters/c9", tok, "").problem(t, http.StatusNotFound, "not_found")
	h.do("POST", "/api/v1/counter-groups/team/counters/c9/reset", tok, "").problem(t, http.StatusNotFound, "not_found")
	h.do("POST", "/api/v1/counter-groups/nobody/counters/c1/increment", tok, "").problem(t, http.StatusNotFound, "not_found")
	h.do("POST", "/api/v1/counter-groups/team/counters/c1/increment", tok, `{"by":0}`).problem(t, http.StatusBadRequest, "validation_failed")
	h.do("GET", "/api/v1/counter-groups/team/counters/bad%20name", tok, "").problem(t, http.StatusBadRequest, "validation_failed")
	// A retried increment with the same key is applied once.
	for range 2 {
		h.do("POST", "/api/v1/counter-groups/team/counters/c1/increment", tok, "", "Idempotency-Key", "once").decodeStatus(t, http.StatusOK, &c)
	}
	if c.Value != 3 {
		t.Fatalf("c1 after one increment sent twice: %+v", c)
	}
}

func TestClusterMembersIsForAdmins(t *testing.T) {
	h := newHarness(t)
	h.do("GET", "/api/v1/cluster/members", token(t, "eve"), "").problem(t, http.StatusForbidden, "forbidden")
	var body struct {
		Members []struct {
			ID      string   `json:"id"`
			Address string   `json:"address"`
			Kinds   []string `json:"kinds"`
			Status  string   `json:"status"`
		} `json:"members"`
		Self string `json:"self"`
	}
	h.do("GET", "/api/v1/cluster/members", token(t, "root", "admin"), "").decodeStatus(t, http.StatusOK, &body)
	if len(body.Members) != 1 || body.Members[0].ID != h.cluster.Member(0).ID() || len(body.Members[0].Kinds) < 3 || body.Members[0].Address == "" {
		t.Fatalf("members: %+v", body)
	}
}
