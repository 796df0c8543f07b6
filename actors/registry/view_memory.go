package registry

import (
	"context"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/messages"
)

// MemoryView is a View in this process only: for a member whose journal
// is in memory too (tests, a single process). Every member of a real
// cluster must share one RedisView.
type MemoryView struct {
	mu            sync.Mutex
	rev           uint64
	instances     map[string]InstanceRecord
	beats         map[string]int64
	routes        []*messages.RouteSpec
	routesVersion uint64
}

// NewMemoryView returns an empty view.
func NewMemoryView() *MemoryView {
	return &MemoryView{instances: map[string]InstanceRecord{}, beats: map[string]int64{}}
}

// PutInstance implements View.
func (v *MemoryView) PutInstance(_ context.Context, rec InstanceRecord) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	key := InstanceIdentity(rec.Service, rec.InstanceID)
	if cur, ok := v.instances[key]; ok && cur.Version >= rec.Version {
		return false, nil
	}
	rec.Metadata = cloneMap(rec.Metadata)
	v.instances[key] = rec
	v.rev++
	return true, nil
}

// PurgeInstance implements View.
func (v *MemoryView) PurgeInstance(_ context.Context, service, id string, version uint64) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	key := InstanceIdentity(service, id)
	if cur, ok := v.instances[key]; ok && cur.Removed && cur.Version == version {
		delete(v.instances, key)
		delete(v.beats, key)
		v.rev++
	}
	return nil
}

// Beat implements View.
func (v *MemoryView) Beat(_ context.Context, service, id string, at time.Time) (time.Time, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	key := InstanceIdentity(service, id)
	if ms := at.UnixMilli(); ms > v.beats[key] {
		v.beats[key] = ms
	}
	return time.UnixMilli(v.beats[key]), nil
}

// LastBeat implements View.
func (v *MemoryView) LastBeat(_ context.Context, service, id string) (time.Time, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	ms, ok := v.beats[InstanceIdentity(service, id)]
	if !ok {
		return time.Time{}, nil
	}
	return time.UnixMilli(ms), nil
}

// PutRoutes implements View.
func (v *MemoryView) PutRoutes(_ context.Context, version uint64, routes []*messages.RouteSpec) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.routesVersion >= version {
		return false, nil
	}
	v.routes, v.routesVersion = cloneRoutes(routes), version
	v.rev++
	return true, nil
}

// Count implements View.
func (v *MemoryView) Count(context.Context) (int64, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return int64(len(v.instances)), nil
}

// Rev implements View.
func (v *MemoryView) Rev(context.Context) (uint64, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.rev, nil
}

// Load implements View.
func (v *MemoryView) Load(context.Context) (Snapshot, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := Snapshot{Rev: v.rev, Beats: make(map[string]int64, len(v.beats)), Routes: cloneRoutes(v.routes), RoutesVersion: v.routesVersion}
	for _, rec := range v.instances {
		if !rec.Removed {
			rec.Metadata = cloneMap(rec.Metadata)
			s.Instances = append(s.Instances, rec)
		}
	}
	for k, ms := range v.beats {
		s.Beats[k] = ms
	}
	return s, nil
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func cloneRoutes(rs []*messages.RouteSpec) []*messages.RouteSpec {
	out := slices.Clone(rs)
	for i, r := range out {
		out[i] = proto.Clone(r).(*messages.RouteSpec)
	}
	return out
}
