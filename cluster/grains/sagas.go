package grains

import (
	"context"
	"time"

	"granary/actors/payment"
	"granary/actors/saga"
	"granary/messages"
)

// StartTimeout is how long starting a saga may take: a start waits for
// the saga to finish, so it gets the saga's own drive time, not the usual
// call timeout.
const StartTimeout = saga.DefaultMaxDrive + 5*time.Second

// Sagas calls the saga grains of one kind (messages.TransferSagaKind,
// messages.OrderSagaKind).
type Sagas struct {
	Caller Caller
	Kind   string
}

// Get reads saga id.
func (s Sagas) Get(ctx context.Context, id string) (*messages.SagaReply, error) {
	return s.send(ctx, id, &messages.SagaRequest{Command: &messages.SagaRequest_Get{Get: &messages.GetSaga{}}})
}

// Start starts saga id (or answers it as started when it exists); give
// ctx StartTimeout.
func (s Sagas) Start(ctx context.Context, id string, start *messages.StartSaga) (*messages.SagaReply, error) {
	return s.send(ctx, id, &messages.SagaRequest{Command: &messages.SagaRequest_Start{Start: start}})
}

// Cancel cancels a scheduled saga before its time.
func (s Sagas) Cancel(ctx context.Context, id string) (*messages.SagaReply, error) {
	return s.send(ctx, id, &messages.SagaRequest{Command: &messages.SagaRequest_Cancel{Cancel: &messages.CancelSaga{}}})
}

func (s Sagas) send(ctx context.Context, id string, req *messages.SagaRequest) (*messages.SagaReply, error) {
	return call[*messages.SagaReply](ctx, s.Caller, s.Kind, id, req)
}

// SagaID is the id an order's saga has in the journal and the saga list.
func SagaID(kind, id string) string { return saga.Stream(kind)(id) }

// Inventory calls product stock grains, identified by product id.
type Inventory struct{ Caller Caller }

// Send sends req (its command set) to product.
func (i Inventory) Send(ctx context.Context, product string, req *messages.InventoryRequest) (*messages.InventoryReply, error) {
	req.DeadlineUnixMs = deadline(ctx)
	return call[*messages.InventoryReply](ctx, i.Caller, messages.InventoryKind, product, req)
}

// Payments calls payment grains, identified by payment id.
type Payments struct{ Caller Caller }

// NewPaymentID mints a payment id.
func NewPaymentID() string { return payment.NewID() }

// Get reads payment id.
func (p Payments) Get(ctx context.Context, id string) (*messages.PaymentReply, error) {
	return call[*messages.PaymentReply](ctx, p.Caller, messages.PaymentKind, id,
		&messages.PaymentRequest{DeadlineUnixMs: deadline(ctx), Command: &messages.PaymentRequest_Get{Get: &messages.GetPayment{}}})
}
