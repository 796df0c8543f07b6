package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"granary/http/auth"
	"granary/testkit"
)

// scheduledBody is a Transfer as GET /api/v1/transfers/{id} renders it,
// with the step times that say when the saga really moved money.
type scheduledBody struct {
	TransferID  string `json:"transfer_id"`
	FromAccount string `json:"from_account"`
	ToAccount   string `json:"to_account"`
	Amount      int64  `json:"amount"`
	Status      string `json:"status"`
	ExecuteAt   string `json:"execute_at"`
	Steps       []struct {
		Name      string  `json:"name"`
		Status    string  `json:"status"`
		StartedAt *string `json:"started_at"`
		UpdatedAt *string `json:"updated_at"`
	} `json:"steps"`
}

// firedAt is when the first step began, and finishedAt when the last one
// last changed, by the members' clocks (the same machine as the test's).
func (b scheduledBody) firedAt() (fired, finished time.Time, err error) {
	for _, s := range b.Steps {
		if s.StartedAt != nil {
			at, err := time.Parse(time.RFC3339Nano, *s.StartedAt)
			if err != nil {
				return fired, finished, fmt.Errorf("step %s started_at: %w", s.Name, err)
			}
			if fired.IsZero() || at.Before(fired) {
				fired = at
			}
		}
		if s.UpdatedAt != nil {
			at, err := time.Parse(time.RFC3339Nano, *s.UpdatedAt)
			if err != nil {
				return fired, finished, fmt.Errorf("step %s updated_at: %w", s.Name, err)
			}
			if at.After(finished) {
				finished = at
			}
		}
	}
	if fired.IsZero() {
		return fired, finished, fmt.Errorf("transfer %s: no step began (%+v)", b.TransferID, b.Steps)
	}
	return fired, finished, nil
}

// observation is one answered read, stamped when its answer arrived: a
// read answered before a time saw the state of before that time.
type observation struct {
	at     time.Time
	code   int
	status string
	from   int64
	to     int64
	by     string // X-Served-By
	err    string
}

// dumpOnFailure logs every node's stderr tail if t failed.
func dumpOnFailure(t *testing.T, cl *cluster3) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for i, n := range cl.nodes {
			n.kill(t)
			t.Logf("node %d (%s) stderr tail:\n%s", i, n.member, tail(n.stderr.String(), 40))
		}
	})
}

// The scheduled-transfer promise "at most 1 s after execute_at, even if
// the member that accepted it died meanwhile", with real processes: the
// member that armed the reminder (it hosts the saga grain) is killed with
// SIGKILL two seconds before the transfer's time; a survivor must fire it.
func TestScheduledTransferFiresAfterItsMemberDies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	redisURL := testkit.RealRedisURL(t)
	secret := "scheduled-kill-secret-0123456789abcdef"
	// Four partitions: the timers are split into four sets, all claimed by
	// every member's poller.
	cl := startCluster3(t, redisURL, secret, "schedkill-"+randHex(), "GRANARY_JOURNAL_PARTITIONS=4")
	tok, err := auth.Issue([]byte(secret), "root", []string{auth.RoleAdmin}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}
	t.Cleanup(transport.CloseIdleConnections)
	admin := client{token: tok, http: &http.Client{Timeout: 10 * time.Second, Transport: transport}, base: cl.nodes[0].base}
	ids := cl.waitFormed(admin, 20*time.Second)
	dumpOnFailure(t, cl)

	const initial, amount = 10_000, 2_500
	open := func(name string, balance int64) accountBody {
		var a accountBody
		if code, err := admin.do("POST", "/api/v1/accounts", map[string]any{"account_number": fmt.Sprintf("SCH-%s-%s", name, randHex()), "owner_name": "S", "initial_balance": balance}, &a); code != 201 || err != nil {
			t.Fatalf("open %s: %d %v", name, code, err)
		}
		return a
	}
	from, to := open("from", initial), open("to", 0)

	// Through gateway 0; the saga grain, wherever it lives, arms the
	// reminder and answers with its member in X-Served-By.
	id := "sched-" + randHex()
	executeAt := time.Now().Add(3 * time.Second).Truncate(time.Millisecond)
	var posted scheduledBody
	code, hdr, err := admin.call("POST", "/api/v1/transfers", map[string]any{"transfer_id": id, "from_account": from.ID,
		"to_account": to.ID, "amount": amount, "execute_at": executeAt.Format(time.RFC3339Nano)}, &posted, nil)
	if err != nil || code != 202 || posted.Status != "scheduled" {
		t.Fatalf("schedule: %d %v %+v", code, err, posted)
	}
	host := hdr.Get("X-Served-By")
	victim := slices.Index(ids, host)
	if victim < 0 {
		t.Fatalf("X-Served-By %q names no member of %v", host, ids)
	}
	survivor := 0
	if victim == 0 {
		survivor = 1
	}
	t.Logf("transfer %s scheduled for %s via gateway 0; saga grain (which armed the reminder) on node %d (%s); reads via node %d",
		id, executeAt.Format(time.RFC3339Nano), victim, host, survivor)

	// The kill is part of the scenario's timeline, not a wait for a
	// condition: two seconds before the transfer's time.
	time.Sleep(time.Until(executeAt.Add(-2 * time.Second)))
	var before scheduledBody
	if code, err := admin.do("GET", "/api/v1/transfers/"+id, nil, &before); code != 200 || err != nil || before.Status != "scheduled" {
		t.Fatalf("just before the kill: %d %v %+v, want scheduled", code, err, before)
	}
	for _, a := range []accountBody{from, to} {
		var now accountBody
		if code, err := admin.do("GET", "/api/v1/accounts/"+a.ID, nil, &now); code != 200 || err != nil || now.Balance != a.Balance || now.Version != a.Version {
			t.Fatalf("just before the kill %s is %+v (%d %v), want %+v", a.ID, now, code, err, a)
		}
	}
	killedAt := time.Now()
	cl.nodes[victim].kill(t)
	t.Logf("killed node %d at execute_at%v", victim, killedAt.Sub(executeAt).Round(time.Millisecond))

	// Short per-read timeouts: a read stuck on the dead member's grain
	// must not hide what the next one would see.
	reader := client{token: tok, base: cl.nodes[survivor].base, http: &http.Client{Timeout: time.Second, Transport: transport}}
	var (
		mu        sync.Mutex
		transfers []observation
		balances  []observation
		views     []observation // status "gone": the reader's member no longer lists the victim
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	watch := func(read func() observation, into *[]observation) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				o := read()
				mu.Lock()
				*into = append(*into, o)
				mu.Unlock()
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
	watch(func() observation {
		var b scheduledBody
		code, hdr, err := reader.call("GET", "/api/v1/transfers/"+id, nil, &b, nil)
		o := observation{at: time.Now(), code: code, status: b.Status}
		if hdr != nil {
			o.by = hdr.Get("X-Served-By")
		}
		if err != nil {
			o.err = err.Error()
		}
		return o
	}, &transfers)
	watch(func() observation {
		var a, b accountBody
		c1, err1 := reader.do("GET", "/api/v1/accounts/"+from.ID, nil, &a)
		c2, err2 := reader.do("GET", "/api/v1/accounts/"+to.ID, nil, &b)
		o := observation{at: time.Now(), from: a.Balance, to: b.Balance}
		if err1 == nil && err2 == nil && c1 == 200 && c2 == 200 {
			o.code = 200
		} else {
			o.err = fmt.Sprintf("%d %v / %d %v", c1, err1, c2, err2)
		}
		return o
	}, &balances)
	watch(func() observation {
		var body membersBody
		code, err := reader.do("GET", "/api/v1/cluster/members", nil, &body)
		o := observation{at: time.Now(), code: code}
		if err == nil && code == 200 && !slices.ContainsFunc(body.live(), func(m memberOut) bool { return m.ID == host }) {
			o.status = "gone"
		}
		return o
	}, &views)
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	t.Cleanup(halt)

	// Waiting well past the contract's second, so a late fire is measured
	// rather than only reported as missing.
	var final scheduledBody
	testkit.WaitFor(t, time.Until(executeAt.Add(20*time.Second)), func() error {
		var b scheduledBody
		code, err := reader.do("GET", "/api/v1/transfers/"+id, nil, &b)
		if err != nil || code != 200 || b.Status != "completed" {
			return fmt.Errorf("transfer %s: %d %v %q", id, code, err, b.Status)
		}
		final = b
		return nil
	})
	seenCompleted := time.Now()
	halt()

	fired, finished, err := final.firedAt()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	firstCompleted, answeredBefore, unansweredBefore := time.Time{}, 0, 0
	var rehomed time.Time
	var rehomedOn string
	for _, o := range transfers {
		if o.code == 200 && o.by != "" && o.by != host && rehomed.IsZero() {
			rehomed, rehomedOn = o.at, o.by
		}
		if o.code == 200 && o.status == "completed" && firstCompleted.IsZero() {
			firstCompleted = o.at
		}
		if !o.at.Before(executeAt) {
			continue
		}
		if o.code != 200 {
			unansweredBefore++
			continue
		}
		answeredBefore++
		if o.status != "scheduled" {
			t.Errorf("at execute_at%v the transfer was %q, want scheduled", o.at.Sub(executeAt).Round(time.Millisecond), o.status)
		}
	}
	if firstCompleted.IsZero() {
		firstCompleted = seenCompleted
	}
	balAnswered := 0
	for _, o := range balances {
		if o.code != 200 || !o.at.Before(executeAt) {
			continue
		}
		balAnswered++
		if o.from != initial || o.to != 0 {
			t.Errorf("at execute_at%v balances were %d/%d, want %d/0: money moved early", o.at.Sub(executeAt).Round(time.Millisecond), o.from, o.to, initial)
		}
	}
	dropped := time.Time{}
	for _, o := range views {
		if o.status == "gone" {
			dropped = o.at
			break
		}
	}
	if dropped.IsZero() {
		t.Logf("node %d's member list still had the victim when the transfer completed", survivor)
	} else {
		t.Logf("node %d's member list dropped the victim %v after the kill", survivor, dropped.Sub(killedAt).Round(time.Millisecond))
	}
	t.Logf("the saga grain first answered from a survivor (%s) %v after the kill", rehomedOn, rehomed.Sub(killedAt).Round(time.Millisecond))
	t.Logf("reads before execute_at: transfer %d answered (all must be scheduled), %d unanswered; balances %d answered",
		answeredBefore, unansweredBefore, balAnswered)
	t.Logf("fired (first step began) at execute_at%+v, finished at execute_at%+v, first read completed at execute_at%+v; kill was at execute_at%v",
		fired.Sub(executeAt).Round(time.Millisecond), finished.Sub(executeAt).Round(time.Millisecond),
		firstCompleted.Sub(executeAt).Round(time.Millisecond), killedAt.Sub(executeAt).Round(time.Millisecond))
	if fired.Before(executeAt) {
		t.Errorf("fired %v before execute_at", executeAt.Sub(fired))
	}
	if late := finished.Sub(executeAt); late > time.Second {
		t.Errorf("completed %v after execute_at, the contract says at most 1s", late.Round(time.Millisecond))
	}

	// Moved exactly once: one event each, and the amount once.
	for _, c := range []struct {
		acc  accountBody
		want int64
	}{{from, initial - amount}, {to, amount}} {
		var a accountBody
		if code, err := reader.do("GET", "/api/v1/accounts/"+c.acc.ID, nil, &a); code != 200 || err != nil {
			t.Fatalf("get %s: %d %v", c.acc.ID, code, err)
		}
		if a.Balance != c.want || a.Version != c.acc.Version+1 {
			t.Errorf("%s: balance %d version %d, want %d and version %d (one movement)", c.acc.ID, a.Balance, a.Version, c.want, c.acc.Version+1)
		}
	}
}

// plannedTransfer is one transfer of the conservation test and what the
// test asked of it.
type plannedTransfer struct {
	id        string
	from, to  int
	amount    int64
	executeAt time.Time // zero: immediate
	cancel    bool
	host      string // member whose saga grain answered the scheduling
}

// Money is conserved across a kill with scheduled transfers in the mix:
// 30 scheduled over the next 2–6 s through random gateways, some cancelled,
// and immediate ones, while one member is killed with SIGKILL mid-way and
// restarted. Every transfer ends completed, compensated or cancelled, the
// balances are exactly what the completed ones imply, and nothing is
// left scheduled or started.
func TestConservationWithScheduledTransfersAcrossKills(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	redisURL := testkit.RealRedisURL(t)
	secret := "scheduled-conserve-secret-0123456789ab"
	cl := startCluster3(t, redisURL, secret, "schedcons-"+randHex(), "GRANARY_SAGA_SWEEP_INTERVAL=1s")
	tok, err := auth.Issue([]byte(secret), "root", []string{auth.RoleAdmin}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}
	t.Cleanup(transport.CloseIdleConnections)
	admin := client{token: tok, http: &http.Client{Timeout: 10 * time.Second, Transport: transport}, base: cl.nodes[0].base}
	cl.waitFormed(admin, 20*time.Second)
	dumpOnFailure(t, cl)

	const accounts, initial, scheduled, immediate, cancels = 8, 10_000, 30, 12, 6
	var accts []string
	for i := range accounts {
		var a accountBody
		if code, err := admin.do("POST", "/api/v1/accounts", map[string]any{"account_number": fmt.Sprintf("SCC-%s-%d", randHex(), i), "owner_name": "C", "initial_balance": initial}, &a); code != 201 || err != nil {
			t.Fatalf("open: %d %v", code, err)
		}
		accts = append(accts, a.ID)
	}

	r := rand.New(rand.NewPCG(42, 7))
	base := time.Now()
	var plan []*plannedTransfer
	for i := range scheduled + immediate {
		p := &plannedTransfer{id: fmt.Sprintf("sc-%s-%d", randHex(), i), from: r.IntN(accounts), amount: 1 + r.Int64N(4000)}
		p.to = (p.from + 1 + r.IntN(accounts-1)) % accounts
		if i < scheduled {
			// 2.5–6 s: at least 2 s ahead once posted, so a cancel has time.
			p.executeAt = base.Add(2500*time.Millisecond + time.Duration(r.Int64N(int64(3500*time.Millisecond)))).Truncate(time.Millisecond)
			p.cancel = i < cancels
		}
		plan = append(plan, p)
	}

	gateways := []string{cl.nodes[0].base, cl.nodes[1].base, cl.nodes[2].base}
	var gwMu sync.Mutex
	gatewayAt := func(k int) client {
		gwMu.Lock()
		defer gwMu.Unlock()
		c := admin
		c.base = gateways[k%len(gateways)]
		return c
	}
	body := func(p *plannedTransfer) map[string]any {
		b := map[string]any{"transfer_id": p.id, "from_account": accts[p.from], "to_account": accts[p.to], "amount": p.amount}
		if !p.executeAt.IsZero() {
			b["execute_at"] = p.executeAt.Format(time.RFC3339Nano)
		}
		return b
	}
	// Scheduled ones first, all before the kill: each answers 202
	// scheduled from its saga grain.
	for i, p := range plan[:scheduled] {
		var out scheduledBody
		c := gatewayAt(r.IntN(3))
		code, hdr, err := c.call("POST", "/api/v1/transfers", body(p), &out, nil)
		if err != nil || code != 202 || out.Status != "scheduled" {
			t.Fatalf("schedule %d (%s): %d %v %+v", i, p.id, code, err, out)
		}
		p.host = hdr.Get("X-Served-By")
	}
	cancelled := 0
	for _, p := range plan[:cancels] {
		var out scheduledBody
		c := gatewayAt(r.IntN(3))
		code, err := c.do("POST", "/api/v1/transfers/"+p.id+"/cancel", map[string]any{}, &out)
		if err != nil || code != 200 || out.Status != "cancelled" {
			t.Fatalf("cancel %s (due in %v): %d %v %+v", p.id, time.Until(p.executeAt).Round(time.Millisecond), code, err, out)
		}
		cancelled++
	}
	t.Logf("scheduled %d transfers due between +2.5s and +6s, cancelled %d, by +%v",
		scheduled, cancelled, time.Since(base).Round(time.Millisecond))

	// Immediate transfers, spread over the kill: one every 400 ms (a load
	// shape, not a wait for a condition).
	sc := &sagaClient{c: admin}
	sc.setGateways(gateways...)
	var wg sync.WaitGroup
	for i, p := range plan[scheduled:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 400 * time.Millisecond)
			sc.final(t, i, "/api/v1/transfers", "/api/v1/transfers/"+p.id, body(p))
		}()
	}

	// Kill member 1 mid-way through the schedule, restart it.
	time.Sleep(time.Until(base.Add(3500 * time.Millisecond)))
	cl.nodes[1].kill(t)
	killedAt := time.Now()
	gwMu.Lock()
	gateways = []string{cl.nodes[0].base, cl.nodes[2].base}
	gwMu.Unlock()
	sc.setGateways(cl.nodes[0].base, cl.nodes[2].base)
	victimHosted := 0
	for _, p := range plan[cancels:scheduled] {
		if p.host == cl.nodes[1].member && p.executeAt.After(killedAt) {
			victimHosted++
		}
	}
	t.Logf("killed member %s at +%v; it had armed %d of the uncancelled scheduled transfers still due",
		cl.nodes[1].member, killedAt.Sub(base).Round(time.Millisecond), victimHosted)
	cl.nodes[1] = startNode(t, cl.env[1]...)
	gwMu.Lock()
	gateways = []string{cl.nodes[0].base, cl.nodes[1].base, cl.nodes[2].base}
	gwMu.Unlock()
	sc.setGateways(gateways...)
	t.Logf("restarted as member %s at +%v", cl.nodes[1].member, time.Since(base).Round(time.Millisecond))
	wg.Wait()

	// Every transfer reaches an end.
	final := map[string]scheduledBody{}
	testkit.WaitFor(t, time.Until(base.Add(40*time.Second)), func() error {
		for k, p := range plan {
			if _, ok := final[p.id]; ok {
				continue
			}
			var b scheduledBody
			c := gatewayAt(k)
			code, err := c.do("GET", "/api/v1/transfers/"+p.id, nil, &b)
			if err != nil || code != 200 {
				return fmt.Errorf("transfer %s: %d %v", p.id, code, err)
			}
			switch b.Status {
			case "completed", "compensated", "cancelled":
				final[p.id] = b
			default:
				return fmt.Errorf("transfer %s is %q at +%v (due %v)", p.id, b.Status, time.Since(base).Round(time.Millisecond), p.executeAt.Sub(base))
			}
		}
		return nil
	})
	endedAt := time.Since(base)

	want := make([]int64, accounts)
	for i := range want {
		want[i] = initial
	}
	counts := map[string]int{}
	var worstLate time.Duration
	for _, p := range plan {
		b := final[p.id]
		kind := "immediate"
		if !p.executeAt.IsZero() {
			kind = "scheduled"
		}
		counts[kind+" "+b.Status]++
		if p.cancel && b.Status != "cancelled" {
			t.Errorf("%s was cancelled (200) but ended %q", p.id, b.Status)
		}
		if !p.cancel && b.Status == "cancelled" {
			t.Errorf("%s was never cancelled but ended cancelled", p.id)
		}
		if b.Status == "cancelled" {
			for _, s := range b.Steps {
				if s.StartedAt != nil {
					t.Errorf("cancelled %s has step %s begun (%s)", p.id, s.Name, s.Status)
				}
			}
		}
		if b.Status == "completed" {
			want[p.from] -= p.amount
			want[p.to] += p.amount
		}
		if !p.executeAt.IsZero() && b.Status != "cancelled" {
			fired, _, err := b.firedAt()
			if err != nil {
				t.Error(err)
				continue
			}
			if fired.Before(p.executeAt) {
				t.Errorf("%s fired %v before its execute_at", p.id, p.executeAt.Sub(fired))
			}
			worstLate = max(worstLate, fired.Sub(p.executeAt))
		}
	}
	t.Logf("all %d transfers ended by +%v: %v; latest scheduled fire %v after its execute_at",
		len(plan), endedAt.Round(time.Millisecond), counts, worstLate.Round(time.Millisecond))

	var open struct {
		Sagas []map[string]any `json:"sagas"`
	}
	if code, err := admin.do("GET", "/api/v1/sagas?status=scheduled,started,compensating", nil, &open); code != 200 || err != nil || len(open.Sagas) != 0 {
		t.Fatalf("sagas left unfinished: %d %v %v", code, err, open.Sagas)
	}
	var sum int64
	for i, id := range accts {
		var a accountBody
		if code, err := admin.do("GET", "/api/v1/accounts/"+id, nil, &a); code != 200 || err != nil {
			t.Fatalf("get %s: %d %v", id, code, err)
		}
		sum += a.Balance
		if a.Balance != want[i] {
			t.Errorf("account %d: balance %d, the completed transfers imply %d", i, a.Balance, want[i])
		}
	}
	if sum != accounts*initial {
		t.Errorf("sum of balances %d, want %d", sum, accounts*initial)
	}
}
