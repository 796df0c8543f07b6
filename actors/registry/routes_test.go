package registry

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"granary/messages"
)

func putReq(r *messages.RouteSpec) *messages.RouteRequest {
	return &messages.RouteRequest{CommandId: "cmd-1", Command: &messages.RouteRequest_Put{Put: &messages.PutRoute{Route: r}}}
}

func deleteReq(name string) *messages.RouteRequest {
	return &messages.RouteRequest{CommandId: "cmd-2", Command: &messages.RouteRequest_Delete{Delete: &messages.DeleteRoute{Name: name}}}
}

// decideApply runs one command and folds its events, as the grain does.
func decideApply(t *testing.T, tbl Routes, req *messages.RouteRequest) (Routes, int) {
	t.Helper()
	evs, err := DecideRoutes(tbl, req, 1234)
	if err != nil {
		t.Fatalf("decide %v: %v", req, err)
	}
	for _, ev := range evs {
		if ev.GetCommandId() != req.GetCommandId() || ev.GetOccurredAtUnixMs() != 1234 {
			t.Fatalf("event %v lacks the command id or time", ev)
		}
		tbl = ApplyRoutes(tbl, RouteTableID, ev)
	}
	return tbl, len(evs)
}

func TestDecideRoutes(t *testing.T) {
	var tbl Routes
	tbl, n := decideApply(t, tbl, putReq(&messages.RouteSpec{Name: "users", PathPrefix: "/users/", Service: "user-svc", Methods: []string{"get"}}))
	if n != 1 || tbl.Version != 1 || len(tbl.Routes) != 1 {
		t.Fatalf("create: %d events, %+v", n, tbl)
	}
	stored := tbl.Routes[0]
	if stored.GetPathPrefix() != "/users" || stored.GetStrategy() != RoundRobin || !slices.Equal(stored.GetMethods(), []string{"GET"}) {
		t.Fatalf("the stored route is not normalized: %v", stored)
	}

	// The same route, spelled differently but equal once normalized, is no change.
	tbl, n = decideApply(t, tbl, putReq(&messages.RouteSpec{Name: "users", PathPrefix: "/users", Service: "user-svc", Methods: []string{"GET", "get"}, Strategy: RoundRobin}))
	if n != 0 || tbl.Version != 1 {
		t.Fatalf("identical put: %d events, version %d", n, tbl.Version)
	}

	tbl, n = decideApply(t, tbl, putReq(&messages.RouteSpec{Name: "users", PathPrefix: "/people", Service: "people-svc", TimeoutMs: 100}))
	if n != 1 || tbl.Version != 2 || len(tbl.Routes) != 1 || tbl.Routes[0].GetPathPrefix() != "/people" || tbl.Routes[0].GetTimeoutMs() != 100 {
		t.Fatalf("replace: %+v", tbl)
	}
	if stored.GetPathPrefix() != "/users" {
		t.Fatal("ApplyRoutes changed a route of the previous state")
	}

	_, err := DecideRoutes(tbl, putReq(&messages.RouteSpec{Name: "other", PathPrefix: "/people/", Service: "x"}), 1)
	wantCode(t, err, messages.CodeAlreadyExists)

	// A nested prefix is not a duplicate: the longest match wins at the gateway.
	tbl, n = decideApply(t, tbl, putReq(&messages.RouteSpec{Name: "admins", PathPrefix: "/people/admins", Service: "x"}))
	if n != 1 || len(tbl.Routes) != 2 {
		t.Fatalf("nested prefix: %+v", tbl)
	}
	tbl, _ = decideApply(t, tbl, putReq(&messages.RouteSpec{Name: "b-route", PathPrefix: "/b", Service: "x"}))
	var names []string
	for _, r := range tbl.Routes {
		names = append(names, r.GetName())
	}
	if !slices.Equal(names, []string{"admins", "b-route", "users"}) {
		t.Fatalf("routes not sorted by name: %v", names)
	}

	_, err = DecideRoutes(tbl, deleteReq("nope"), 1)
	wantCode(t, err, messages.CodeNotFound)
	before := tbl
	tbl, n = decideApply(t, tbl, deleteReq("b-route"))
	if n != 1 || len(tbl.Routes) != 2 || tbl.find("b-route") >= 0 || tbl.Version != before.Version+1 {
		t.Fatalf("delete: %+v", tbl)
	}
	if len(before.Routes) != 3 || before.Routes[1].GetName() != "b-route" {
		t.Fatal("ApplyRoutes changed the previous state's slice")
	}

	evs, err := DecideRoutes(tbl, &messages.RouteRequest{Command: &messages.RouteRequest_Get{Get: &messages.GetRoutes{}}}, 1)
	if err != nil || evs != nil {
		t.Fatalf("get: %v %v", evs, err)
	}
	_, err = DecideRoutes(tbl, &messages.RouteRequest{}, 1)
	wantCode(t, err, messages.CodeValidationFailed)
	_, err = DecideRoutes(tbl, putReq(&messages.RouteSpec{Name: "api", PathPrefix: "/api", Service: "x"}), 1)
	wantCode(t, err, messages.CodeValidationFailed)
}

func TestDecideRoutesCap(t *testing.T) {
	var tbl Routes
	for i := range MaxRoutes {
		r := &messages.RouteSpec{Name: fmt.Sprintf("r%03d", i), PathPrefix: fmt.Sprintf("/r%03d", i), Service: "svc"}
		n, err := NormalizeRoute(r)
		if err != nil {
			t.Fatal(err)
		}
		tbl = ApplyRoutes(tbl, RouteTableID, putRoute(n))
	}
	if len(tbl.Routes) != MaxRoutes || tbl.Version != MaxRoutes {
		t.Fatalf("%d routes at version %d", len(tbl.Routes), tbl.Version)
	}
	_, err := DecideRoutes(tbl, putReq(&messages.RouteSpec{Name: "one-more", PathPrefix: "/one-more", Service: "svc"}), 1)
	wantCode(t, err, messages.CodeValidationFailed)

	// A full table still takes replacements and deletions.
	evs, err := DecideRoutes(tbl, putReq(&messages.RouteSpec{Name: "r000", PathPrefix: "/r000", Service: "other"}), 1)
	if err != nil || len(evs) != 1 {
		t.Fatalf("replace in a full table: %v %v", evs, err)
	}
	if evs, err = DecideRoutes(tbl, deleteReq("r255"), 1); err != nil || len(evs) != 1 {
		t.Fatalf("delete in a full table: %v %v", evs, err)
	}
}

func TestApplyRoutesDeleteUnknownIsHarmless(t *testing.T) {
	r := validRoute()
	tbl := ApplyRoutes(Routes{}, RouteTableID, putRoute(r))
	tbl = ApplyRoutes(tbl, RouteTableID, deletedRoute("ghost"))
	if len(tbl.Routes) != 1 || !proto.Equal(tbl.Routes[0], r) || tbl.Version != 2 {
		t.Fatalf("%+v", tbl)
	}
}
