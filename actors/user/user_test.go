package user_test

import (
	"testing"
	"time"

	"granary/actors/user"
	"granary/internal/leakcheck"
	"granary/messages"
	"granary/testkit"
)

func TestMain(m *testing.M) { leakcheck.Main(m, testkit.LeakOptions()...) }

func register(id string) *messages.UserRequest {
	return &messages.UserRequest{CommandId: "c1", Command: &messages.UserRequest_Register{Register: &messages.RegisterUser{
		UserId: id, DisplayName: "Ada", PasswordHash: "$argon2id$…"}}}
}

func fold(t *testing.T, s user.State, evs []*messages.UserEvent) user.State {
	t.Helper()
	for _, ev := range evs {
		s = user.Apply(s, "ada", ev)
	}
	return s
}

func TestNewIDIsFreshAndWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := user.NewID()
		if !user.IDPattern.MatchString(id) || seen[id] {
			t.Fatalf("NewID() = %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
}

func TestRegisterKeepsTheID(t *testing.T) {
	id := user.NewID()
	evs, err := user.Decide(user.State{}, "ada", register(id), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := fold(t, user.State{}, evs)
	if s.ID != id || s.Username != "ada" || s.ToProto().GetUserId() != id {
		t.Fatalf("state %+v, want id %s", s, id)
	}
	for _, bad := range []string{"", "ada", "usr_", "admin", "usr_ABCDEFGHIJKLMNOPQRSTUVWXYZ"} {
		if _, err := user.Decide(user.State{}, "ada", register(bad), time.Now()); err == nil {
			t.Errorf("register with id %q accepted", bad)
		}
	}
}

// A user stored before ids existed is given one, once: a second
// assignment (another gateway, racing) changes nothing.
func TestAssignIDOnce(t *testing.T) {
	legacy := fold(t, user.State{}, []*messages.UserEvent{{Event: &messages.UserEvent_Registered{
		Registered: &messages.UserRegistered{DisplayName: "Ada", PasswordHash: "h"}}}})
	if legacy.ID != "" || !legacy.Exists() {
		t.Fatalf("legacy state %+v", legacy)
	}
	assign := func(id string) *messages.UserRequest {
		return &messages.UserRequest{Command: &messages.UserRequest_AssignId{AssignId: &messages.AssignUserId{UserId: id}}}
	}
	first := user.NewID()
	evs, err := user.Decide(legacy, "ada", assign(first), time.Now())
	if err != nil || len(evs) != 1 {
		t.Fatalf("assign: %v, %v", evs, err)
	}
	s := fold(t, legacy, evs)
	if s.ID != first {
		t.Fatalf("id %q, want %q", s.ID, first)
	}
	evs, err = user.Decide(s, "ada", assign(user.NewID()), time.Now())
	if err != nil || len(evs) != 0 {
		t.Fatalf("second assign: %v, %v; want nothing", evs, err)
	}
	if _, err := user.Decide(user.State{}, "ada", assign(first), time.Now()); err == nil {
		t.Fatal("assign to no user accepted")
	}
	if _, err := user.Decide(legacy, "ada", assign("alice"), time.Now()); err == nil {
		t.Fatal("malformed id accepted")
	}
}

func TestReserved(t *testing.T) {
	if !user.Reserved(user.AdminUsername) || user.Reserved("alice") || user.Reserved("admin2") {
		t.Fatal("only the bootstrap admin's name is reserved")
	}
}
