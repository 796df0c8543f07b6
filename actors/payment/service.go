package payment

import (
	"context"
	"errors"

	"granary/actors/service"
	"granary/messages"
)

// Service is the name of the payments service.
const Service = "payments"

// ErrTooLarge is the contract's error for a charge above the limit.
const ErrTooLarge = "payment amount too large"

// DefaultLimit is the largest charge (1000.00).
const DefaultLimit int64 = 100_000

// Handler is the payments service: it checks the amount limit, then records
// the charge or refund in the payment's grain. Commands are keyed by saga
// so a re-sent step is applied once.
func Handler(call service.Caller, limit int64) service.Handler {
	return func(ctx context.Context, req *messages.ServiceRequest) (*messages.ServiceReply, error) {
		var id string
		grainReq := &messages.PaymentRequest{DeadlineUnixMs: req.GetDeadlineUnixMs()}
		switch c := req.GetCall().(type) {
		case *messages.ServiceRequest_ChargePayment:
			if c.ChargePayment.GetAmount() > limit {
				return &messages.ServiceReply{Failure: messages.Fail(messages.CodeValidationFailed, ErrTooLarge)}, nil
			}
			id = c.ChargePayment.GetPaymentId()
			grainReq.CommandId = "charge/" + c.ChargePayment.GetSagaId()
			grainReq.Command = &messages.PaymentRequest_Charge{Charge: c.ChargePayment}
		case *messages.ServiceRequest_RefundPayment:
			id = c.RefundPayment.GetPaymentId()
			grainReq.CommandId = "refund/" + c.RefundPayment.GetSagaId()
			grainReq.Command = &messages.PaymentRequest_Refund{Refund: c.RefundPayment}
		default:
			return nil, messages.Fail(messages.CodeValidationFailed, "payments: unknown call %T", c)
		}
		if id == "" {
			return &messages.ServiceReply{Failure: messages.Fail(messages.CodeValidationFailed, "payment_id: required")}, nil
		}
		res, err := call.Call(ctx, Kind, id, grainReq)
		if err != nil {
			return nil, err
		}
		reply, ok := res.(*messages.PaymentReply)
		if !ok {
			return nil, errors.New("payment grain answered something else")
		}
		if f := reply.GetFailure(); f != nil {
			return &messages.ServiceReply{Failure: f}, nil
		}
		return &messages.ServiceReply{Result: &messages.ServiceReply_Payment{Payment: reply.GetPayment()}}, nil
	}
}
