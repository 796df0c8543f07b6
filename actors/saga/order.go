package saga

import (
	"context"
	"fmt"

	"granary/actors/inventory"
	"granary/actors/payment"
	"granary/messages"
)

// OrderKind is the cluster kind of order sagas; the identity is the order id.
const OrderKind = messages.OrderSagaKind

// Order step names, as the contract spells them.
const (
	StepReserveInventory = "reserve_inventory"
	StepProcessPayment   = "process_payment"
	StepCreateOrder      = "create_order"
)

// Order is the order saga: reserve inventory → process payment → create
// order. Creating the order commits the reservation; it is past the point
// of no return, so it only moves forward.
var Order = &Definition{Kind: OrderKind, Steps: []Step{
	{Name: StepReserveInventory, Do: reserve, Undo: release},
	{Name: StepProcessPayment, Do: charge, Undo: refund},
	{Name: StepCreateOrder, Do: commitOrder, Forward: true},
}}

func inventoryCall(ctx context.Context, p Participants, product string, req *messages.InventoryRequest) error {
	if dl, ok := ctx.Deadline(); ok {
		req.DeadlineUnixMs = dl.UnixMilli()
	}
	res, err := p.Call.Call(ctx, inventory.Kind, product, req)
	if err != nil {
		return err
	}
	reply, ok := res.(*messages.InventoryReply)
	if !ok {
		return fmt.Errorf("inventory %s answered %T", product, res)
	}
	if f := reply.GetFailure(); f != nil {
		if _, domain := isDomain(f); domain {
			return stepError(f.GetDetail()) // "product not found", "insufficient inventory"
		}
		return f
	}
	return nil
}

func reserve(ctx context.Context, p Participants, s *messages.SagaState, cmd string) error {
	o := s.GetOrder()
	return inventoryCall(ctx, p, o.GetProductId(), &messages.InventoryRequest{CommandId: cmd,
		Command: &messages.InventoryRequest_Reserve{Reserve: &messages.ReserveStock{SagaId: s.GetId(), Quantity: o.GetQuantity()}}})
}

func release(ctx context.Context, p Participants, s *messages.SagaState, cmd string) error {
	return inventoryCall(ctx, p, s.GetOrder().GetProductId(), &messages.InventoryRequest{CommandId: cmd,
		Command: &messages.InventoryRequest_Release{Release: &messages.ReleaseStock{SagaId: s.GetId()}}})
}

func commitOrder(ctx context.Context, p Participants, s *messages.SagaState, cmd string) error {
	return inventoryCall(ctx, p, s.GetOrder().GetProductId(), &messages.InventoryRequest{CommandId: cmd,
		Command: &messages.InventoryRequest_Release{Release: &messages.ReleaseStock{SagaId: s.GetId(), Commit: true}}})
}

func paymentsCall(ctx context.Context, p Participants, req *messages.ServiceRequest) error {
	// Charges and refunds are keyed by saga in the payment grain, so the
	// client may retry them on another instance.
	reply, err := p.Services.Call(ctx, payment.Service, req, true)
	if err != nil {
		return err
	}
	if f := reply.GetFailure(); f != nil {
		if _, domain := isDomain(f); domain {
			return stepError(f.GetDetail()) // "payment amount too large"
		}
		return f
	}
	return nil
}

func charge(ctx context.Context, p Participants, s *messages.SagaState, _ string) error {
	o := s.GetOrder()
	return paymentsCall(ctx, p, &messages.ServiceRequest{Call: &messages.ServiceRequest_ChargePayment{ChargePayment: &messages.ChargePayment{
		PaymentId: o.GetPaymentId(), UserId: o.GetUserId(), Amount: o.GetAmount(), SagaId: s.GetId()}}})
}

func refund(ctx context.Context, p Participants, s *messages.SagaState, _ string) error {
	return paymentsCall(ctx, p, &messages.ServiceRequest{Call: &messages.ServiceRequest_RefundPayment{RefundPayment: &messages.RefundPayment{
		PaymentId: s.GetOrder().GetPaymentId(), SagaId: s.GetId()}}})
}
