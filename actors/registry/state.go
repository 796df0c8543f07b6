package registry

import (
	"time"

	"granary/actors/es"
	"granary/messages"
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

// InstanceStream names an instance's journal stream.
func InstanceStream(identity string) string { return "svcinst-" + identity }

// Event type names in the journal: stored forever.
var instanceCodec = *es.ProtoCodec(es.Proto[Instance, *messages.InstanceEvent, *messages.InstanceSnapshot]{
	Stream:  InstanceStream,
	Apply:   ApplyInstance,
	Version: func(s Instance) uint64 { return s.Version },
	Types: []es.EventType[*messages.InstanceEvent]{
		{Name: "InstanceRegistered", Is: func(e *messages.InstanceEvent) bool { return e.GetRegistered() != nil }},
		{Name: "InstanceHeartbeatLost", Is: func(e *messages.InstanceEvent) bool { return e.GetHeartbeatLost() != nil }},
		{Name: "InstanceHeartbeatResumed", Is: func(e *messages.InstanceEvent) bool { return e.GetHeartbeatResumed() != nil }},
		{Name: "InstanceProbeFailed", Is: func(e *messages.InstanceEvent) bool { return e.GetProbeFailed() != nil }},
		{Name: "InstanceProbeRecovered", Is: func(e *messages.InstanceEvent) bool { return e.GetProbeRecovered() != nil }},
		{Name: "InstanceRemoved", Is: func(e *messages.InstanceEvent) bool { return e.GetRemoved() != nil }},
	},
	Snapshot: func(s Instance, recent []string) *messages.InstanceSnapshot {
		return &messages.InstanceSnapshot{State: s.ToProto("", "", time.Time{}), RecentCommandIds: recent}
	},
	Restore: func(snap *messages.InstanceSnapshot) (Instance, []string) {
		st := snap.GetState()
		return Instance{Spec: st.GetSpec(), RegisteredAt: st.GetRegisteredAtUnixMs(), RegBeat: st.GetLastHeartbeatUnixMs(),
			HeartbeatLost: st.GetHeartbeatLost(), ProbeFailing: st.GetProbeFailing(), ProbeDetail: st.GetProbeDetail(),
			DownSince: st.GetDownSinceUnixMs(), Removed: st.GetRemoved(), RemovedAt: st.GetRemovedAtUnixMs(), Version: st.GetVersion()}, snap.GetRecentCommandIds()
	},
})

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

// Event type names in the journal: stored forever. A put without its
// route was never stored, so one is corrupt.
var routeCodec = *es.ProtoCodec(es.Proto[Routes, *messages.RouteEvent, *messages.RouteSnapshot]{
	Stream:  func(id string) string { return "routes-" + id },
	Apply:   ApplyRoutes,
	Version: func(t Routes) uint64 { return t.Version },
	Types: []es.EventType[*messages.RouteEvent]{
		{Name: "RoutePut", Is: func(e *messages.RouteEvent) bool { return e.GetPut().GetRoute() != nil }},
		{Name: "RouteDeleted", Is: func(e *messages.RouteEvent) bool { return e.GetDeleted() != nil }},
	},
	Snapshot: func(t Routes, recent []string) *messages.RouteSnapshot {
		return &messages.RouteSnapshot{Routes: t.Routes, Version: t.Version, RecentCommandIds: recent}
	},
	Restore: func(snap *messages.RouteSnapshot) (Routes, []string) {
		return Routes{Routes: snap.GetRoutes(), Version: snap.GetVersion()}, snap.GetRecentCommandIds()
	},
})
