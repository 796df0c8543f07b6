package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"granary/messages"
)

const envRedisURL = "GRANARY_REDIS_URL"

var (
	_ View = (*MemoryView)(nil)
	_ View = (*RedisView)(nil)
)

// TestViewConformance runs one suite against every View: memory and
// miniredis always, real Redis when GRANARY_REDIS_URL is set.
func TestViewConformance(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) View{
		"memory":    func(*testing.T) View { return NewMemoryView() },
		"miniredis": miniredisView,
		"redis":     realRedisView,
	} {
		t.Run(name, func(t *testing.T) { runViewSuite(t, open) })
	}
}

func miniredisView(t *testing.T) View {
	mr := miniredis.RunT(t)
	c := goredis.NewClient(&goredis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return NewRedisView(c, "")
}

// realRedisView uses a random key prefix and deletes its keys afterwards.
func realRedisView(t *testing.T) View {
	url := os.Getenv(envRedisURL)
	if url == "" {
		t.Skipf("%s not set", envRedisURL)
	}
	opt, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatalf("%s: %v", envRedisURL, err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
	c := goredis.NewClient(opt)
	var r [6]byte
	_, _ = rand.Read(r[:])
	prefix := "granarytest-registry-" + hex.EncodeToString(r[:])
	v := NewRedisView(c, prefix)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Del(ctx, v.instances, v.beats, v.routes, v.rev).Err(); err != nil {
			t.Errorf("cleaning up %s: %v", prefix, err)
		}
		_ = c.Close()
	})
	return v
}

func runViewSuite(t *testing.T, open func(t *testing.T) View) {
	t.Run("empty", func(t *testing.T) {
		v, ctx := open(t), testCtx(t)
		snap := must[Snapshot](t)(v.Load(ctx))
		if snap.Rev != 0 || len(snap.Instances) != 0 || len(snap.Beats) != 0 || len(snap.Routes) != 0 || snap.RoutesVersion != 0 {
			t.Fatalf("empty view loads %+v", snap)
		}
		if n := must[int64](t)(v.Count(ctx)); n != 0 {
			t.Fatalf("count %d", n)
		}
		if b := must[time.Time](t)(v.LastBeat(ctx, "svc", "i")); !b.IsZero() {
			t.Fatalf("no beat must be the zero time, got %v", b)
		}
	})

	t.Run("instance version fence", func(t *testing.T) {
		v, ctx := open(t), testCtx(t)
		rec := viewRecord("svc", "i", 5)
		if !must[bool](t)(v.PutInstance(ctx, rec)) {
			t.Fatal("first write must change")
		}
		rev := must[uint64](t)(v.Rev(ctx))
		if rev == 0 {
			t.Fatal("a write must move rev")
		}
		for _, ver := range []uint64{5, 4, 1} {
			old := viewRecord("svc", "i", ver)
			old.Port = 1
			if must[bool](t)(v.PutInstance(ctx, old)) {
				t.Fatalf("version %d over 5 must be ignored", ver)
			}
		}
		if got := must[uint64](t)(v.Rev(ctx)); got != rev {
			t.Fatalf("an ignored write moved rev %d → %d", rev, got)
		}
		snap := must[Snapshot](t)(v.Load(ctx))
		if len(snap.Instances) != 1 || snap.Instances[0].Port != rec.Port || snap.Instances[0].Version != 5 {
			t.Fatalf("load %+v", snap.Instances)
		}
		newer := viewRecord("svc", "i", 6)
		newer.Status, newer.DownReason = StatusDown, "probe"
		if !must[bool](t)(v.PutInstance(ctx, newer)) {
			t.Fatal("a newer version must be written")
		}
		if got := must[uint64](t)(v.Rev(ctx)); got <= rev {
			t.Fatalf("rev %d did not move past %d", got, rev)
		}
		snap = must[Snapshot](t)(v.Load(ctx))
		if len(snap.Instances) != 1 || !equalRecord(snap.Instances[0], newer) {
			t.Fatalf("load %+v, want %+v", snap.Instances, newer)
		}
		if snap.Rev != must[uint64](t)(v.Rev(ctx)) {
			t.Fatalf("load rev %d, Rev %d", snap.Rev, must[uint64](t)(v.Rev(ctx)))
		}
	})

	t.Run("tombstone and purge", func(t *testing.T) {
		v, ctx := open(t), testCtx(t)
		must[bool](t)(v.PutInstance(ctx, viewRecord("svc", "i", 3)))
		must[bool](t)(v.PutInstance(ctx, viewRecord("svc", "other", 1)))
		must[time.Time](t)(v.Beat(ctx, "svc", "i", time.UnixMilli(1000)))
		tomb := viewRecord("svc", "i", 4)
		tomb.Removed = true
		if !must[bool](t)(v.PutInstance(ctx, tomb)) {
			t.Fatal("tombstone must be written")
		}
		snap := must[Snapshot](t)(v.Load(ctx))
		if len(snap.Instances) != 1 || snap.Instances[0].InstanceID != "other" {
			t.Fatalf("a tombstone must be hidden from Load: %+v", snap.Instances)
		}
		if n := must[int64](t)(v.Count(ctx)); n != 2 {
			t.Fatalf("count %d, want 2 (tombstones count)", n)
		}
		if must[bool](t)(v.PutInstance(ctx, viewRecord("svc", "i", 3))) {
			t.Fatal("the tombstone must fence an older version")
		}
		rev := must[uint64](t)(v.Rev(ctx))
		// Purging another version, or a live record, does nothing.
		if err := v.PurgeInstance(ctx, "svc", "i", 3); err != nil {
			t.Fatal(err)
		}
		if err := v.PurgeInstance(ctx, "svc", "other", 1); err != nil {
			t.Fatal(err)
		}
		if err := v.PurgeInstance(ctx, "svc", "ghost", 1); err != nil {
			t.Fatal(err)
		}
		if n := must[int64](t)(v.Count(ctx)); n != 2 {
			t.Fatalf("count %d after purges that must not apply", n)
		}
		if got := must[uint64](t)(v.Rev(ctx)); got != rev {
			t.Fatalf("a purge that did nothing moved rev %d → %d", rev, got)
		}
		if b := must[time.Time](t)(v.LastBeat(ctx, "svc", "i")); b.UnixMilli() != 1000 {
			t.Fatalf("beat %v dropped by a purge that did not apply", b)
		}
		if err := v.PurgeInstance(ctx, "svc", "i", 4); err != nil {
			t.Fatal(err)
		}
		if n := must[int64](t)(v.Count(ctx)); n != 1 {
			t.Fatalf("count %d after purging the tombstone", n)
		}
		if got := must[uint64](t)(v.Rev(ctx)); got <= rev {
			t.Fatal("a purge must move rev")
		}
		if b := must[time.Time](t)(v.LastBeat(ctx, "svc", "i")); !b.IsZero() {
			t.Fatalf("the purge must drop the beat, got %v", b)
		}
		// Purged, the identity is free: a new registration starts low again.
		if !must[bool](t)(v.PutInstance(ctx, viewRecord("svc", "i", 1))) {
			t.Fatal("after purge any version may be written")
		}
	})

	t.Run("beats", func(t *testing.T) {
		v, ctx := open(t), testCtx(t)
		if got := must[time.Time](t)(v.Beat(ctx, "svc", "i", time.UnixMilli(2000))); got.UnixMilli() != 2000 {
			t.Fatalf("beat returned %v", got)
		}
		if got := must[time.Time](t)(v.Beat(ctx, "svc", "i", time.UnixMilli(1500))); got.UnixMilli() != 2000 {
			t.Fatalf("an older beat must return the latest, got %d", got.UnixMilli())
		}
		if got := must[time.Time](t)(v.LastBeat(ctx, "svc", "i")); got.UnixMilli() != 2000 {
			t.Fatalf("last beat %d", got.UnixMilli())
		}
		if got := must[time.Time](t)(v.Beat(ctx, "svc", "i", time.UnixMilli(3000))); got.UnixMilli() != 3000 {
			t.Fatalf("a newer beat returned %d", got.UnixMilli())
		}
		must[time.Time](t)(v.Beat(ctx, "svc", "j", time.UnixMilli(10)))
		if got := must[time.Time](t)(v.LastBeat(ctx, "other", "i")); !got.IsZero() {
			t.Fatalf("beats leak across identities: %v", got)
		}
		snap := must[Snapshot](t)(v.Load(ctx))
		if len(snap.Beats) != 2 || snap.Beats["svc/i"] != 3000 || snap.Beats["svc/j"] != 10 {
			t.Fatalf("load beats %v", snap.Beats)
		}
	})

	t.Run("routes", func(t *testing.T) {
		v, ctx := open(t), testCtx(t)
		routes := []*messages.RouteSpec{
			{Name: "a", PathPrefix: "/a", Service: "svc-a", RewritePrefix: "/v1", Methods: []string{"GET", "POST"}, Strategy: LeastConnections, TimeoutMs: 250, Auth: AuthPublic},
			{Name: "b", PathPrefix: "/b/c", Service: "svc-b", Strategy: RoundRobin, TimeoutMs: DefaultTimeoutMS, Auth: AuthRequired},
		}
		if !must[bool](t)(v.PutRoutes(ctx, 3, routes)) {
			t.Fatal("first routes write must change")
		}
		rev := must[uint64](t)(v.Rev(ctx))
		for _, ver := range []uint64{3, 2} {
			if must[bool](t)(v.PutRoutes(ctx, ver, routes[:1])) {
				t.Fatalf("routes version %d over 3 must be ignored", ver)
			}
		}
		if got := must[uint64](t)(v.Rev(ctx)); got != rev {
			t.Fatalf("ignored routes write moved rev %d → %d", rev, got)
		}
		routes[0].Service = "mutated-after-put"
		snap := must[Snapshot](t)(v.Load(ctx))
		routes[0].Service = "svc-a"
		if snap.RoutesVersion != 3 || len(snap.Routes) != 2 {
			t.Fatalf("loaded routes v%d %v", snap.RoutesVersion, snap.Routes)
		}
		for i := range routes {
			if !proto.Equal(snap.Routes[i], routes[i]) {
				t.Fatalf("route %d: loaded %v, want %v", i, snap.Routes[i], routes[i])
			}
		}
		if !must[bool](t)(v.PutRoutes(ctx, 4, nil)) {
			t.Fatal("a newer empty table must be written")
		}
		snap = must[Snapshot](t)(v.Load(ctx))
		if snap.RoutesVersion != 4 || len(snap.Routes) != 0 || snap.Rev <= rev {
			t.Fatalf("after emptying: v%d %v rev %d", snap.RoutesVersion, snap.Routes, snap.Rev)
		}
	})

	t.Run("load round trip", func(t *testing.T) {
		v, ctx := open(t), testCtx(t)
		a, b := viewRecord("svc", "a", 1), viewRecord("svc2", "b", 7)
		b.Metadata, b.HealthCheckPath = nil, ""
		must[bool](t)(v.PutInstance(ctx, a))
		must[bool](t)(v.PutInstance(ctx, b))
		a.Metadata["zone"] = "changed-after-put"
		snap := must[Snapshot](t)(v.Load(ctx))
		a.Metadata["zone"] = "eu-1"
		if len(snap.Instances) != 2 {
			t.Fatalf("load %+v", snap.Instances)
		}
		byID := map[string]InstanceRecord{}
		for _, r := range snap.Instances {
			byID[r.InstanceID] = r
		}
		if !equalRecord(byID["a"], a) || !equalRecord(byID["b"], b) {
			t.Fatalf("load %+v, want %+v and %+v", snap.Instances, a, b)
		}
	})
}

func viewRecord(service, id string, version uint64) InstanceRecord {
	return InstanceRecord{Service: service, InstanceID: id, Host: "127.0.0.1", Port: 8080, Metadata: map[string]string{"zone": "eu-1"},
		HealthCheckPath: "/health", TTLSeconds: 10, Status: StatusUp, RegisteredAt: 1000, Version: version}
}

func equalRecord(a, b InstanceRecord) bool {
	if len(a.Metadata) != len(b.Metadata) {
		return false
	}
	for k, v := range a.Metadata {
		if b.Metadata[k] != v {
			return false
		}
	}
	a.Metadata, b.Metadata = nil, nil
	return reflect.DeepEqual(a, b)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// must returns a helper that fails t on err and otherwise yields the value.
func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
