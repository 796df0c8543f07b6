package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"granary/http/auth"
	"granary/testkit"
)

// upstream is a `granary example-service` child process: a real service
// outside the cluster that registers and heartbeats over HTTP.
type upstream struct {
	cmd    *exec.Cmd
	id     string
	port   int
	stderr *bytes.Buffer
	done   chan struct{}
}

// startUpstream runs the example service registered as user-service/id
// with gateway, and waits until it says it is registered.
func startUpstream(t *testing.T, secret, gateway, id string, ttl int) *upstream {
	t.Helper()
	cmd := exec.Command(granaryBinary(t), "example-service", "-name", "user-service", "-id", id,
		"-port", "0", "-gateway", gateway, "-ttl", strconv.Itoa(ttl))
	// GRANARY_TOKEN empty: the service mints its own service-role token.
	cmd.Env = append(os.Environ(), "GRANARY_JWT_SECRET="+secret, "GRANARY_TOKEN=")
	// An os.Pipe rather than StdoutPipe: the reader may still be scanning
	// when Wait returns, which StdoutPipe forbids.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{cmd: cmd, id: id, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stdout = w
	cmd.Stderr = &lockedWriter{w: u.stderr}
	if err := cmd.Start(); err != nil {
		_ = r.Close()
		_ = w.Close()
		t.Fatal(err)
	}
	_ = w.Close()
	ports := make(chan int, 1)
	prefix := "example-service user-service/" + id + " listening on http://127.0.0.1:"
	go func() {
		defer r.Close()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				if p, err := strconv.Atoi(strings.TrimRight(strings.Fields(rest)[0], ",")); err == nil {
					ports <- p
				}
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(u.done) }()
	t.Cleanup(func() { u.kill(t) })
	select {
	case u.port = <-ports:
	case <-u.done:
		t.Fatalf("example-service %s exited before registering:\n%s", id, u.stderr)
	case <-time.After(30 * time.Second):
		u.kill(t)
		t.Fatalf("example-service %s did not register in 30s:\n%s", id, u.stderr)
	}
	return u
}

// kill sends SIGKILL, so the instance cannot deregister: the registry must
// notice on its own.
func (u *upstream) kill(t *testing.T) { u.signal(t, syscall.SIGKILL) }

// stop sends SIGTERM: the service deregisters before it exits.
func (u *upstream) stop(t *testing.T) { u.signal(t, syscall.SIGTERM) }

func (u *upstream) signal(t *testing.T, sig os.Signal) {
	select {
	case <-u.done:
		return
	default:
	}
	_ = u.cmd.Process.Signal(sig)
	select {
	case <-u.done:
	case <-time.After(10 * time.Second):
		t.Errorf("example-service %s survived %v for 10s", u.id, sig)
		_ = u.cmd.Process.Kill()
	}
}

// proxied is one request of the traffic generator.
type proxied struct {
	start, end time.Time
	status     int // 0: no response within the client timeout, or a transport error
	err        string
}

type instancesBody struct {
	Instances []registryJSONBody `json:"instances"`
}

type registryJSONBody struct {
	InstanceID    string  `json:"instance_id"`
	Status        string  `json:"status"`
	RegisteredAt  *string `json:"registered_at"`
	LastHeartbeat *string `json:"last_heartbeat"`
}

// The registry's promise "survives the loss of any member", with real
// processes: three members on a real Redis, two real upstreams, a route.
// The member hosting an instance grain is killed with SIGKILL while
// traffic flows through another gateway; traffic keeps being answered,
// the registrations are intact, the grain answers from a survivor, and
// its health probing (a durable reminder) still runs there.
func TestRegistrySurvivesKillOfHostingMember(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const ttl = 3 // seconds
	redisURL := testkit.RealRedisURL(t)
	secret := "registry-kill-secret-0123456789abcdef"
	cl := startCluster3(t, redisURL, secret, "regkill-"+randHex())
	tok, err := auth.Issue([]byte(secret), "root", []string{auth.RoleAdmin}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}
	t.Cleanup(transport.CloseIdleConnections)
	admin := client{token: tok, http: &http.Client{Timeout: 10 * time.Second, Transport: transport}}
	ids := cl.waitFormed(admin, 20*time.Second)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// Killed first so their stderr is complete and no longer written.
		for i, n := range cl.nodes {
			n.kill(t)
			t.Logf("node %d (%s) stderr tail:\n%s", i, n.member, tail(n.stderr.String(), 40))
		}
	})

	// Both upstreams heartbeat through gateway 0, which therefore is never
	// the victim: its death would stop the heartbeats, not test the grains.
	gw0 := cl.nodes[0].base
	instPath := func(id string) string { return "/api/v1/registry/user-service/instances/" + id }
	hostOf := func(id string) string {
		t.Helper()
		var by string
		c := admin
		c.base = gw0
		testkit.WaitFor(t, 10*time.Second, func() error {
			code, hdr, err := c.call("POST", instPath(id)+"/heartbeat", nil, nil, nil)
			if err != nil || code != 200 {
				return fmt.Errorf("heartbeat %s: %d %v", id, code, err)
			}
			if by = hdr.Get("X-Served-By"); by == "" {
				return fmt.Errorf("heartbeat %s: no X-Served-By", id)
			}
			return nil
		})
		return by
	}
	ups := []*upstream{
		startUpstream(t, secret, gw0, "users-a-"+randHex(), ttl),
		startUpstream(t, secret, gw0, "users-b-"+randHex(), ttl),
	}
	// Grains are placed by hashing their identity; replace the second
	// upstream (it deregisters on SIGTERM) until member 1 or 2 hosts one.
	victim, victimUp := -1, -1
	var hosts [2]string
	for attempt := 0; victim < 0; attempt++ {
		if attempt == 8 {
			t.Fatalf("after 8 placements no instance grain lives on member 1 or 2 (hosts %v)", hosts)
		}
		if attempt > 0 {
			ups[1].stop(t)
			ups[1] = startUpstream(t, secret, gw0, fmt.Sprintf("users-b%d-%s", attempt, randHex()), ttl)
		}
		hosts = [2]string{hostOf(ups[0].id), hostOf(ups[1].id)}
		// Prefer a victim hosting exactly one grain, so one instance's
		// registry stays untouched; a victim hosting both is a valid case too.
		best := 0
		for _, m := range []int{1, 2} {
			n := 0
			for _, h := range hosts {
				if h == ids[m] {
					n++
				}
			}
			if n > 0 && (best == 0 || n < best) {
				best, victim = n, m
			}
		}
	}
	for i, h := range hosts {
		if h == ids[victim] {
			victimUp = i
			break
		}
	}
	traffic := 3 - victim // the member of {1, 2} that is not the victim
	survivors := []string{ids[0], ids[traffic]}
	t.Logf("instance grains: %s on %s, %s on %s; victim node %d (%s), traffic through node %d",
		ups[0].id, hosts[0], ups[1].id, hosts[1], victim, ids[victim], traffic)

	admin.base = gw0
	code, hdr, err := admin.call("PUT", "/api/v1/routes/users",
		map[string]any{"path_prefix": "/api/users", "service": "user-service", "rewrite_prefix": "/users"}, nil, nil)
	if err != nil || (code != 201 && code != 200) {
		t.Fatalf("put route: %d %v", code, err)
	}
	t.Logf("route table grain on %s", hdr.Get("X-Served-By"))
	for i, n := range cl.nodes {
		c := admin
		c.base = n.base
		testkit.WaitFor(t, 10*time.Second, func() error {
			if code, err := c.do("GET", "/api/users/1", nil, nil); err != nil || code != 200 {
				return fmt.Errorf("gateway %d: GET /api/users/1: %d %v", i, code, err)
			}
			return nil
		})
	}
	// The traffic gateway must balance over both before the kill, so a
	// gap afterwards is the kill's doing.
	tc := admin
	tc.base = cl.nodes[traffic].base
	seen := map[string]bool{}
	testkit.WaitFor(t, 10*time.Second, func() error {
		code, hdr, err := tc.call("GET", "/api/users/1", nil, nil, nil)
		if err != nil || code != 200 {
			return fmt.Errorf("GET /api/users/1: %d %v", code, err)
		}
		seen[hdr.Get("X-Served-By")] = true
		if !seen[ups[0].id] || !seen[ups[1].id] {
			return fmt.Errorf("traffic gateway served by %v only", seen)
		}
		return nil
	})
	listing := func() (map[string]registryJSONBody, error) {
		var body instancesBody
		code, err := tc.do("GET", "/api/v1/registry/user-service/instances", nil, &body)
		if err != nil || code != 200 {
			return nil, fmt.Errorf("list instances: %d %v", code, err)
		}
		out := map[string]registryJSONBody{}
		for _, in := range body.Instances {
			out[in.InstanceID] = in
		}
		return out, nil
	}
	before, err := listing()
	if err != nil {
		t.Fatal(err)
	}
	registeredAt := map[string]string{}
	for _, u := range ups {
		in, ok := before[u.id]
		if !ok || in.Status != "UP" || in.RegisteredAt == nil {
			t.Fatalf("before the kill %s is %+v", u.id, in)
		}
		registeredAt[u.id] = *in.RegisteredAt
	}

	// Traffic: four workers so one request stuck for its full 2 s timeout
	// does not by itself read as an outage.
	trafficClient := &http.Client{Timeout: 2 * time.Second, Transport: transport}
	var (
		mu       sync.Mutex
		samples  []proxied
		stop     = make(chan struct{})
		stopOnce sync.Once
		wg       sync.WaitGroup
	)
	halt := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	t.Cleanup(halt) // a failed wait must not leave the workers running
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				s := proxied{start: time.Now()}
				req, err := http.NewRequest("GET", fmt.Sprintf("%s/api/users/%d", tc.base, w*100000+n), nil)
				if err != nil {
					s.err = err.Error()
				} else {
					req.Header.Set("Authorization", "Bearer "+tok)
					if resp, err := trafficClient.Do(req); err != nil {
						s.err = err.Error()
					} else {
						s.status = resp.StatusCode
						_, _ = io.Copy(io.Discard, resp.Body)
						_ = resp.Body.Close()
					}
				}
				s.end = time.Now()
				mu.Lock()
				samples = append(samples, s)
				mu.Unlock()
			}
		}()
	}
	okSince := func(at time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range samples {
			if s.status == 200 && s.end.After(at) {
				n++
			}
		}
		return n
	}
	trafficStart := time.Now()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := okSince(trafficStart); n < 50 {
			return fmt.Errorf("%d proxied 200s before the kill", n)
		}
		return nil
	})

	killedAt := time.Now()
	cl.nodes[victim].kill(t)
	since := func() time.Duration { return time.Since(killedAt).Round(time.Millisecond) }
	remaining := func() time.Duration { return 15*time.Second - time.Since(killedAt) }

	// While the grain is homeless, watch what the survivors list for it:
	// its upstream's heartbeats go to a grain that is gone.
	var (
		watchMu     sync.Mutex
		maxStaleUp  time.Duration // age of last_heartbeat while listed UP
		downSeenAt  time.Duration // first DOWN listing, 0 if none
		watchStop   = make(chan struct{})
		watchDone   = make(chan struct{})
		watchHalted sync.Once
	)
	moved := ups[victimUp]
	go func() {
		defer close(watchDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-watchStop:
				return
			case <-tick.C:
			}
			now, err := listing()
			if err != nil {
				continue
			}
			in := now[moved.id]
			watchMu.Lock()
			if in.Status == "UP" && in.LastHeartbeat != nil {
				if beat, err := time.Parse(time.RFC3339Nano, *in.LastHeartbeat); err == nil {
					maxStaleUp = max(maxStaleUp, time.Since(beat))
				}
			}
			if in.Status == "DOWN" && downSeenAt == 0 {
				downSeenAt = time.Since(killedAt)
			}
			watchMu.Unlock()
		}
	}()
	haltWatch := func() { watchHalted.Do(func() { close(watchStop) }); <-watchDone }
	t.Cleanup(haltWatch)

	// The dead member's grain answers again, from a survivor.
	var rehomedOn string
	testkit.WaitFor(t, remaining(), func() error {
		code, hdr, err := tc.call("POST", instPath(moved.id)+"/heartbeat", nil, nil, nil)
		if err != nil || code != 200 {
			return fmt.Errorf("heartbeat %s: %d %v", moved.id, code, err)
		}
		if by := hdr.Get("X-Served-By"); !slices.Contains(survivors, by) {
			return fmt.Errorf("heartbeat %s served by %q, want one of %v", moved.id, by, survivors)
		}
		rehomedOn = hdr.Get("X-Served-By")
		return nil
	})
	rehomedAt := since()
	haltWatch()
	// Registrations intact once the grain has reloaded on a survivor:
	// both UP, registered_at as before (no re-registration, no lost state).
	testkit.WaitFor(t, remaining(), func() error {
		now, err := listing()
		if err != nil {
			return err
		}
		for _, u := range ups {
			in, ok := now[u.id]
			if !ok || in.Status != "UP" || in.RegisteredAt == nil || *in.RegisteredAt != registeredAt[u.id] {
				return fmt.Errorf("%s is %+v (registered_at before: %s)", u.id, in, registeredAt[u.id])
			}
		}
		return nil
	})
	listedAt := since()
	// Traffic keeps running until a proxied request has succeeded after
	// the grain moved, so the window covers the whole failover.
	afterRehome := time.Now()
	testkit.WaitFor(t, 5*time.Second, func() error {
		if n := okSince(afterRehome); n < 20 {
			return fmt.Errorf("%d proxied 200s since the grain moved", n)
		}
		return nil
	})
	halt()
	trafficEnd := time.Now()

	// The longest stretch without a 200: between consecutive successful
	// answers, and from the last one to the end of the traffic.
	mu.Lock()
	all := slices.Clone(samples)
	mu.Unlock()
	var okEnds []time.Time
	statuses := map[int]int{}
	var bad []proxied
	var timeouts int
	for _, s := range all {
		statuses[s.status]++
		switch {
		case s.status == 200:
			okEnds = append(okEnds, s.end)
		case s.status == 0:
			timeouts++
		case s.status != 503 && s.status != 504:
			bad = append(bad, s)
		}
	}
	slices.SortFunc(okEnds, func(a, b time.Time) int { return a.Compare(b) })
	okEnds = append(okEnds, trafficEnd)
	var gap time.Duration
	var gapStart time.Time
	for i := 1; i < len(okEnds); i++ {
		if d := okEnds[i].Sub(okEnds[i-1]); d > gap {
			gap, gapStart = d, okEnds[i-1]
		}
	}
	t.Logf("traffic: %d requests over %v through node %d; statuses %v (0 = no answer in 2s: %d)",
		len(all), trafficEnd.Sub(trafficStart).Round(time.Millisecond), traffic, statuses, timeouts)
	t.Logf("longest stretch without a 200: %v, starting %v after the kill", gap.Round(time.Millisecond), gapStart.Sub(killedAt).Round(time.Millisecond))
	t.Logf("after the kill: %s heartbeats via %s at +%v; both instances listed UP with registered_at unchanged at +%v",
		moved.id, rehomedOn, rehomedAt, listedAt)
	watchMu.Lock()
	t.Logf("while its grain was homeless, %s was listed UP with a last_heartbeat up to %v old (ttl %ds); first listed DOWN at +%v (0: never)",
		moved.id, maxStaleUp.Round(time.Millisecond), ttl, downSeenAt.Round(time.Millisecond))
	watchMu.Unlock()
	for i, s := range bad {
		if i == 5 {
			break
		}
		t.Errorf("status %d at +%v", s.status, s.end.Sub(killedAt).Round(time.Millisecond))
	}
	if len(bad) > 0 {
		t.Errorf("%d proxied answers were neither 200 nor 503/504", len(bad))
	}
	if gap > 2*time.Second {
		t.Errorf("no 200 for %v (from +%v after the kill), want at most 2s", gap.Round(time.Millisecond), gapStart.Sub(killedAt).Round(time.Millisecond))
	}

	// Probing still runs for the moved grain: its upstream dies without
	// deregistering; the registry marks it DOWN, then removes it.
	upKilledAt := time.Now()
	moved.kill(t)
	testkit.WaitFor(t, (ttl+4)*time.Second, func() error {
		now, err := listing()
		if err != nil {
			return err
		}
		if in := now[moved.id]; in.Status != "DOWN" {
			return fmt.Errorf("%s is %+v since its upstream died", moved.id, in)
		}
		return nil
	})
	downAfter := time.Since(upKilledAt)
	// Polling the listing, not the heartbeat: a heartbeat would refresh
	// the instance it is waiting to see removed.
	testkit.WaitFor(t, (3*ttl+6)*time.Second, func() error {
		now, err := listing()
		if err != nil {
			return err
		}
		if in, ok := now[moved.id]; ok {
			return fmt.Errorf("%s still listed: %+v", moved.id, in)
		}
		return nil
	})
	removedAfter := time.Since(upKilledAt)
	if code, err := tc.do("POST", instPath(moved.id)+"/heartbeat", nil, nil); err != nil || code != 404 {
		t.Fatalf("heartbeat of the removed %s: %d %v, want 404", moved.id, code, err)
	}
	if now, err := listing(); err != nil || now[ups[1-victimUp].id].Status != "UP" {
		t.Fatalf("the other instance after the removal: %+v %v", now, err)
	}
	t.Logf("upstream %s killed: DOWN after %v, removed (404) after %v (ttl %ds)",
		moved.id, downAfter.Round(time.Millisecond), removedAfter.Round(time.Millisecond), ttl)
}

// tail keeps the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
