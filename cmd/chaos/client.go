package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"granary/internal/chaos"
)

// api calls the gateways as a real client would.
type api struct {
	c     *cluster
	token string
	http  *http.Client
}

type answer struct {
	status     int
	code       string
	body       []byte
	retryAfter time.Duration
	err        error
}

func (a *api) do(ctx context.Context, gw int, method, path string, body any, key string, timeout time.Duration) answer {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return answer{err: err}
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.c.gateway(gw)+path, rd)
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return answer{status: resp.StatusCode, err: fmt.Errorf("reading body: %w", err)}
	}
	ans := answer{status: resp.StatusCode, body: b}
	if resp.StatusCode >= 400 {
		var p struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(b, &p)
		ans.code = p.Code
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		ans.retryAfter = time.Duration(s) * time.Second
	}
	return ans
}

// indeterminate reports whether an answer leaves the outcome unknown, so
// a client retries it with the same key (on another gateway).
func (ans answer) indeterminate() bool {
	if ans.err != nil && ans.status == 0 {
		return true
	}
	switch ans.status {
	case 503, 504, 429:
		return true
	case 409:
		return ans.code == "request_in_progress"
	}
	return ans.err != nil // a body cut off mid-way
}

const (
	maxAttempts = 8
	opBudget    = 45 * time.Second // give up (indeterminate) after this
)

// run sends one logical operation, retrying with the same key on the next
// gateway while the answer is indeterminate, honouring Retry-After.
func (a *api) run(ctx context.Context, op *chaos.Op, gw int, method, path string, body any, timeout time.Duration) answer {
	op.Call = time.Now()
	op.Outcome = chaos.Indeterminate
	deadline := op.Call.Add(opBudget)
	var last answer
	for attempt := 0; attempt < maxAttempts; attempt++ {
		g := (gw + attempt) % 3
		last = a.do(ctx, g, method, path, body, op.ID, timeout)
		at := chaos.Attempt{Gateway: fmt.Sprintf("member%d", g+1), Status: last.status, Code: last.code, At: time.Now()}
		if last.err != nil {
			at.Err = last.err.Error()
		}
		op.Attempts = append(op.Attempts, at)
		if !last.indeterminate() {
			op.Return = time.Now()
			return last
		}
		wait := 200 * time.Millisecond << min(attempt, 3)
		if last.retryAfter > 0 {
			wait = min(last.retryAfter, 3*time.Second)
		}
		if time.Now().Add(wait).After(deadline) {
			break
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return last
		}
	}
	return last
}

type accountJSON struct {
	ID      string `json:"id"`
	Balance int64  `json:"balance"`
}

type transferJSON struct {
	TransferID string `json:"transfer_id"`
	Status     string `json:"status"`
}

// history collects the operations of every client.
type history struct {
	mu    sync.Mutex
	ops   []chaos.Op
	n     atomic.Int64
	ok    atomic.Int64
	indet atomic.Int64
}

func (h *history) add(op chaos.Op) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
	h.n.Add(1)
	switch op.Outcome {
	case chaos.OK:
		h.ok.Add(1)
	case chaos.Indeterminate:
		h.indet.Add(1)
	}
}

func (h *history) all() []chaos.Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]chaos.Op(nil), h.ops...)
}

// worker runs random operations on random gateways until stop is closed.
// Operations already started finish (with their retries) on ctx, so the
// history holds as few unresolved ones as possible.
func (a *api) worker(ctx context.Context, stop <-chan struct{}, id int, accounts []string, h *history, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, uint64(id)))
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		op := chaos.Op{ID: fmt.Sprintf("chaos-%d-%d-%d", seed%100000, id, n), Client: id}
		op.Account = accounts[rng.IntN(len(accounts))]
		gw := rng.IntN(3)
		switch p := rng.IntN(100); {
		case p < 35:
			op.Kind, op.Amount = chaos.Deposit, 1+rng.Int64N(500)
			ans := a.run(ctx, &op, gw, "POST", "/api/v1/accounts/"+op.Account+"/deposits",
				map[string]any{"amount": op.Amount, "description": op.ID}, 8*time.Second)
			classify(&op, ans)
		case p < 60:
			op.Kind, op.Amount = chaos.Withdraw, 1+rng.Int64N(700)
			if rng.IntN(10) == 0 {
				op.Amount = 5000 + rng.Int64N(20000) // often more than there is
			}
			ans := a.run(ctx, &op, gw, "POST", "/api/v1/accounts/"+op.Account+"/withdrawals",
				map[string]any{"amount": op.Amount, "description": op.ID}, 8*time.Second)
			classify(&op, ans)
		case p < 90:
			op.Kind = chaos.Read
			op.Call = time.Now()
			op.Outcome = chaos.Indeterminate
			// A read changes nothing, so it is not retried: an unanswered
			// read is simply dropped from the history.
			ans := a.do(ctx, gw, "GET", "/api/v1/accounts/"+op.Account, nil, "", 8*time.Second)
			op.Attempts = append(op.Attempts, chaos.Attempt{Gateway: fmt.Sprintf("member%d", gw+1), Status: ans.status, Code: ans.code, At: time.Now()})
			if !ans.indeterminate() {
				op.Return = time.Now()
			}
			classify(&op, ans)
		default:
			op.Kind, op.Amount = chaos.Transfer, 1+rng.Int64N(400)
			for op.To = op.Account; op.To == op.Account; {
				op.To = accounts[rng.IntN(len(accounts))]
			}
			op.ID = "tr-" + op.ID
			ans := a.run(ctx, &op, gw, "POST", "/api/v1/transfers",
				map[string]any{"transfer_id": op.ID, "from_account": op.Account, "to_account": op.To, "amount": op.Amount}, 30*time.Second)
			classify(&op, ans)
		}
		h.add(op)
	}
}

// classify turns the last answer into the operation's outcome.
func classify(op *chaos.Op, ans answer) {
	if ans.indeterminate() {
		op.Outcome = chaos.Indeterminate
		op.Return = time.Time{}
		return
	}
	switch {
	case ans.status >= 200 && ans.status < 300:
		op.Outcome = chaos.OK
		if op.Kind == chaos.Transfer {
			var t transferJSON
			_ = json.Unmarshal(ans.body, &t)
			op.Status = t.Status
		} else {
			var acc accountJSON
			if err := json.Unmarshal(ans.body, &acc); err != nil {
				op.Outcome = chaos.Indeterminate
				op.Return = time.Time{}
				return
			}
			op.Balance = acc.Balance
		}
	case ans.status == 409 && ans.code == "insufficient_funds":
		op.Outcome = chaos.Insufficient
	default:
		op.Outcome = chaos.Refused
		if op.Kind == chaos.Transfer && ans.status == 422 {
			var body struct {
				Transfer transferJSON `json:"transfer"`
			}
			_ = json.Unmarshal(ans.body, &body)
			op.Status = body.Transfer.Status
		}
	}
}
