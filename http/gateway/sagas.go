package gateway

import (
	"context"
	"encoding/hex"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"granary/cluster/grains"
	"granary/http/idempotency"
	"granary/http/problem"
	"granary/messages"
	"granary/persistence"
)

// Saga, order, transfer, product and payment ids are grain identities:
// clients may choose them, within this pattern.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

type stepJSON struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Error  string `json:"error"`
	// When the step began and last changed (absent while pending and
	// never begun), so an operator can see where a saga spends its time.
	StartedAt *string `json:"started_at,omitempty"`
	UpdatedAt *string `json:"updated_at,omitempty"`
}

func renderSteps(s *messages.SagaState) []stepJSON {
	out := []stepJSON{}
	for _, st := range s.GetSteps() {
		out = append(out, stepJSON{Name: st.GetName(), Status: st.GetStatus(), Error: st.GetError(),
			StartedAt: msTime(st.GetStartedAtUnixMs()), UpdatedAt: msTime(st.GetUpdatedAtUnixMs())})
	}
	return out
}

func msTime(ms int64) *string {
	if ms == 0 {
		return nil
	}
	s := time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
	return &s
}

type transferJSON struct {
	TransferID  string     `json:"transfer_id"`
	FromAccount string     `json:"from_account"`
	ToAccount   string     `json:"to_account"`
	Amount      int64      `json:"amount"`
	Status      string     `json:"status"`
	FailedStep  string     `json:"failed_step"`
	Error       string     `json:"error"`
	Steps       []stepJSON `json:"steps"`
	// ExecuteAt is a scheduled transfer's time (absent otherwise).
	ExecuteAt *string `json:"execute_at,omitempty"`
}

func renderTransfer(s *messages.SagaState) transferJSON {
	t := s.GetTransfer()
	return transferJSON{TransferID: s.GetId(), FromAccount: t.GetFromAccount(), ToAccount: t.GetToAccount(), Amount: t.GetAmount(),
		Status: s.GetStatus(), FailedStep: s.GetFailedStep(), Error: s.GetError(), Steps: renderSteps(s),
		ExecuteAt: msTime(s.GetExecuteAtUnixMs())}
}

type orderJSON struct {
	OrderID    string     `json:"order_id"`
	SagaID     string     `json:"saga_id"`
	UserID     string     `json:"user_id"`
	ProductID  string     `json:"product_id"`
	Quantity   int64      `json:"quantity"`
	Amount     int64      `json:"amount"`
	PaymentID  string     `json:"payment_id"`
	Status     string     `json:"status"`
	FailedStep string     `json:"failed_step"`
	Error      string     `json:"error"`
	Steps      []stepJSON `json:"steps"`
}

func renderOrder(s *messages.SagaState) orderJSON {
	o := s.GetOrder()
	return orderJSON{OrderID: s.GetId(), SagaID: grains.SagaID(messages.OrderSagaKind, s.GetId()), UserID: o.GetUserId(), ProductID: o.GetProductId(),
		Quantity: o.GetQuantity(), Amount: o.GetAmount(), PaymentID: o.GetPaymentId(), Status: s.GetStatus(),
		FailedStep: s.GetFailedStep(), Error: s.GetError(), Steps: renderSteps(s)}
}

func getSaga(g *Gateway, c echo.Context, sagas grains.Sagas, id string) (*messages.SagaState, error) {
	r, err := call(g, c, func(ctx context.Context) (*messages.SagaReply, error) { return sagas.Get(ctx, id) })
	if err != nil {
		return nil, err
	}
	return r.GetSaga(), nil
}

// startSaga starts saga id. Starting waits for the saga to finish, so it
// gets the saga's own drive time rather than the usual call timeout.
func (g *Gateway) startSaga(c echo.Context, sagas grains.Sagas, id string, start *messages.StartSaga) (*messages.SagaState, error) {
	ctx, cancel := context.WithTimeout(c.Request().Context(), g.sagaTimeout())
	defer cancel()
	r, err := callGrain(ctx, c, func(ctx context.Context) (*messages.SagaReply, error) {
		return sagas.Start(ctx, id, start)
	})
	if err != nil {
		return nil, err
	}
	return r.GetSaga(), nil
}

// renderSaga answers a started (or re-posted) saga: 201 when completed, 422
// saga_failed carrying it when compensated, 202 while still at work (a
// participant is down; the saga goes on and GET shows the outcome).
func renderSaga(c echo.Context, s *messages.SagaState, field string, body any, location string) error {
	c.Response().Header().Set(echo.HeaderLocation, location)
	switch s.GetStatus() {
	case messages.SagaStatusCompleted:
		return c.JSON(http.StatusCreated, body)
	case messages.SagaStatusCompensated:
		return problem.With(messages.Fail(messages.CodeSagaFailed, "%s failed: %s", s.GetFailedStep(), s.GetError()), field, body)
	default:
		return c.JSON(http.StatusAccepted, body)
	}
}

type transferBody struct {
	TransferID  *string `json:"transfer_id"`
	FromAccount *string `json:"from_account"`
	ToAccount   *string `json:"to_account"`
	Amount      *int64  `json:"amount"`
	ExecuteAt   *string `json:"execute_at"`
}

// Bounds of a scheduled transfer's time.
const (
	minScheduleAhead = time.Second
	maxScheduleAhead = 366 * 24 * time.Hour
)

// parseExecuteAt is a scheduled transfer's execute_at in Unix ms, 0 for none.
func parseExecuteAt(raw *string) (int64, error) {
	if raw == nil {
		return 0, nil
	}
	at, err := time.Parse(time.RFC3339Nano, *raw)
	if err != nil {
		return 0, messages.Fail(messages.CodeValidationFailed, "execute_at: an RFC 3339 time (2026-12-24T18:00:00Z)")
	}
	return at.UnixMilli(), nil
}

// scheduleWindow refuses an execute_at (Unix ms, 0 for none) a new
// transfer cannot take.
func scheduleWindow(at int64, now time.Time) error {
	switch {
	case at == 0:
		return nil
	case time.UnixMilli(at).Before(now.Add(minScheduleAhead)):
		return messages.Fail(messages.CodeValidationFailed, "execute_at: at least %v ahead", minScheduleAhead)
	case time.UnixMilli(at).After(now.Add(maxScheduleAhead)):
		return messages.Fail(messages.CodeValidationFailed, "execute_at: at most 366 days ahead")
	}
	return nil
}

// sameTransfer reports whether t, a transfer's input, is what b (with
// execute_at at) asks for.
func sameTransfer(t *messages.TransferInput, b *transferBody, at int64) bool {
	return t.GetFromAccount() == *b.FromAccount && t.GetToAccount() == *b.ToAccount && t.GetAmount() == *b.Amount &&
		t.GetExecuteAtUnixMs() == at
}

func (g *Gateway) createTransfer(c echo.Context) error {
	var b transferBody
	if err := g.bindJSON(c, &b); err != nil {
		return err
	}
	switch {
	case b.TransferID != nil && !idPattern.MatchString(*b.TransferID):
		return messages.Fail(messages.CodeValidationFailed, "transfer_id: must match %s", idPattern)
	case b.FromAccount == nil || !accountIDPattern.MatchString(*b.FromAccount):
		return messages.Fail(messages.CodeValidationFailed, "from_account: required, an account id")
	case b.ToAccount == nil || !accountIDPattern.MatchString(*b.ToAccount):
		return messages.Fail(messages.CodeValidationFailed, "to_account: required, an account id")
	case *b.FromAccount == *b.ToAccount:
		return messages.Fail(messages.CodeValidationFailed, "to_account: must differ from from_account")
	case b.Amount == nil || *b.Amount <= 0 || *b.Amount > messages.MaxAmount:
		return messages.Fail(messages.CodeValidationFailed, "amount: required, between 1 and %d", messages.MaxAmount)
	}
	at, err := parseExecuteAt(b.ExecuteAt)
	if err != nil {
		return err
	}
	id, derived, err := g.sagaID(c, "tr_", b.TransferID)
	if err != nil {
		return err
	}
	// A transfer posted again is answered with the one its id names, even
	// once its execute_at is past: the retry of a scheduled transfer must
	// not be told it was refused. A derived id is looked up only then; for
	// any other request, Start below finds it.
	window := scheduleWindow(at, time.Now())
	if b.TransferID != nil || (derived && window != nil) {
		if existing, err := getSaga(g, c, g.transfers, id); err == nil {
			if err := g.mayActOnTransfer(c, existing); err != nil {
				return err
			}
			if derived && !sameTransfer(existing.GetTransfer(), &b, at) {
				return keyReused()
			}
			return renderSaga(c, existing, "transfer", renderTransfer(existing), "/api/v1/transfers/"+id)
		} else if !hasCode(err, messages.CodeNotFound) {
			return err
		}
	}
	if window != nil {
		return window
	}
	// The caller must be allowed to act on the source: ask its grain first
	// so a stranger gets 403/404, not a failed saga.
	if err := g.authorize(c, *b.FromAccount); err != nil {
		return err
	}
	p := principal(c)
	s, err := g.startSaga(c, g.transfers, id, &messages.StartSaga{
		Input: &messages.StartSaga_Transfer{Transfer: &messages.TransferInput{TransferId: id, FromAccount: *b.FromAccount,
			ToAccount: *b.ToAccount, Amount: *b.Amount, Caller: &messages.Caller{Subject: p.Subject, Admin: p.Admin()},
			ExecuteAtUnixMs: at}}})
	if err != nil {
		return err
	}
	if err := g.mayActOnTransfer(c, s); err != nil {
		return err // the id was taken by someone else's transfer meanwhile
	}
	if derived && !sameTransfer(s.GetTransfer(), &b, at) {
		return keyReused()
	}
	return renderSaga(c, s, "transfer", renderTransfer(s), "/api/v1/transfers/"+id)
}

// sagaID names the saga a create request starts: the client's id when it
// gives one. Else, with an Idempotency-Key, one derived from the caller,
// route and key: a retry that the idempotency record cannot answer (the
// first answer was a 202 or a 5xx, which it does not keep, or the first
// attempt's gateway died before keeping it) then finds the saga the
// first attempt started, where a random id started a second one and
// moved the money twice. derived reports that case: the caller must check
// that the saga it finds was started by the same request.
func (g *Gateway) sagaID(c echo.Context, prefix string, given *string) (id string, derived bool, err error) {
	if given != nil {
		return *given, false, nil
	}
	sum, keyed, err := keyedSum(c, principal(c).Subject)
	switch {
	case err != nil:
		return "", false, err
	case !keyed:
		return prefix + randomHex(12), false, nil
	}
	// Keyed under the deployment's secret: a caller who knows another's
	// subject and guesses their key cannot take that saga's id first.
	name := g.deps.Verifier.Keyed(append([]byte("granary/saga-id\x00"), sum[:]...))
	return prefix + hex.EncodeToString(name[:12]), true, nil
}

// keyReused is the answer to a request whose Idempotency-Key names a saga
// another request started.
func keyReused() error {
	return messages.Fail(messages.CodeIdempotencyReused, "%s was already used for another request (different path or body); use a new key",
		idempotency.HeaderKey)
}

func (g *Gateway) sagaTimeout() time.Duration {
	return max(g.cfg.CallTimeout, grains.StartTimeout)
}

func (g *Gateway) mayActOnTransfer(c echo.Context, s *messages.SagaState) error {
	p := principal(c)
	if p.Admin() || s.GetTransfer().GetCaller().GetSubject() == p.Subject {
		return nil
	}
	return messages.Fail(messages.CodeForbidden, "not your transfer")
}

// cancelTransfer cancels a scheduled transfer before its time.
func (g *Gateway) cancelTransfer(c echo.Context) error {
	id := c.Param("id")
	if !idPattern.MatchString(id) {
		return messages.Fail(messages.CodeNotFound, "transfer %q not found", id)
	}
	var b struct{}
	if err := g.bindJSON(c, &b); err != nil {
		return err
	}
	s, err := getSaga(g, c, g.transfers, id)
	if err != nil {
		return err
	}
	if err := g.mayActOnTransfer(c, s); err != nil {
		return err
	}
	r, err := call(g, c, func(ctx context.Context) (*messages.SagaReply, error) { return g.transfers.Cancel(ctx, id) })
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, renderTransfer(r.GetSaga()))
}

func (g *Gateway) getTransfer(c echo.Context) error {
	id := c.Param("id")
	if !idPattern.MatchString(id) {
		return messages.Fail(messages.CodeNotFound, "transfer %q not found", id)
	}
	s, err := getSaga(g, c, g.transfers, id)
	if err != nil {
		return err
	}
	if err := g.mayActOnTransfer(c, s); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, renderTransfer(s))
}

type orderBody struct {
	OrderID   *string `json:"order_id"`
	ProductID *string `json:"product_id"`
	Quantity  *int64  `json:"quantity"`
	Amount    *int64  `json:"amount"`
	PaymentID *string `json:"payment_id"`
}

func (g *Gateway) createOrder(c echo.Context) error {
	var b orderBody
	if err := g.bindJSON(c, &b); err != nil {
		return err
	}
	switch {
	case b.OrderID != nil && !idPattern.MatchString(*b.OrderID):
		return messages.Fail(messages.CodeValidationFailed, "order_id: must match %s", idPattern)
	case b.ProductID == nil || !idPattern.MatchString(*b.ProductID):
		return messages.Fail(messages.CodeValidationFailed, "product_id: required, must match %s", idPattern)
	case b.Quantity == nil || *b.Quantity <= 0 || *b.Quantity > messages.MaxQuantity:
		return messages.Fail(messages.CodeValidationFailed, "quantity: required, between 1 and %d", messages.MaxQuantity)
	case b.Amount == nil || *b.Amount <= 0 || *b.Amount > messages.MaxAmount:
		return messages.Fail(messages.CodeValidationFailed, "amount: required, between 1 and %d", messages.MaxAmount)
	case b.PaymentID != nil && !idPattern.MatchString(*b.PaymentID):
		return messages.Fail(messages.CodeValidationFailed, "payment_id: must match %s", idPattern)
	}
	id, derived, err := g.sagaID(c, "ord_", b.OrderID)
	if err != nil {
		return err
	}
	// Minted on every request, but only the first start of this order
	// records it: a re-post of the order id returns the saga as started,
	// so a retry keeps the payment id the order charges.
	paymentID := grains.NewPaymentID()
	if b.PaymentID != nil {
		paymentID = *b.PaymentID
	}
	p := principal(c)
	s, err := g.startSaga(c, g.orders, id, &messages.StartSaga{
		Input: &messages.StartSaga_Order{Order: &messages.OrderInput{OrderId: id, UserId: p.Subject, ProductId: *b.ProductID,
			Quantity: *b.Quantity, Amount: *b.Amount, PaymentId: paymentID}}})
	if err != nil {
		return err
	}
	if err := mayActOnOrder(c, s); err != nil {
		return err // an existing order of someone else's
	}
	if o := s.GetOrder(); derived && (o.GetProductId() != *b.ProductID || o.GetQuantity() != *b.Quantity || o.GetAmount() != *b.Amount ||
		(b.PaymentID != nil && o.GetPaymentId() != *b.PaymentID)) {
		return keyReused()
	}
	return renderSaga(c, s, "order", renderOrder(s), "/api/v1/orders/"+id)
}

func mayActOnOrder(c echo.Context, s *messages.SagaState) error {
	p := principal(c)
	if p.Admin() || s.GetOrder().GetUserId() == p.Subject {
		return nil
	}
	return messages.Fail(messages.CodeForbidden, "not your order")
}

func (g *Gateway) getOrder(c echo.Context) error {
	id := c.Param("id")
	if !idPattern.MatchString(id) {
		return messages.Fail(messages.CodeNotFound, "order %q not found", id)
	}
	s, err := getSaga(g, c, g.orders, id)
	if err != nil {
		return err
	}
	if err := mayActOnOrder(c, s); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, renderOrder(s))
}

func (g *Gateway) inventoryCall(c echo.Context, req *messages.InventoryRequest) error {
	product := c.Param("product_id")
	if !idPattern.MatchString(product) {
		return messages.Fail(messages.CodeNotFound, "product %q not found", product)
	}
	reply, err := call(g, c, func(ctx context.Context) (*messages.InventoryReply, error) {
		return g.inventory.Send(ctx, product, req)
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"product_id": product, "available": reply.GetAvailable()})
}

func (g *Gateway) getInventory(c echo.Context) error {
	return g.inventoryCall(c, &messages.InventoryRequest{Command: &messages.InventoryRequest_Get{Get: &messages.GetStock{}}})
}

func (g *Gateway) setInventory(c echo.Context) error {
	var b struct {
		Available *int64 `json:"available"`
	}
	if err := g.bindJSON(c, &b); err != nil {
		return err
	}
	if b.Available == nil || *b.Available < 0 || *b.Available > messages.MaxQuantity {
		return messages.Fail(messages.CodeValidationFailed, "available: required, between 0 and %d", messages.MaxQuantity)
	}
	cmdID, err := commandID(c, principal(c).Subject)
	if err != nil {
		return err
	}
	return g.inventoryCall(c, &messages.InventoryRequest{CommandId: cmdID,
		Command: &messages.InventoryRequest_Set{Set: &messages.SetStock{Available: *b.Available}}})
}

func (g *Gateway) getPayment(c echo.Context) error {
	id := c.Param("payment_id")
	if !idPattern.MatchString(id) {
		return messages.Fail(messages.CodeNotFound, "payment %q not found", id)
	}
	reply, err := call(g, c, func(ctx context.Context) (*messages.PaymentReply, error) { return g.payments.Get(ctx, id) })
	if err != nil {
		return err
	}
	pm := reply.GetPayment()
	if p := principal(c); !p.Admin() && pm.GetUserId() != p.Subject {
		// The same answer as for an id nobody used: a chosen payment id
		// must not tell a stranger that it exists.
		return messages.Fail(messages.CodeNotFound, "payment not found")
	}
	return c.JSON(http.StatusOK, map[string]any{"payment_id": id, "user_id": pm.GetUserId(), "amount": pm.GetAmount(), "status": pm.GetStatus()})
}

var sagaKinds = map[string]string{"order": messages.OrderSagaKind, "transfer": messages.TransferSagaKind}

func (g *Gateway) listSagas(c echo.Context) error {
	f := persistence.SagaFilter{Limit: 100}
	if raw := c.QueryParam("status"); raw != "" {
		for _, s := range strings.Split(raw, ",") {
			switch s {
			case messages.SagaStatusStarted, messages.SagaStatusCompensating, messages.SagaStatusCompleted, messages.SagaStatusCompensated,
				messages.SagaStatusScheduled, messages.SagaStatusCancelled:
				f.Statuses = append(f.Statuses, s)
			default:
				return messages.Fail(messages.CodeValidationFailed, "status: %q is not scheduled, started, compensating, completed, compensated or cancelled", s)
			}
		}
	}
	if raw := c.QueryParam("kind"); raw != "" {
		for _, k := range strings.Split(raw, ",") {
			kind, ok := sagaKinds[k]
			if !ok {
				return messages.Fail(messages.CodeValidationFailed, "kind: %q is not order or transfer", k)
			}
			f.Kinds = append(f.Kinds, kind)
		}
	}
	limit, err := queryUint(c, "limit", 100, 1, persistence.MaxSagaList)
	if err != nil {
		return err
	}
	f.Limit = int(limit)
	filter := sagaFilterName(f)
	if raw := c.QueryParam("cursor"); raw != "" {
		if f.After, err = decodeSagaCursor(raw, filter); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), g.cfg.CallTimeout)
	defer cancel()
	recs, next, err := g.deps.Sagas.ListSagas(ctx, f)
	if err != nil {
		return storageFailure(err)
	}
	out := []map[string]any{}
	for _, r := range recs {
		kind := strings.TrimSuffix(r.Kind, "_saga")
		out = append(out, map[string]any{"kind": kind, "id": r.ID, "status": r.Status, "failed_step": r.FailedStep,
			"started_at": r.StartedAt.Format(time.RFC3339Nano), "updated_at": r.UpdatedAt.Format(time.RFC3339Nano)})
	}
	var nextCursor *string
	if next != nil {
		s := encodeCursor(sagaCursor{T: next.StartedAt.UnixMilli(), K: next.Kind, I: next.ID, F: filterHash(filter)})
		nextCursor = &s
	}
	return c.JSON(http.StatusOK, map[string]any{"sagas": out, "next_cursor": nextCursor})
}

// sagaCursor is the saga listing's opaque cursor: the position (started
// at, kind, id) the next page starts after, and the filter's hash.
type sagaCursor struct {
	T int64  `json:"t"`
	K string `json:"k"`
	I string `json:"i"`
	F string `json:"f"`
}

// sagaFilterName spells a filter out in one canonical string: the same
// statuses and kinds in any order are the same filter.
func sagaFilterName(f persistence.SagaFilter) string {
	st, ks := slices.Clone(f.Statuses), slices.Clone(f.Kinds)
	slices.Sort(st)
	slices.Sort(ks)
	return "sagas:" + strings.Join(slices.Compact(st), ",") + ":" + strings.Join(slices.Compact(ks), ",")
}

func decodeSagaCursor(raw, filter string) (*persistence.SagaCursor, error) {
	var cur sagaCursor
	if err := decodeCursor(raw, &cur); err != nil {
		return nil, err
	}
	if cur.F != filterHash(filter) || cur.T < 0 || cur.K == "" || cur.I == "" {
		return nil, errBadCursor()
	}
	return &persistence.SagaCursor{StartedAt: time.UnixMilli(cur.T).UTC(), Kind: cur.K, ID: cur.I}, nil
}

// sagaRoutes registers transfers, orders, inventory, payments and sagas.
func (g *Gateway) sagaRoutes(e *echo.Echo, mutating ...echo.MiddlewareFunc) {
	authed := g.authenticate
	post := append([]echo.MiddlewareFunc{authed}, mutating...)
	e.POST("/api/v1/transfers", g.createTransfer, post...)
	e.GET("/api/v1/transfers/:id", g.getTransfer, authed)
	e.POST("/api/v1/transfers/:id/cancel", g.cancelTransfer, post...)
	e.POST("/api/v1/orders", g.createOrder, post...)
	e.GET("/api/v1/orders/:id", g.getOrder, authed)
	e.GET("/api/v1/inventory/:product_id", g.getInventory, authed)
	e.PUT("/api/v1/inventory/:product_id", g.setInventory, authed, requireAdmin)
	e.GET("/api/v1/payments/:payment_id", g.getPayment, authed)
	e.GET("/api/v1/sagas", g.listSagas, authed, requireAdmin)
}
