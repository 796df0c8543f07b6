package saga

import (
	"context"
	"fmt"

	"granary/actors/account"
	"granary/messages"
)

// TransferKind is the cluster kind of transfer sagas; the identity is the
// transfer id.
const TransferKind = messages.TransferSagaKind

// Transfer step names.
const (
	StepWithdraw = "withdraw"
	StepDeposit  = "deposit"
)

// Transfer moves money between accounts: withdraw from the source, deposit
// to the target; a target that is closed or missing gets the withdrawal
// given back. Both legs are ordinary account events tagged with the
// transfer id. Both legs are Forward: once begun they are retried until the
// account answers, because guessing the outcome of either could create or
// destroy money; the deadline gives up only on a leg not yet begun.
var Transfer = &Definition{Kind: TransferKind, Steps: []Step{
	{Name: StepWithdraw, Do: withdraw, Undo: giveBack, Forward: true},
	{Name: StepDeposit, Do: depositTarget, Forward: true},
}}

// system acts for the saga itself on accounts it does not own.
var system = &messages.Caller{Subject: "saga:transfer", Admin: true}

func accountCall(ctx context.Context, p Participants, id string, req *messages.AccountRequest) error {
	if dl, ok := ctx.Deadline(); ok {
		req.DeadlineUnixMs = dl.UnixMilli()
	}
	res, err := p.Call.Call(ctx, account.Kind, id, req)
	if err != nil {
		return err
	}
	reply, ok := res.(*messages.AccountReply)
	if !ok {
		return fmt.Errorf("account %s answered %T", id, res)
	}
	f := reply.GetFailure()
	if f == nil {
		return nil
	}
	if _, domain := isDomain(f); !domain {
		return f
	}
	switch f.GetCode() {
	case messages.CodeInsufficientFunds:
		return stepError("insufficient funds")
	case messages.CodeAccountClosed:
		return stepError("account closed")
	case messages.CodeNotFound:
		return stepError("account not found")
	}
	return stepError(f.GetDetail())
}

func withdraw(ctx context.Context, p Participants, s *messages.SagaState, cmd string) error {
	t := s.GetTransfer()
	return accountCall(ctx, p, t.GetFromAccount(), &messages.AccountRequest{CommandId: cmd, Caller: t.GetCaller(),
		Command: &messages.AccountRequest_Withdraw{Withdraw: &messages.Withdraw{Amount: t.GetAmount(),
			Description: "transfer " + t.GetTransferId() + " to " + t.GetToAccount(), TransferId: t.GetTransferId()}}})
}

func giveBack(ctx context.Context, p Participants, s *messages.SagaState, cmd string) error {
	t := s.GetTransfer()
	return accountCall(ctx, p, t.GetFromAccount(), &messages.AccountRequest{CommandId: cmd, Caller: system,
		Command: &messages.AccountRequest_Deposit{Deposit: &messages.Deposit{Amount: t.GetAmount(),
			Description: "transfer " + t.GetTransferId() + " returned", TransferId: t.GetTransferId(), Compensation: true}}})
}

func depositTarget(ctx context.Context, p Participants, s *messages.SagaState, cmd string) error {
	t := s.GetTransfer()
	return accountCall(ctx, p, t.GetToAccount(), &messages.AccountRequest{CommandId: cmd, Caller: system,
		Command: &messages.AccountRequest_Deposit{Deposit: &messages.Deposit{Amount: t.GetAmount(),
			Description: "transfer " + t.GetTransferId() + " from " + t.GetFromAccount(), TransferId: t.GetTransferId()}}})
}
