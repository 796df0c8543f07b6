package grains

import (
	"context"

	"granary/actors/service"
	"granary/actors/user"
	"granary/messages"
)

// Users calls user grains, identified by username.
type Users struct{ Caller Caller }

// NewUserID mints a Granary user id (a token's sub).
func NewUserID() string { return user.NewID() }

// Reserved reports a username no client may register (the operator's).
func Reserved(username string) bool { return user.Reserved(username) }

// DummyHash is verified against when a user does not exist, so a failed
// login costs the same whether the username or the password was wrong.
func DummyHash() string { return service.DummyHash }

// Get reads user username.
func (u Users) Get(ctx context.Context, username string) (*messages.UserReply, error) {
	return u.send(ctx, username, &messages.UserRequest{Command: &messages.UserRequest_Get{Get: &messages.GetUser{}}})
}

// Register registers username under cmd.UserId.
func (u Users) Register(ctx context.Context, username, commandID string, cmd *messages.RegisterUser) (*messages.UserReply, error) {
	return u.send(ctx, username, &messages.UserRequest{CommandId: commandID, Command: &messages.UserRequest_Register{Register: cmd}})
}

// AssignID gives a user stored without an id the id userID; the first
// assignment wins and every caller gets the stored one.
func (u Users) AssignID(ctx context.Context, username, commandID, userID string) (*messages.UserReply, error) {
	return u.send(ctx, username, &messages.UserRequest{CommandId: commandID,
		Command: &messages.UserRequest_AssignId{AssignId: &messages.AssignUserId{UserId: userID}}})
}

func (u Users) send(ctx context.Context, username string, req *messages.UserRequest) (*messages.UserReply, error) {
	req.DeadlineUnixMs = deadline(ctx)
	return call[*messages.UserReply](ctx, u.Caller, messages.UserKind, username, req)
}
