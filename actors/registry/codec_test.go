package registry

import (
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"granary/actors/es/estest"
	"granary/messages"
	"granary/persistence"
)

// The journal outlives the code: the hex below is what the hand-written
// codecs this package had before es.ProtoCodec wrote (captured by running
// them once), so records stored then must still read back the same and
// new ones must be written byte for byte alike. Maps hold one entry at
// most: proto.Marshal writes map entries in no set order.
var goldenInstanceEvents = []estest.Golden[*messages.InstanceEvent]{
	{Type: "InstanceRegistered", Hex: "0a05632d72656710fb9ec482ae3352260a240a093132372e302e302e3110903f1a090a047a6f6e6512016122072f6865616c7468280a", Event: &messages.InstanceEvent{CommandId: "c-reg", OccurredAtUnixMs: 1764700000123,
		Event: &messages.InstanceEvent_Registered{Registered: &messages.InstanceRegistered{Spec: &messages.InstanceSpec{
			Host: "127.0.0.1", Port: 8080, Metadata: map[string]string{"zone": "a"}, HealthCheckPath: "/health", TtlSeconds: 10}}}}},
	{Type: "InstanceHeartbeatLost", Hex: "10c89fc482ae335a00", Event: &messages.InstanceEvent{OccurredAtUnixMs: 1764700000200,
		Event: &messages.InstanceEvent_HeartbeatLost{HeartbeatLost: &messages.InstanceHeartbeatLost{}}}},
	{Type: "InstanceHeartbeatResumed", Hex: "10aca0c482ae336200", Event: &messages.InstanceEvent{OccurredAtUnixMs: 1764700000300,
		Event: &messages.InstanceEvent_HeartbeatResumed{HeartbeatResumed: &messages.InstanceHeartbeatResumed{}}}},
	{Type: "InstanceProbeFailed", Hex: "1090a1c482ae336a140a12636f6e6e656374696f6e2072656675736564", Event: &messages.InstanceEvent{OccurredAtUnixMs: 1764700000400,
		Event: &messages.InstanceEvent_ProbeFailed{ProbeFailed: &messages.InstanceProbeFailed{Detail: "connection refused"}}}},
	{Type: "InstanceProbeRecovered", Hex: "10f4a1c482ae337200", Event: &messages.InstanceEvent{OccurredAtUnixMs: 1764700000500,
		Event: &messages.InstanceEvent_ProbeRecovered{ProbeRecovered: &messages.InstanceProbeRecovered{}}}},
	{Type: "InstanceRemoved", Hex: "0a04632d726d10d8a2c482ae337a0e0a0c646572656769737465726564", Event: &messages.InstanceEvent{CommandId: "c-rm", OccurredAtUnixMs: 1764700000600,
		Event: &messages.InstanceEvent_Removed{Removed: &messages.InstanceRemoved{Reason: "deregistered"}}}},
	// A registration without a spec was written and read back before;
	// only the route table demands its payload.
	{Type: "InstanceRegistered", Hex: "5200", Event: &messages.InstanceEvent{Event: &messages.InstanceEvent_Registered{Registered: &messages.InstanceRegistered{}}}},
}

var goldenRouteEvents = []estest.Golden[*messages.RouteEvent]{
	{Type: "RoutePut", Hex: "0a05632d70757410bca3c482ae33523e0a3c0a05757365727312062f75736572731a08757365722d73766322032f76322a034745542a04504f5354320672616e646f6d38d20942067075626c6963", Event: &messages.RouteEvent{CommandId: "c-put", OccurredAtUnixMs: 1764700000700,
		Event: &messages.RouteEvent_Put{Put: &messages.RoutePut{Route: &messages.RouteSpec{Name: "users", PathPrefix: "/users", Service: "user-svc",
			RewritePrefix: "/v2", Methods: []string{"GET", "POST"}, Strategy: Random, TimeoutMs: 1234, Auth: AuthPublic}}}}},
	{Type: "RouteDeleted", Hex: "0a05632d64656c10a0a4c482ae335a070a057573657273", Event: &messages.RouteEvent{CommandId: "c-del", OccurredAtUnixMs: 1764700000800,
		Event: &messages.RouteEvent_Deleted{Deleted: &messages.RouteDeleted{Name: "users"}}}},
	{Type: "RoutePut", Hex: "52020a00", Event: &messages.RouteEvent{Event: &messages.RouteEvent_Put{Put: &messages.RoutePut{Route: &messages.RouteSpec{}}}}},
	{Type: "RouteDeleted", Hex: "5a00", Event: &messages.RouteEvent{Event: &messages.RouteEvent_Deleted{Deleted: &messages.RouteDeleted{}}}},
}

const goldenInstanceSnapshot = "0a421a1e0a0831302e302e302e3710a8461a090a047a6f6e6512016222022f68281e2204444f574e286430c8013801402a4801500158ac026207726566757365646890031205632d7265671204632d726d"

const goldenRouteSnapshot = "0a3b0a066f726465727312072f6f72646572731a096f726465722d7376632a03474554320b726f756e645f726f62696e38f403420872657175697265640a310a05757365727312062f75736572731a08757365722d73766322032f7632320672616e646f6d38d20942067075626c696310091a05632d707574"

func TestInstanceCodecKeepsJournalFormat(t *testing.T) {
	estest.CheckEvents(t, &instanceCodec, "svcinst-svc/i", goldenInstanceEvents)

	s := Instance{Spec: &messages.InstanceSpec{Host: "10.0.0.7", Port: 9000, Metadata: map[string]string{"zone": "b"}, HealthCheckPath: "/h", TtlSeconds: 30},
		RegisteredAt: 100, RegBeat: 200, HeartbeatLost: true, ProbeFailing: true, ProbeDetail: "refused",
		DownSince: 300, Removed: true, RemovedAt: 400, Version: 42}
	recent := []string{"c-reg", "c-rm"}
	got, gotRecent := estest.CheckSnapshot(t, &instanceCodec, s, recent, goldenInstanceSnapshot)
	if !proto.Equal(got.Spec, s.Spec) {
		t.Fatalf("snapshot spec %v, want %v", got.Spec, s.Spec)
	}
	got.Spec = s.Spec
	if got != s || !slices.Equal(gotRecent, recent) {
		t.Fatalf("snapshot read back as %+v %q, want %+v %q", got, gotRecent, s, recent)
	}
	if instanceCodec.Stream("svc/i") != "svcinst-svc/i" {
		t.Fatalf("stream %q", instanceCodec.Stream("svc/i"))
	}
}

func TestRouteCodecKeepsJournalFormat(t *testing.T) {
	estest.CheckEvents(t, &routeCodec, "routes-routes", goldenRouteEvents)
	// A put must carry its route: the old codec stored none without it.
	noRoute := mustMarshal(t, &messages.RouteEvent{Event: &messages.RouteEvent_Put{Put: &messages.RoutePut{}}})
	if _, err := routeCodec.Decode(persistence.Event{Type: "RoutePut", Data: noRoute}); !errors.Is(err, persistence.ErrCorrupt) {
		t.Fatalf("a put without a route read as %v, want ErrCorrupt", err)
	}

	table := Routes{Routes: []*messages.RouteSpec{
		{Name: "orders", PathPrefix: "/orders", Service: "order-svc", Methods: []string{"GET"}, Strategy: RoundRobin, TimeoutMs: 500, Auth: AuthRequired},
		{Name: "users", PathPrefix: "/users", Service: "user-svc", RewritePrefix: "/v2", Strategy: Random, TimeoutMs: 1234, Auth: AuthPublic},
	}, Version: 9}
	recent := []string{"c-put"}
	got, gotRecent := estest.CheckSnapshot(t, &routeCodec, table, recent, goldenRouteSnapshot)
	if got.Version != table.Version || len(got.Routes) != len(table.Routes) || !slices.Equal(gotRecent, recent) {
		t.Fatalf("snapshot read back as %+v %q, want %+v %q", got, gotRecent, table, recent)
	}
	for i := range table.Routes {
		if !proto.Equal(got.Routes[i], table.Routes[i]) {
			t.Fatalf("snapshot route %d: %v, want %v", i, got.Routes[i], table.Routes[i])
		}
	}
	if routeCodec.Stream(RouteTableID) != "routes-routes" {
		t.Fatalf("stream %q", routeCodec.Stream(RouteTableID))
	}
}
