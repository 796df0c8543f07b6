package registry

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/messages"
	"granary/persistence"
)

func registered(at int64, spec *messages.InstanceSpec) *messages.InstanceEvent {
	return &messages.InstanceEvent{CommandId: "c-reg", OccurredAtUnixMs: at, Event: &messages.InstanceEvent_Registered{Registered: &messages.InstanceRegistered{Spec: spec}}}
}

func heartbeatLost(at int64) *messages.InstanceEvent {
	return &messages.InstanceEvent{OccurredAtUnixMs: at, Event: &messages.InstanceEvent_HeartbeatLost{HeartbeatLost: &messages.InstanceHeartbeatLost{}}}
}

func heartbeatResumed(at int64) *messages.InstanceEvent {
	return &messages.InstanceEvent{OccurredAtUnixMs: at, Event: &messages.InstanceEvent_HeartbeatResumed{HeartbeatResumed: &messages.InstanceHeartbeatResumed{}}}
}

func probeFailed(at int64, detail string) *messages.InstanceEvent {
	return &messages.InstanceEvent{OccurredAtUnixMs: at, Event: &messages.InstanceEvent_ProbeFailed{ProbeFailed: &messages.InstanceProbeFailed{Detail: detail}}}
}

func probeRecovered(at int64) *messages.InstanceEvent {
	return &messages.InstanceEvent{OccurredAtUnixMs: at, Event: &messages.InstanceEvent_ProbeRecovered{ProbeRecovered: &messages.InstanceProbeRecovered{}}}
}

func removed(at int64) *messages.InstanceEvent {
	return &messages.InstanceEvent{CommandId: "c-rm", OccurredAtUnixMs: at, Event: &messages.InstanceEvent_Removed{Removed: &messages.InstanceRemoved{Reason: "deregistered"}}}
}

func TestApplyInstanceLifecycle(t *testing.T) {
	var s Instance
	if s.Exists() {
		t.Fatal("the zero instance does not exist")
	}
	spec := validSpec()
	s = ApplyInstance(s, "svc/i", registered(1000, spec))
	if !s.Exists() || s.Status() != StatusUp || s.RegisteredAt != 1000 || s.RegBeat != 1000 || s.Version != 1 || s.DownSince != 0 {
		t.Fatalf("after register: %+v", s)
	}

	s = ApplyInstance(s, "svc/i", heartbeatLost(2000))
	if s.Status() != StatusDown || !s.HeartbeatLost || s.DownSince != 2000 || s.downReason() != "heartbeat" {
		t.Fatalf("after heartbeat lost: %+v", s)
	}

	s = ApplyInstance(s, "svc/i", probeFailed(3000, "connection refused"))
	if s.DownSince != 2000 || s.downReason() != "heartbeat,probe" || s.ProbeDetail != "connection refused" {
		t.Fatalf("a second reason must keep the first DownSince: %+v", s)
	}

	s = ApplyInstance(s, "svc/i", heartbeatResumed(4000))
	if s.Status() != StatusDown || s.HeartbeatLost || !s.ProbeFailing || s.DownSince != 2000 || s.downReason() != "probe" {
		t.Fatalf("the probe still fails, so it stays DOWN since 2000: %+v", s)
	}

	s = ApplyInstance(s, "svc/i", probeRecovered(5000))
	if s.Status() != StatusUp || s.ProbeFailing || s.ProbeDetail != "" || s.DownSince != 0 || s.downReason() != "" {
		t.Fatalf("after probe recovered: %+v", s)
	}
	if s.Version != 5 || s.RegisteredAt != 1000 {
		t.Fatalf("version %d registered %d", s.Version, s.RegisteredAt)
	}

	// An update while DOWN keeps RegisteredAt but starts UP again.
	s = ApplyInstance(s, "svc/i", probeFailed(6000, "503"))
	spec2 := proto.Clone(spec).(*messages.InstanceSpec)
	spec2.Port = 9090
	s = ApplyInstance(s, "svc/i", registered(7000, spec2))
	if s.RegisteredAt != 1000 || s.RegBeat != 7000 || s.Status() != StatusUp || s.DownSince != 0 || s.Spec.GetPort() != 9090 || s.Version != 7 {
		t.Fatalf("after update: %+v", s)
	}

	s = ApplyInstance(s, "svc/i", heartbeatLost(8000))
	s = ApplyInstance(s, "svc/i", removed(9000))
	if s.Exists() || !s.Removed || s.RemovedAt != 9000 || s.Version != 9 {
		t.Fatalf("after remove: %+v", s)
	}
	rec := s.Record("svc", "i")
	if !rec.Removed || rec.Up() || rec.Version != 9 {
		t.Fatalf("tombstone record %+v", rec)
	}

	// Registering again starts a fresh registration on the same stream.
	s = ApplyInstance(s, "svc/i", registered(10000, spec))
	if !s.Exists() || s.Removed || s.RemovedAt != 0 || s.RegisteredAt != 10000 || s.HeartbeatLost || s.ProbeFailing || s.DownSince != 0 || s.Version != 10 {
		t.Fatalf("after re-register: %+v", s)
	}
}

func TestInstanceRecordAndProto(t *testing.T) {
	spec := validSpec()
	spec.Metadata = map[string]string{"zone": "a"}
	spec.HealthCheckPath = "/h"
	s := ApplyInstance(Instance{}, "", registered(1000, spec))
	s = ApplyInstance(s, "", probeFailed(2000, "x"))
	rec := s.Record("svc", "i")
	want := InstanceRecord{Service: "svc", InstanceID: "i", Host: "127.0.0.1", Port: 8080, Metadata: spec.Metadata, HealthCheckPath: "/h",
		TTLSeconds: 10, Status: StatusDown, RegisteredAt: 1000, DownReason: "probe", Version: 2}
	if rec.Service != want.Service || rec.InstanceID != want.InstanceID || rec.Host != want.Host || rec.Port != want.Port ||
		rec.Metadata["zone"] != "a" || rec.HealthCheckPath != want.HealthCheckPath || rec.TTLSeconds != want.TTLSeconds ||
		rec.Status != want.Status || rec.RegisteredAt != want.RegisteredAt || rec.DownReason != want.DownReason || rec.Version != want.Version || rec.Removed {
		t.Fatalf("record %+v, want %+v", rec, want)
	}
	if s.TTL().Seconds() != 10 {
		t.Fatalf("ttl %v", s.TTL())
	}
	// The last heartbeat shown is the later of the view's beat and the registration.
	if p := s.ToProto("svc", "i", timeMs(500)); p.GetLastHeartbeatUnixMs() != 1000 {
		t.Fatalf("an older beat must not hide the registration: %d", p.GetLastHeartbeatUnixMs())
	}
	if p := s.ToProto("svc", "i", timeMs(1500)); p.GetLastHeartbeatUnixMs() != 1500 || p.GetStatus() != StatusDown || p.GetDownSinceUnixMs() != 2000 {
		t.Fatalf("proto %v", p)
	}
}

func TestInstanceCodecRoundTrip(t *testing.T) {
	events := map[string]*messages.InstanceEvent{
		"InstanceRegistered":       registered(1, validSpec()),
		"InstanceHeartbeatLost":    heartbeatLost(2),
		"InstanceHeartbeatResumed": heartbeatResumed(3),
		"InstanceProbeFailed":      probeFailed(4, "timeout"),
		"InstanceProbeRecovered":   probeRecovered(5),
		"InstanceRemoved":          removed(6),
	}
	for typ, ev := range events {
		data, err := instanceCodec.Encode(ev)
		if err != nil {
			t.Fatalf("encode %s: %v", typ, err)
		}
		if data.Type != typ || data.OccurredAt.UnixMilli() != ev.GetOccurredAtUnixMs() {
			t.Fatalf("encoded %s as %s at %v", typ, data.Type, data.OccurredAt)
		}
		got, err := instanceCodec.Decode(persistence.Event{Stream: InstanceStream("svc/i"), Version: 1, Type: data.Type, Data: data.Data})
		if err != nil {
			t.Fatalf("decode %s: %v", typ, err)
		}
		if !proto.Equal(got, ev) {
			t.Fatalf("%s: round trip gave %v, want %v", typ, got, ev)
		}
		if instanceCodec.CommandID(got) != ev.GetCommandId() {
			t.Fatalf("command id %q", instanceCodec.CommandID(got))
		}
		// The type name must agree with the payload.
		for other := range events {
			if other == typ {
				continue
			}
			if _, err := instanceCodec.Decode(persistence.Event{Type: other, Data: data.Data}); !errors.Is(err, persistence.ErrCorrupt) {
				t.Fatalf("%s data under type %s: %v, want ErrCorrupt", typ, other, err)
			}
		}
	}
	if _, err := instanceCodec.Encode(&messages.InstanceEvent{}); err == nil {
		t.Fatal("an event without a payload must not encode")
	}
	for _, bad := range []persistence.Event{
		{Type: "InstanceUnknown", Data: mustMarshal(t, heartbeatLost(1))},
		{Type: "InstanceHeartbeatLost", Data: []byte{0xff, 0xff, 0xff}},
		{Type: "InstanceHeartbeatLost", Data: nil},
	} {
		if _, err := instanceCodec.Decode(bad); !errors.Is(err, persistence.ErrCorrupt) {
			t.Errorf("decode %s %x: %v, want ErrCorrupt", bad.Type, bad.Data, err)
		}
	}
	if instanceCodec.Stream("svc/i") != "svcinst-svc/i" {
		t.Fatalf("stream %q", instanceCodec.Stream("svc/i"))
	}
}

func TestInstanceSnapshotRoundTrip(t *testing.T) {
	spec := validSpec()
	spec.Metadata = map[string]string{"zone": "a"}
	spec.HealthCheckPath = "/h"
	s := Instance{Spec: spec, RegisteredAt: 100, RegBeat: 200, HeartbeatLost: true, ProbeFailing: true, ProbeDetail: "refused",
		DownSince: 300, Removed: true, RemovedAt: 400, Version: 42}
	data, err := instanceCodec.EncodeSnapshot(s, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	got, recent, err := instanceCodec.DecodeSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.Spec, s.Spec) {
		t.Fatalf("spec %v, want %v", got.Spec, s.Spec)
	}
	got.Spec = s.Spec
	if got != s {
		t.Fatalf("snapshot round trip %+v, want %+v", got, s)
	}
	if len(recent) != 2 || recent[0] != "a" || recent[1] != "b" {
		t.Fatalf("recent %v", recent)
	}
	if instanceCodec.Version(got) != 42 {
		t.Fatal("version")
	}
	if _, _, err := instanceCodec.DecodeSnapshot([]byte{0xff, 0xff}); err == nil {
		t.Fatal("garbage snapshot must fail")
	}
}

func putRoute(r *messages.RouteSpec) *messages.RouteEvent {
	return &messages.RouteEvent{CommandId: "c-put", OccurredAtUnixMs: 7, Event: &messages.RouteEvent_Put{Put: &messages.RoutePut{Route: r}}}
}

func deletedRoute(name string) *messages.RouteEvent {
	return &messages.RouteEvent{CommandId: "c-del", OccurredAtUnixMs: 8, Event: &messages.RouteEvent_Deleted{Deleted: &messages.RouteDeleted{Name: name}}}
}

func TestRouteCodecRoundTrip(t *testing.T) {
	full := &messages.RouteSpec{Name: "users", PathPrefix: "/users", Service: "user-svc", RewritePrefix: "/v2", Methods: []string{"GET", "POST"},
		Strategy: Random, TimeoutMs: 1234, Auth: AuthPublic}
	for typ, ev := range map[string]*messages.RouteEvent{"RoutePut": putRoute(full), "RouteDeleted": deletedRoute("users")} {
		data, err := routeCodec.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		if data.Type != typ || data.OccurredAt.UnixMilli() != ev.GetOccurredAtUnixMs() {
			t.Fatalf("encoded as %s at %v, want %s", data.Type, data.OccurredAt, typ)
		}
		got, err := routeCodec.Decode(persistence.Event{Type: typ, Data: data.Data})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, ev) || routeCodec.CommandID(got) != ev.GetCommandId() {
			t.Fatalf("round trip %v, want %v", got, ev)
		}
	}
	putData, _ := routeCodec.Encode(putRoute(full))
	delData, _ := routeCodec.Encode(deletedRoute("users"))
	for _, bad := range []persistence.Event{
		{Type: "RouteDeleted", Data: putData.Data},
		{Type: "RoutePut", Data: delData.Data},
		{Type: "RouteRenamed", Data: putData.Data},
		{Type: "RoutePut", Data: []byte{0xff, 0xff}},
		{Type: "RoutePut", Data: mustMarshal(t, &messages.RouteEvent{Event: &messages.RouteEvent_Put{Put: &messages.RoutePut{}}})},
	} {
		if _, err := routeCodec.Decode(bad); !errors.Is(err, persistence.ErrCorrupt) {
			t.Errorf("decode %s %x: %v, want ErrCorrupt", bad.Type, bad.Data, err)
		}
	}

	table := Routes{Routes: []*messages.RouteSpec{full, {Name: "z", PathPrefix: "/z", Service: "z", Strategy: RoundRobin, TimeoutMs: 1, Auth: AuthRequired}}, Version: 9}
	snap, err := routeCodec.EncodeSnapshot(table, []string{"x"})
	if err != nil {
		t.Fatal(err)
	}
	got, recent, err := routeCodec.DecodeSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 9 || len(got.Routes) != 2 || !proto.Equal(got.Routes[0], full) || !proto.Equal(got.Routes[1], table.Routes[1]) || len(recent) != 1 || recent[0] != "x" {
		t.Fatalf("route snapshot %+v %v", got, recent)
	}
	if routeCodec.Stream(RouteTableID) != "routes-routes" {
		t.Fatalf("stream %q", routeCodec.Stream(RouteTableID))
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func timeMs(ms int64) time.Time { return time.UnixMilli(ms) }
