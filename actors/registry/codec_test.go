package registry

import (
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/actors/es"
	"granary/messages"
	"granary/persistence"
)

// The journal outlives the code: the hex below is what the hand-written
// codecs this package had before es.ProtoCodec wrote (captured by running
// them once), so records stored then must still read back the same and
// new ones must be written byte for byte alike. Maps hold one entry at
// most: proto.Marshal writes map entries in no set order.
var goldenInstanceEvents = []golden[*messages.InstanceEvent]{
	{"InstanceRegistered", "0a05632d72656710fb9ec482ae3352260a240a093132372e302e302e3110903f1a090a047a6f6e6512016122072f6865616c7468280a", &messages.InstanceEvent{CommandId: "c-reg", OccurredAtUnixMs: 1764700000123,
		Event: &messages.InstanceEvent_Registered{Registered: &messages.InstanceRegistered{Spec: &messages.InstanceSpec{
			Host: "127.0.0.1", Port: 8080, Metadata: map[string]string{"zone": "a"}, HealthCheckPath: "/health", TtlSeconds: 10}}}}},
	{"InstanceHeartbeatLost", "10c89fc482ae335a00", &messages.InstanceEvent{OccurredAtUnixMs: 1764700000200,
		Event: &messages.InstanceEvent_HeartbeatLost{HeartbeatLost: &messages.InstanceHeartbeatLost{}}}},
	{"InstanceHeartbeatResumed", "10aca0c482ae336200", &messages.InstanceEvent{OccurredAtUnixMs: 1764700000300,
		Event: &messages.InstanceEvent_HeartbeatResumed{HeartbeatResumed: &messages.InstanceHeartbeatResumed{}}}},
	{"InstanceProbeFailed", "1090a1c482ae336a140a12636f6e6e656374696f6e2072656675736564", &messages.InstanceEvent{OccurredAtUnixMs: 1764700000400,
		Event: &messages.InstanceEvent_ProbeFailed{ProbeFailed: &messages.InstanceProbeFailed{Detail: "connection refused"}}}},
	{"InstanceProbeRecovered", "10f4a1c482ae337200", &messages.InstanceEvent{OccurredAtUnixMs: 1764700000500,
		Event: &messages.InstanceEvent_ProbeRecovered{ProbeRecovered: &messages.InstanceProbeRecovered{}}}},
	{"InstanceRemoved", "0a04632d726d10d8a2c482ae337a0e0a0c646572656769737465726564", &messages.InstanceEvent{CommandId: "c-rm", OccurredAtUnixMs: 1764700000600,
		Event: &messages.InstanceEvent_Removed{Removed: &messages.InstanceRemoved{Reason: "deregistered"}}}},
	// A registration without a spec was written and read back before;
	// only the route table demands its payload.
	{"InstanceRegistered", "5200", &messages.InstanceEvent{Event: &messages.InstanceEvent_Registered{Registered: &messages.InstanceRegistered{}}}},
}

var goldenRouteEvents = []golden[*messages.RouteEvent]{
	{"RoutePut", "0a05632d70757410bca3c482ae33523e0a3c0a05757365727312062f75736572731a08757365722d73766322032f76322a034745542a04504f5354320672616e646f6d38d20942067075626c6963", &messages.RouteEvent{CommandId: "c-put", OccurredAtUnixMs: 1764700000700,
		Event: &messages.RouteEvent_Put{Put: &messages.RoutePut{Route: &messages.RouteSpec{Name: "users", PathPrefix: "/users", Service: "user-svc",
			RewritePrefix: "/v2", Methods: []string{"GET", "POST"}, Strategy: Random, TimeoutMs: 1234, Auth: AuthPublic}}}}},
	{"RouteDeleted", "0a05632d64656c10a0a4c482ae335a070a057573657273", &messages.RouteEvent{CommandId: "c-del", OccurredAtUnixMs: 1764700000800,
		Event: &messages.RouteEvent_Deleted{Deleted: &messages.RouteDeleted{Name: "users"}}}},
	{"RoutePut", "52020a00", &messages.RouteEvent{Event: &messages.RouteEvent_Put{Put: &messages.RoutePut{Route: &messages.RouteSpec{}}}}},
	{"RouteDeleted", "5a00", &messages.RouteEvent{Event: &messages.RouteEvent_Deleted{Deleted: &messages.RouteDeleted{}}}},
}

const goldenInstanceSnapshot = "0a421a1e0a0831302e302e302e3710a8461a090a047a6f6e6512016222022f68281e2204444f574e286430c8013801402a4801500158ac026207726566757365646890031205632d7265671204632d726d"

const goldenRouteSnapshot = "0a3b0a066f726465727312072f6f72646572731a096f726465722d7376632a03474554320b726f756e645f726f62696e38f403420872657175697265640a310a05757365727312062f75736572731a08757365722d73766322032f7632320672616e646f6d38d20942067075626c696310091a05632d707574"

func TestInstanceCodecKeepsJournalFormat(t *testing.T) {
	checkEvents(t, &instanceCodec, "svcinst-svc/i", goldenInstanceEvents)

	s := Instance{Spec: &messages.InstanceSpec{Host: "10.0.0.7", Port: 9000, Metadata: map[string]string{"zone": "b"}, HealthCheckPath: "/h", TtlSeconds: 30},
		RegisteredAt: 100, RegBeat: 200, HeartbeatLost: true, ProbeFailing: true, ProbeDetail: "refused",
		DownSince: 300, Removed: true, RemovedAt: 400, Version: 42}
	recent := []string{"c-reg", "c-rm"}
	got, gotRecent := checkSnapshot(t, &instanceCodec, s, recent, goldenInstanceSnapshot)
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
	checkEvents(t, &routeCodec, "routes-routes", goldenRouteEvents)
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
	got, gotRecent := checkSnapshot(t, &routeCodec, table, recent, goldenRouteSnapshot)
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

type golden[E es.ProtoEvent] struct {
	typ, hex string
	ev       E
}

// checkEvents encodes each event and compares the result with its golden
// form, then decodes the golden form and compares it with the event; data
// under another type's name, an unknown name or bytes that are no event
// must read as corrupt.
func checkEvents[S any, E es.ProtoEvent](t *testing.T, c *es.Codec[S, E], stream string, table []golden[E]) {
	t.Helper()
	types := map[string]bool{}
	for _, g := range table {
		types[g.typ] = true
	}
	for i, g := range table {
		data, err := c.Encode(g.ev)
		if err != nil {
			t.Fatalf("%d: encode %s: %v", i, g.typ, err)
		}
		if got := hex.EncodeToString(data.Data); data.Type != g.typ || got != g.hex {
			t.Errorf("%d: encoded as %s %s, want %s %s", i, data.Type, got, g.typ, g.hex)
		}
		if want := time.UnixMilli(g.ev.GetOccurredAtUnixMs()); !data.OccurredAt.Equal(want) {
			t.Errorf("%d: occurred at %v, want %v", i, data.OccurredAt, want)
		}
		stored, err := hex.DecodeString(g.hex)
		if err != nil {
			t.Fatalf("%d: golden hex: %v", i, err)
		}
		ev, err := c.Decode(persistence.Event{Stream: stream, Version: uint64(i + 1), Type: g.typ, Data: stored})
		if err != nil {
			t.Errorf("%d: decode %s: %v", i, g.typ, err)
			continue
		}
		if !proto.Equal(ev, g.ev) || c.CommandID(ev) != g.ev.GetCommandId() {
			t.Errorf("%d: decoded %v (command %q), want %v", i, ev, c.CommandID(ev), g.ev)
		}
		for other := range types {
			if other == g.typ {
				continue
			}
			if _, err := c.Decode(persistence.Event{Stream: stream, Version: 1, Type: other, Data: stored}); !errors.Is(err, persistence.ErrCorrupt) {
				t.Errorf("%d: %s data read as %s: %v, want ErrCorrupt", i, g.typ, other, err)
			}
		}
		if _, err := c.Decode(persistence.Event{Stream: stream, Version: 1, Type: g.typ + "X", Data: stored}); !errors.Is(err, persistence.ErrCorrupt) {
			t.Errorf("%d: unknown type read as %v, want ErrCorrupt", i, err)
		}
	}
	for typ := range types {
		for _, bad := range [][]byte{nil, {0xff, 0xff, 0xff}} {
			if _, err := c.Decode(persistence.Event{Stream: stream, Version: 1, Type: typ, Data: bad}); !errors.Is(err, persistence.ErrCorrupt) {
				t.Errorf("%x read as %s: %v, want ErrCorrupt", bad, typ, err)
			}
		}
	}
}

// checkSnapshot compares the snapshot of s with its golden form and
// returns what the golden form decodes to, for the caller to compare.
func checkSnapshot[S, E any](t *testing.T, c *es.Codec[S, E], s S, recent []string, want string) (S, []string) {
	t.Helper()
	data, err := c.EncodeSnapshot(s, recent)
	if err != nil {
		t.Fatalf("encode snapshot: %v", err)
	}
	if got := hex.EncodeToString(data); got != want {
		t.Errorf("snapshot encoded as %s, want %s", got, want)
	}
	stored, err := hex.DecodeString(want)
	if err != nil {
		t.Fatalf("golden hex: %v", err)
	}
	got, gotRecent, err := c.DecodeSnapshot(stored)
	if err != nil {
		t.Fatalf("decode snapshot: %v", err)
	}
	if c.Version(got) != c.Version(s) {
		t.Errorf("snapshot version %d, want %d", c.Version(got), c.Version(s))
	}
	if _, _, err := c.DecodeSnapshot([]byte{0xff, 0xff}); err == nil {
		t.Error("a garbage snapshot must not decode")
	}
	return got, gotRecent
}
