package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"granary/messages"
)

// InstanceRecord is an instance as its grain last published it.
type InstanceRecord struct {
	Service         string            `json:"service"`
	InstanceID      string            `json:"instance_id"`
	Host            string            `json:"host"`
	Port            int               `json:"port"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	HealthCheckPath string            `json:"health_check_path,omitempty"`
	TTLSeconds      int               `json:"ttl_seconds"`
	Status          string            `json:"status"`
	RegisteredAt    int64             `json:"registered_at"`
	DownReason      string            `json:"down_reason,omitempty"`
	// Removed marks a tombstone: kept (for a while) so that no older
	// activation can publish the instance back.
	Removed bool   `json:"removed,omitempty"`
	Version uint64 `json:"version"`
}

// Up reports whether the instance may get traffic.
func (r InstanceRecord) Up() bool { return !r.Removed && r.Status == StatusUp }

// Snapshot is the whole view at one revision.
type Snapshot struct {
	Rev       uint64
	Instances []InstanceRecord // tombstones excluded
	// Beats holds the last heartbeat (unix ms) of each instance identity.
	Beats         map[string]int64
	Routes        []*messages.RouteSpec
	RoutesVersion uint64
}

// View is where grains publish the registry and gateways read it. Every
// method honours ctx.
type View interface {
	// PutInstance publishes rec unless the stored record of the same
	// instance has a version >= rec.Version; changed reports a write.
	PutInstance(ctx context.Context, rec InstanceRecord) (changed bool, err error)
	// PurgeInstance deletes the instance's tombstone (and heartbeat) if it
	// is still the tombstone of version.
	PurgeInstance(ctx context.Context, service, id string, version uint64) error
	// Beat records a heartbeat at (keeping the latest) and returns the
	// latest stored.
	Beat(ctx context.Context, service, id string, at time.Time) (time.Time, error)
	// LastBeat returns the instance's latest heartbeat (zero when none).
	LastBeat(ctx context.Context, service, id string) (time.Time, error)
	// PutRoutes publishes the route table at version unless a table with
	// a version >= version is stored.
	PutRoutes(ctx context.Context, version uint64, routes []*messages.RouteSpec) (changed bool, err error)
	// Count counts published instance records, tombstones included.
	Count(ctx context.Context) (int64, error)
	// Rev is a counter that moves on every published change.
	Rev(ctx context.Context) (uint64, error)
	// Load reads the whole view.
	Load(ctx context.Context) (Snapshot, error)
}

// RedisView keeps the view in four keys under one hash tag (one slot on
// Redis Cluster): instances (hash "<service>/<id>" → "<version>|<json>"),
// beats (hash → unix ms), routes ("<version>|<json>") and rev.
type RedisView struct {
	rdb                           goredis.UniversalClient
	instances, beats, routes, rev string
}

// NewRedisView returns the view under keyPrefix ("granary" when empty).
func NewRedisView(rdb goredis.UniversalClient, keyPrefix string) *RedisView {
	if keyPrefix == "" {
		keyPrefix = "granary"
	}
	k := keyPrefix + ":{registry}:"
	return &RedisView{rdb: rdb, instances: k + "instances", beats: k + "beats", routes: k + "routes", rev: k + "rev"}
}

// putVersioned writes field (or, with field "", the string key) unless
// what is stored has a version >= ARGV[2]; it moves rev when it writes.
var putVersioned = goredis.NewScript(`
local cur
if ARGV[1] == '' then cur = redis.call('GET', KEYS[1]) else cur = redis.call('HGET', KEYS[1], ARGV[1]) end
if cur then
  local v = tonumber(string.match(cur, '^(%d+)|'))
  if v and v >= tonumber(ARGV[2]) then return 0 end
end
local val = ARGV[2] .. '|' .. ARGV[3]
if ARGV[1] == '' then redis.call('SET', KEYS[1], val) else redis.call('HSET', KEYS[1], ARGV[1], val) end
redis.call('INCR', KEYS[2])
return 1
`)

var purge = goredis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
local v = tonumber(string.match(cur, '^(%d+)|'))
if v ~= tonumber(ARGV[2]) or not string.find(cur, '"removed":true', 1, true) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
`)

var beat = goredis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local at = tonumber(ARGV[2])
if at > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]); return at end
return cur
`)

// PutInstance implements View.
func (v *RedisView) PutInstance(ctx context.Context, rec InstanceRecord) (bool, error) {
	body, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("publish instance %s/%s: %w", rec.Service, rec.InstanceID, err)
	}
	n, err := putVersioned.Run(ctx, v.rdb, []string{v.instances, v.rev}, InstanceIdentity(rec.Service, rec.InstanceID), rec.Version, body).Int()
	if err != nil {
		return false, fmt.Errorf("publish instance %s/%s: %w", rec.Service, rec.InstanceID, err)
	}
	return n == 1, nil
}

// PurgeInstance implements View.
func (v *RedisView) PurgeInstance(ctx context.Context, service, id string, version uint64) error {
	if err := purge.Run(ctx, v.rdb, []string{v.instances, v.beats, v.rev}, InstanceIdentity(service, id), version).Err(); err != nil {
		return fmt.Errorf("purge instance %s/%s: %w", service, id, err)
	}
	return nil
}

// Beat implements View.
func (v *RedisView) Beat(ctx context.Context, service, id string, at time.Time) (time.Time, error) {
	ms, err := beat.Run(ctx, v.rdb, []string{v.beats}, InstanceIdentity(service, id), at.UnixMilli()).Int64()
	if err != nil {
		return time.Time{}, fmt.Errorf("heartbeat %s/%s: %w", service, id, err)
	}
	return time.UnixMilli(ms), nil
}

// LastBeat implements View.
func (v *RedisView) LastBeat(ctx context.Context, service, id string) (time.Time, error) {
	ms, err := v.rdb.HGet(ctx, v.beats, InstanceIdentity(service, id)).Int64()
	switch {
	case errors.Is(err, goredis.Nil):
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, fmt.Errorf("read heartbeat of %s/%s: %w", service, id, err)
	}
	return time.UnixMilli(ms), nil
}

// PutRoutes implements View.
func (v *RedisView) PutRoutes(ctx context.Context, version uint64, routes []*messages.RouteSpec) (bool, error) {
	body, err := encodeRoutes(routes)
	if err != nil {
		return false, err
	}
	n, err := putVersioned.Run(ctx, v.rdb, []string{v.routes, v.rev}, "", version, body).Int()
	if err != nil {
		return false, fmt.Errorf("publish routes: %w", err)
	}
	return n == 1, nil
}

// Count implements View.
func (v *RedisView) Count(ctx context.Context) (int64, error) {
	n, err := v.rdb.HLen(ctx, v.instances).Result()
	if err != nil {
		return 0, fmt.Errorf("count instances: %w", err)
	}
	return n, nil
}

// Rev implements View.
func (v *RedisView) Rev(ctx context.Context) (uint64, error) {
	n, err := v.rdb.Get(ctx, v.rev).Uint64()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return 0, fmt.Errorf("read registry revision: %w", err)
	}
	return n, nil
}

// Load implements View. The revision is read first: a change landing
// while the rest is read moves it again, so the next poll reloads.
func (v *RedisView) Load(ctx context.Context) (Snapshot, error) {
	var snap Snapshot
	var rev, routes *goredis.StringCmd
	var insts, beats *goredis.MapStringStringCmd
	_, err := v.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		rev, insts, beats, routes = p.Get(ctx, v.rev), p.HGetAll(ctx, v.instances), p.HGetAll(ctx, v.beats), p.Get(ctx, v.routes)
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return snap, fmt.Errorf("load registry: %w", err)
	}
	if s, err := rev.Result(); err == nil {
		snap.Rev, _ = strconv.ParseUint(s, 10, 64)
	}
	for key, val := range insts.Val() {
		var rec InstanceRecord
		if _, body, ok := strings.Cut(val, "|"); !ok || json.Unmarshal([]byte(body), &rec) != nil {
			return snap, fmt.Errorf("load registry: instance %s does not decode", key)
		}
		if !rec.Removed {
			snap.Instances = append(snap.Instances, rec)
		}
	}
	snap.Beats = make(map[string]int64, len(beats.Val()))
	for key, val := range beats.Val() {
		if ms, err := strconv.ParseInt(val, 10, 64); err == nil {
			snap.Beats[key] = ms
		}
	}
	if s, err := routes.Result(); err == nil {
		ver, body, _ := strings.Cut(s, "|")
		snap.RoutesVersion, _ = strconv.ParseUint(ver, 10, 64)
		if snap.Routes, err = decodeRoutes([]byte(body)); err != nil {
			return snap, err
		}
	}
	return snap, nil
}

// routeJSON is a route as the contract shows it (and the view stores it).
type routeJSON struct {
	Name          string   `json:"name"`
	PathPrefix    string   `json:"path_prefix"`
	Service       string   `json:"service"`
	RewritePrefix string   `json:"rewrite_prefix"`
	Methods       []string `json:"methods"`
	Strategy      string   `json:"strategy"`
	TimeoutMS     int32    `json:"timeout_ms"`
	Auth          string   `json:"auth"`
}

// RouteJSON renders a route for the contract.
func RouteJSON(r *messages.RouteSpec) any {
	m := r.GetMethods()
	if m == nil {
		m = []string{}
	}
	return routeJSON{Name: r.GetName(), PathPrefix: r.GetPathPrefix(), Service: r.GetService(), RewritePrefix: r.GetRewritePrefix(),
		Methods: m, Strategy: r.GetStrategy(), TimeoutMS: r.GetTimeoutMs(), Auth: r.GetAuth()}
}

func encodeRoutes(routes []*messages.RouteSpec) ([]byte, error) {
	out := make([]any, 0, len(routes))
	for _, r := range routes {
		out = append(out, RouteJSON(r))
	}
	body, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("publish routes: %w", err)
	}
	return body, nil
}

func decodeRoutes(body []byte) ([]*messages.RouteSpec, error) {
	var in []routeJSON
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("load registry: routes do not decode: %w", err)
	}
	out := make([]*messages.RouteSpec, 0, len(in))
	for _, r := range in {
		out = append(out, &messages.RouteSpec{Name: r.Name, PathPrefix: r.PathPrefix, Service: r.Service, RewritePrefix: r.RewritePrefix,
			Methods: r.Methods, Strategy: r.Strategy, TimeoutMs: r.TimeoutMS, Auth: r.Auth})
	}
	return out, nil
}
