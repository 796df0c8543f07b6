// Package user owns users: an event-sourced grain per username holding the
// user's id, display name, roles and the password's argon2id hash (never
// the password). Hashing and verifying are the auth service's job.
//
// The id, not the username, is the `sub` of the user's tokens: a username
// is whatever someone typed at registration, and may equal a subject that
// something else (the dev token, `granary token`, an outside identity
// provider) already owns accounts under. Ids are random and issued once.
package user

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
	"time"
	"unicode/utf8"

	"granary/actors/es"
	"granary/messages"
)

// Kind is the cluster kind of user grains; the identity is the username.
const Kind = messages.UserKind

// UsernamePattern is the contract's username rule.
var UsernamePattern = messages.UsernamePattern

// MaxDisplayName bounds display names (characters).
const MaxDisplayName = messages.MaxDisplayName

// AdminUsername is the user GRANARY_ADMIN_PASSWORD creates.
const AdminUsername = messages.AdminUsername

// Reserved reports whether username is kept for the operator: nobody may
// register it over HTTP, before or after the bootstrap created it, so a
// stranger can neither hold the name the operator logs in with nor make
// the bootstrap find it taken.
func Reserved(username string) bool { return username == AdminUsername }

// IDPrefix starts every user id.
const IDPrefix = "usr_"

// IDPattern is what a user id looks like: IDPrefix and 26 base32
// characters (128 random bits), see NewID.
var IDPattern = messages.UserIDPattern

// NewID returns a fresh, unguessable user id.
func NewID() string {
	b := make([]byte, 16)
	// crypto/rand.Read never fails (it panics rather), see its docs.
	_, _ = rand.Read(b)
	return IDPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// State is a user folded from its events; the zero State is no user.
type State struct {
	// ID is the user's subject; "" only for a user registered before ids
	// existed, until AssignUserId gives it one.
	ID           string
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
	return &messages.UserState{UserId: s.ID, Username: s.Username, DisplayName: s.DisplayName, Roles: s.Roles, PasswordHash: s.PasswordHash, Version: s.Version}
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
		case !IDPattern.MatchString(r.GetUserId()):
			return nil, messages.Fail(messages.CodeValidationFailed, "user_id: must match %s", IDPattern)
		}
		return []*messages.UserEvent{{CommandId: req.GetCommandId(), OccurredAtUnixMs: now.UnixMilli(),
			Event: &messages.UserEvent_Registered{Registered: &messages.UserRegistered{UserId: r.GetUserId(),
				DisplayName: r.GetDisplayName(), PasswordHash: r.GetPasswordHash(), Roles: r.GetRoles()}}}}, nil
	case *messages.UserRequest_AssignId:
		switch {
		case !s.Exists():
			return nil, ErrNotFound
		case s.ID != "":
			// Issued once: whoever asked first (another gateway, another
			// activation) won, and every caller gets that id.
			return nil, nil
		case !IDPattern.MatchString(cmd.AssignId.GetUserId()):
			return nil, messages.Fail(messages.CodeValidationFailed, "user_id: must match %s", IDPattern)
		}
		return []*messages.UserEvent{{CommandId: req.GetCommandId(), OccurredAtUnixMs: now.UnixMilli(),
			Event: &messages.UserEvent_IdAssigned{IdAssigned: &messages.UserIdAssigned{UserId: cmd.AssignId.GetUserId()}}}}, nil
	}
	return nil, messages.Fail(messages.CodeValidationFailed, "unknown user command %T", req.GetCommand())
}

// Apply folds a stored event into the state.
func Apply(s State, username string, ev *messages.UserEvent) State {
	if r := ev.GetRegistered(); r != nil {
		s.ID, s.Username, s.DisplayName, s.PasswordHash = r.GetUserId(), username, r.GetDisplayName(), r.GetPasswordHash()
		s.Roles = append([]string(nil), r.GetRoles()...)
	}
	if a := ev.GetIdAssigned(); a != nil && s.ID == "" {
		s.ID = a.GetUserId()
	}
	s.Version++
	return s
}

// Stream is the journal stream of username's user grain.
func Stream(username string) string { return "user-" + username }

// The event type names are the journal's: never rename one.
var codec = *es.ProtoCodec(es.Proto[State, *messages.UserEvent, *messages.UserSnapshot]{
	Stream:  Stream,
	Apply:   Apply,
	Version: func(s State) uint64 { return s.Version },
	Types: []es.EventType[*messages.UserEvent]{
		{Name: "UserRegistered", Is: func(ev *messages.UserEvent) bool { return ev.GetRegistered() != nil }},
		{Name: "UserIdAssigned", Is: func(ev *messages.UserEvent) bool { return ev.GetIdAssigned() != nil }},
	},
	Snapshot: func(s State, recent []string) *messages.UserSnapshot {
		return &messages.UserSnapshot{State: s.ToProto(), RecentCommandIds: recent}
	},
	Restore: func(snap *messages.UserSnapshot) (State, []string) {
		st := snap.GetState()
		return State{ID: st.GetUserId(), Username: st.GetUsername(), DisplayName: st.GetDisplayName(), Roles: st.GetRoles(),
			PasswordHash: st.GetPasswordHash(), Version: st.GetVersion()}, snap.GetRecentCommandIds()
	},
})
