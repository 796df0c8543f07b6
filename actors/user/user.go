// Package user owns users: an event-sourced grain per username holding the
// display name, roles and the password's argon2id hash (never the
// password). Hashing and verifying are the auth service's job.
package user

import (
	"fmt"
	"regexp"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"granary/actors/es"
	"granary/messages"
	"granary/persistence"
)

// Kind is the cluster kind of user grains; the identity is the username,
// which is also the user's id and the `sub` of their tokens.
const Kind = "user"

// UsernamePattern is the contract's username rule.
var UsernamePattern = regexp.MustCompile(`^[a-z0-9_.-]{3,64}$`)

// MaxDisplayName bounds display names (characters).
const MaxDisplayName = 200

// State is a user folded from its events; the zero State is no user.
type State struct {
	Username     string
	DisplayName  string
	Roles        []string
	PasswordHash string
	Version      uint64
}

// Exists reports whether the user registered.
func (s State) Exists() bool { return s.Version > 0 }

// ToProto renders the state for the wire.
func (s State) ToProto() *messages.UserState {
	return &messages.UserState{Username: s.Username, DisplayName: s.DisplayName, Roles: s.Roles, PasswordHash: s.PasswordHash, Version: s.Version}
}

// Error is a domain rule violation with its contract code.
type Error struct{ code, msg string }

func (e *Error) Error() string { return e.msg }

// Code is the contract error code.
func (e *Error) Code() string { return e.code }

var (
	ErrNotFound      = &Error{messages.CodeNotFound, "user not found"}
	ErrAlreadyExists = &Error{messages.CodeAlreadyExists, "username already taken"}
)

// Decide turns a request into events; username is the grain's identity.
func Decide(s State, username string, req *messages.UserRequest, now time.Time) ([]*messages.UserEvent, error) {
	switch cmd := req.GetCommand().(type) {
	case *messages.UserRequest_Get:
		if !s.Exists() {
			return nil, ErrNotFound
		}
		return nil, nil
	case *messages.UserRequest_Register:
		if s.Exists() {
			return nil, ErrAlreadyExists
		}
		r := cmd.Register
		switch {
		case !UsernamePattern.MatchString(username):
			return nil, messages.Fail(messages.CodeValidationFailed, "username: must match %s", UsernamePattern)
		case !utf8.ValidString(r.GetDisplayName()) || utf8.RuneCountInString(r.GetDisplayName()) > MaxDisplayName:
			return nil, messages.Fail(messages.CodeValidationFailed, "display_name: at most %d characters of UTF-8", MaxDisplayName)
		case r.GetPasswordHash() == "":
			return nil, messages.Fail(messages.CodeValidationFailed, "password: missing hash")
		}
		return []*messages.UserEvent{{CommandId: req.GetCommandId(), OccurredAtUnixMs: now.UnixMilli(),
			Event: &messages.UserEvent_Registered{Registered: &messages.UserRegistered{
				DisplayName: r.GetDisplayName(), PasswordHash: r.GetPasswordHash(), Roles: r.GetRoles()}}}}, nil
	}
	return nil, messages.Fail(messages.CodeValidationFailed, "unknown user command %T", req.GetCommand())
}

// Apply folds a stored event into the state.
func Apply(s State, username string, ev *messages.UserEvent) State {
	if r := ev.GetRegistered(); r != nil {
		s.Username, s.DisplayName, s.PasswordHash = username, r.GetDisplayName(), r.GetPasswordHash()
		s.Roles = append([]string(nil), r.GetRoles()...)
	}
	s.Version++
	return s
}

const typeRegistered = "UserRegistered"

func stream(username string) string { return "user-" + username }

var codec = es.Codec[State, *messages.UserEvent]{
	Stream:  stream,
	Apply:   Apply,
	Version: func(s State) uint64 { return s.Version },
	Encode: func(ev *messages.UserEvent) (persistence.EventData, error) {
		data, err := proto.Marshal(ev)
		return persistence.EventData{Type: typeRegistered, Data: data, OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs())}, err
	},
	Decode: func(e persistence.Event) (*messages.UserEvent, error) {
		var ev messages.UserEvent
		if err := proto.Unmarshal(e.Data, &ev); err != nil || e.Type != typeRegistered || ev.GetRegistered() == nil {
			return nil, fmt.Errorf("decode %s@%d (%s): %v: %w", e.Stream, e.Version, e.Type, err, persistence.ErrCorrupt)
		}
		return &ev, nil
	},
	CommandID: func(ev *messages.UserEvent) string { return ev.GetCommandId() },
	EncodeSnapshot: func(s State, recent []string) ([]byte, error) {
		return proto.Marshal(&messages.UserSnapshot{State: s.ToProto(), RecentCommandIds: recent})
	},
	DecodeSnapshot: func(data []byte) (State, []string, error) {
		var snap messages.UserSnapshot
		err := proto.Unmarshal(data, &snap)
		st := snap.GetState()
		return State{Username: st.GetUsername(), DisplayName: st.GetDisplayName(), Roles: st.GetRoles(),
			PasswordHash: st.GetPasswordHash(), Version: st.GetVersion()}, snap.GetRecentCommandIds(), err
	},
}
