package grains

import (
	"context"
	"time"

	"granary/actors/account"
	"granary/messages"
)

// Accounts calls account grains. Each method takes the request envelope
// (caller, command id, expected version) and sets its command.
type Accounts struct{ Caller Caller }

// IDFor is the account id derived from an account number.
func (Accounts) IDFor(accountNumber string) string { return account.IDFor(accountNumber) }

// CheckOpen validates an opening the way the grain will, without calling
// it, so a bad body never activates a grain.
func (Accounts) CheckOpen(caller *messages.Caller, open *messages.OpenAccount) error {
	_, err := account.Decide(account.State{}, &messages.AccountRequest{
		Caller: caller, Command: &messages.AccountRequest_Open{Open: open},
	}, time.Time{})
	return err
}

// Open opens the account id.
func (a Accounts) Open(ctx context.Context, id string, req *messages.AccountRequest, cmd *messages.OpenAccount) (*messages.AccountReply, error) {
	req.Command = &messages.AccountRequest_Open{Open: cmd}
	return a.send(ctx, id, req)
}

// Get reads the account, checking that the caller may see it.
func (a Accounts) Get(ctx context.Context, id string, req *messages.AccountRequest) (*messages.AccountReply, error) {
	req.Command = &messages.AccountRequest_Get{Get: &messages.GetAccount{}}
	return a.send(ctx, id, req)
}

// Authorize asks only whether the caller may see the account (its
// existence and owner): answered from the grain's state, without the
// version check of Get.
func (a Accounts) Authorize(ctx context.Context, id string, req *messages.AccountRequest) (*messages.AccountReply, error) {
	req.Command = &messages.AccountRequest_Get{Get: &messages.GetAccount{AuthorizeOnly: true}}
	return a.send(ctx, id, req)
}

// Deposit pays cmd.Amount into the account.
func (a Accounts) Deposit(ctx context.Context, id string, req *messages.AccountRequest, cmd *messages.Deposit) (*messages.AccountReply, error) {
	req.Command = &messages.AccountRequest_Deposit{Deposit: cmd}
	return a.send(ctx, id, req)
}

// Withdraw takes cmd.Amount out of the account.
func (a Accounts) Withdraw(ctx context.Context, id string, req *messages.AccountRequest, cmd *messages.Withdraw) (*messages.AccountReply, error) {
	req.Command = &messages.AccountRequest_Withdraw{Withdraw: cmd}
	return a.send(ctx, id, req)
}

// Close closes the account.
func (a Accounts) Close(ctx context.Context, id string, req *messages.AccountRequest, cmd *messages.CloseAccount) (*messages.AccountReply, error) {
	req.Command = &messages.AccountRequest_Close{Close: cmd}
	return a.send(ctx, id, req)
}

func (a Accounts) send(ctx context.Context, id string, req *messages.AccountRequest) (*messages.AccountReply, error) {
	req.DeadlineUnixMs = deadline(ctx)
	r, err := call[*messages.AccountReply](ctx, a.Caller, messages.AccountKind, id, req)
	if err != nil {
		return r, err
	}
	return r, mustHave(r.GetAccount() != nil, messages.AccountKind, id)
}
