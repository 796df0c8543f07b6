package gateway

import (
	"fmt"
	"testing"

	"granary/http/auth"
	"granary/messages"
)

// Issue 9, item 4: however many users fill the stream pool, admins (the
// global stream, the dashboard) keep a pool of their own; slots come back
// on release and the per-subject map forgets subjects with none open.
func TestStreamSlotsKeepAdminsPool(t *testing.T) {
	s := newStreamSlots(8, maxStreams, adminStreams)
	var releases []func()
	for i := range maxStreams {
		rel, err := s.acquire(auth.Principal{Subject: fmt.Sprintf("user-%d", i/8)})
		if err != nil {
			t.Fatalf("user stream %d: %v", i, err)
		}
		releases = append(releases, rel)
	}
	if _, err := s.acquire(auth.Principal{Subject: "late-user"}); codeOf(err) != messages.CodeServiceUnavailable {
		t.Fatalf("user stream past the pool: %v, want service_unavailable", err)
	}
	admin := auth.Principal{Subject: "root", Roles: []string{auth.RoleAdmin}}
	for i := range 8 {
		rel, err := s.acquire(admin)
		if err != nil {
			t.Fatalf("admin stream %d with the users' pool full: %v", i, err)
		}
		releases = append(releases, rel)
	}
	if _, err := s.acquire(admin); codeOf(err) != messages.CodeRateLimited {
		t.Fatalf("admin's 9th stream: %v, want rate_limited", err)
	}
	for _, rel := range releases {
		rel()
		rel() // twice is harmless
	}
	if len(s.open) != 0 || s.openUsers != 0 || s.openAdmin != 0 {
		t.Fatalf("after every release: %d subjects, %d user and %d admin streams counted", len(s.open), s.openUsers, s.openAdmin)
	}
}

func codeOf(err error) string {
	if f, ok := err.(*messages.Failure); ok {
		return f.GetCode()
	}
	return fmt.Sprint(err)
}
