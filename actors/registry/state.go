package registry

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/actors/es"
	"granary/messages"
	"granary/persistence"
)

// Instance is a registered instance folded from its events; the zero
// Instance was never registered.
type Instance struct {
	Spec *messages.InstanceSpec
	// RegisteredAt: when the registration began; RegBeat: its last
	// registration or update (each is a heartbeat too). Unix ms.
	RegisteredAt, RegBeat int64
	HeartbeatLost         bool
	ProbeFailing          bool
	ProbeDetail           string
	// DownSince: when it last went DOWN (0 while UP).
	DownSince int64
	Removed   bool
	RemovedAt int64
	Version   uint64
}

// Exists reports whether the instance is registered now.
func (s Instance) Exists() bool { return s.Version > 0 && !s.Removed && s.Spec != nil }

// Status is UP while the last heartbeat is fresh and, when probed, the
// probes pass.
func (s Instance) Status() string {
	if s.HeartbeatLost || s.ProbeFailing {
		return StatusDown
	}
	return StatusUp
}

// TTL is the registration's heartbeat window.
func (s Instance) TTL() time.Duration { return time.Duration(s.Spec.GetTtlSeconds()) * time.Second }

func (s Instance) downReason() string {
	switch {
	case s.HeartbeatLost && s.ProbeFailing:
		return "heartbeat,probe"
	case s.HeartbeatLost:
		return "heartbeat"
	case s.ProbeFailing:
		return "probe"
	}
	return ""
}

// ToProto renders the instance; lastBeat is its latest heartbeat.
func (s Instance) ToProto(service, id string, lastBeat time.Time) *messages.InstanceState {
	return &messages.InstanceState{Service: service, InstanceId: id, Spec: s.Spec, Status: s.Status(),
		RegisteredAtUnixMs: s.RegisteredAt, LastHeartbeatUnixMs: max(lastBeat.UnixMilli(), s.RegBeat), Removed: s.Removed,
		Version: s.Version, HeartbeatLost: s.HeartbeatLost, ProbeFailing: s.ProbeFailing, DownSinceUnixMs: s.DownSince,
		ProbeDetail: s.ProbeDetail, RemovedAtUnixMs: s.RemovedAt}
}

// Record is what the instance publishes in the view.
func (s Instance) Record(service, id string) InstanceRecord {
	return InstanceRecord{Service: service, InstanceID: id, Host: s.Spec.GetHost(), Port: int(s.Spec.GetPort()), Metadata: s.Spec.GetMetadata(),
		HealthCheckPath: s.Spec.GetHealthCheckPath(), TTLSeconds: int(s.Spec.GetTtlSeconds()), Status: s.Status(),
		RegisteredAt: s.RegisteredAt, DownReason: s.downReason(), Removed: s.Removed, Version: s.Version}
}

// ApplyInstance folds a stored event into s. It is pure.
func ApplyInstance(s Instance, _ string, ev *messages.InstanceEvent) Instance {
	at := ev.GetOccurredAtUnixMs()
	down := func() {
		if s.DownSince == 0 {
			s.DownSince = at
		}
	}
	upIfClear := func() {
		if !s.HeartbeatLost && !s.ProbeFailing {
			s.DownSince = 0
		}
	}
	switch e := ev.GetEvent().(type) {
	case *messages.InstanceEvent_Registered:
		if !s.Exists() {
			s = Instance{RegisteredAt: at, Version: s.Version}
		}
		// A registration, new or updated, starts UP.
		s.Spec, s.RegBeat = e.Registered.GetSpec(), at
		s.HeartbeatLost, s.ProbeFailing, s.ProbeDetail, s.DownSince = false, false, "", 0
	case *messages.InstanceEvent_HeartbeatLost:
		s.HeartbeatLost = true
		down()
	case *messages.InstanceEvent_HeartbeatResumed:
		s.HeartbeatLost = false
		upIfClear()
	case *messages.InstanceEvent_ProbeFailed:
		s.ProbeFailing, s.ProbeDetail = true, e.ProbeFailed.GetDetail()
		down()
	case *messages.InstanceEvent_ProbeRecovered:
		s.ProbeFailing, s.ProbeDetail = false, ""
		upIfClear()
	case *messages.InstanceEvent_Removed:
		s.Removed, s.RemovedAt = true, at
	}
	s.Version++
	return s
}

// Event type names in the journal: stored forever.
var instanceTypes = map[string]func(*messages.InstanceEvent) bool{
	"InstanceRegistered":       func(e *messages.InstanceEvent) bool { return e.GetRegistered() != nil },
	"InstanceHeartbeatLost":    func(e *messages.InstanceEvent) bool { return e.GetHeartbeatLost() != nil },
	"InstanceHeartbeatResumed": func(e *messages.InstanceEvent) bool { return e.GetHeartbeatResumed() != nil },
	"InstanceProbeFailed":      func(e *messages.InstanceEvent) bool { return e.GetProbeFailed() != nil },
	"InstanceProbeRecovered":   func(e *messages.InstanceEvent) bool { return e.GetProbeRecovered() != nil },
	"InstanceRemoved":          func(e *messages.InstanceEvent) bool { return e.GetRemoved() != nil },
}

func instanceType(ev *messages.InstanceEvent) string {
	for name, is := range instanceTypes {
		if is(ev) {
			return name
		}
	}
	return ""
}

// InstanceStream names an instance's journal stream.
func InstanceStream(identity string) string { return "svcinst-" + identity }

var instanceCodec = es.Codec[Instance, *messages.InstanceEvent]{
	Stream:  InstanceStream,
	Apply:   ApplyInstance,
	Version: func(s Instance) uint64 { return s.Version },
	Encode: func(ev *messages.InstanceEvent) (persistence.EventData, error) {
		typ := instanceType(ev)
		data, err := proto.Marshal(ev)
		if err != nil || typ == "" {
			return persistence.EventData{}, fmt.Errorf("encode instance event %T: %v", ev.GetEvent(), err)
		}
		return persistence.EventData{Type: typ, Data: data, OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs())}, nil
	},
	Decode: func(e persistence.Event) (*messages.InstanceEvent, error) {
		var ev messages.InstanceEvent
		err := proto.Unmarshal(e.Data, &ev)
		if is := instanceTypes[e.Type]; err != nil || is == nil || !is(&ev) {
			return nil, fmt.Errorf("decode %s@%d (%s): %v: %w", e.Stream, e.Version, e.Type, err, persistence.ErrCorrupt)
		}
		return &ev, nil
	},
	CommandID: func(ev *messages.InstanceEvent) string { return ev.GetCommandId() },
	EncodeSnapshot: func(s Instance, recent []string) ([]byte, error) {
		return proto.Marshal(&messages.InstanceSnapshot{State: s.ToProto("", "", time.Time{}), RecentCommandIds: recent})
	},
	DecodeSnapshot: func(data []byte) (Instance, []string, error) {
		var snap messages.InstanceSnapshot
		err := proto.Unmarshal(data, &snap)
		st := snap.GetState()
		return Instance{Spec: st.GetSpec(), RegisteredAt: st.GetRegisteredAtUnixMs(), RegBeat: st.GetLastHeartbeatUnixMs(),
			HeartbeatLost: st.GetHeartbeatLost(), ProbeFailing: st.GetProbeFailing(), ProbeDetail: st.GetProbeDetail(),
			DownSince: st.GetDownSinceUnixMs(), Removed: st.GetRemoved(), RemovedAt: st.GetRemovedAtUnixMs(), Version: st.GetVersion()}, snap.GetRecentCommandIds(), err
	},
}

// Routes is the route table folded from its events.
type Routes struct {
	Routes  []*messages.RouteSpec // sorted by name
	Version uint64
}

func (t Routes) find(name string) int {
	for i, r := range t.Routes {
		if r.GetName() == name {
			return i
		}
	}
	return -1
}

// ApplyRoutes folds a stored event into t. It is pure (it copies).
func ApplyRoutes(t Routes, _ string, ev *messages.RouteEvent) Routes {
	routes := append([]*messages.RouteSpec(nil), t.Routes...)
	switch e := ev.GetEvent().(type) {
	case *messages.RouteEvent_Put:
		r := e.Put.GetRoute()
		if i := (Routes{Routes: routes}).find(r.GetName()); i >= 0 {
			routes[i] = r
		} else {
			routes = append(routes, r)
		}
	case *messages.RouteEvent_Deleted:
		if i := (Routes{Routes: routes}).find(e.Deleted.GetName()); i >= 0 {
			routes = append(routes[:i], routes[i+1:]...)
		}
	}
	sortRoutes(routes)
	return Routes{Routes: routes, Version: t.Version + 1}
}

var routeCodec = es.Codec[Routes, *messages.RouteEvent]{
	Stream:  func(id string) string { return "routes-" + id },
	Apply:   ApplyRoutes,
	Version: func(t Routes) uint64 { return t.Version },
	Encode: func(ev *messages.RouteEvent) (persistence.EventData, error) {
		typ := "RoutePut"
		if ev.GetDeleted() != nil {
			typ = "RouteDeleted"
		}
		data, err := proto.Marshal(ev)
		if err != nil {
			return persistence.EventData{}, fmt.Errorf("encode route event: %w", err)
		}
		return persistence.EventData{Type: typ, Data: data, OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs())}, nil
	},
	Decode: func(e persistence.Event) (*messages.RouteEvent, error) {
		var ev messages.RouteEvent
		err := proto.Unmarshal(e.Data, &ev)
		ok := err == nil && (e.Type == "RoutePut" && ev.GetPut().GetRoute() != nil || e.Type == "RouteDeleted" && ev.GetDeleted() != nil)
		if !ok {
			return nil, fmt.Errorf("decode %s@%d (%s): %v: %w", e.Stream, e.Version, e.Type, err, persistence.ErrCorrupt)
		}
		return &ev, nil
	},
	CommandID: func(ev *messages.RouteEvent) string { return ev.GetCommandId() },
	EncodeSnapshot: func(t Routes, recent []string) ([]byte, error) {
		return proto.Marshal(&messages.RouteSnapshot{Routes: t.Routes, Version: t.Version, RecentCommandIds: recent})
	},
	DecodeSnapshot: func(data []byte) (Routes, []string, error) {
		var snap messages.RouteSnapshot
		err := proto.Unmarshal(data, &snap)
		return Routes{Routes: snap.GetRoutes(), Version: snap.GetVersion()}, snap.GetRecentCommandIds(), err
	},
}
