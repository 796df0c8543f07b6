package cluster

import (
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
)

// Member statuses beyond "alive": a listed member whose remoting link
// broke is "suspected" until the link is back or the provider drops it;
// a dropped member is "dead" and stays listed among the departed.
const (
	StatusSuspected = "suspected"
	StatusDead      = "dead"
)

// maxDeparted bounds how many members that left a member remembers: an
// operator needs the recent losses, not the whole history of restarts.
const maxDeparted = 16

// memberBook remembers what the membership view forgets: members that
// left (the last maxDeparted, newest first) and the addresses whose
// remoting endpoint terminated. Proto.Actor's event stream calls it from
// whichever goroutine publishes, so it locks.
type memberBook struct {
	mu       sync.Mutex
	departed []MemberInfo
	// broken holds addresses of listed members only (entries go when the
	// member leaves), so it is bounded by the membership.
	broken map[string]bool
	// beats holds listed members only, like broken.
	beats map[string]Heartbeat
}

// left records the members a topology change dropped.
func (b *memberBook) left(gone []*pcluster.Member, now time.Time) {
	if len(gone) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, mem := range gone {
		addr := net.JoinHostPort(mem.GetHost(), strconv.Itoa(int(mem.GetPort())))
		delete(b.broken, addr)
		delete(b.beats, mem.GetId())
		b.departed = slices.DeleteFunc(b.departed, func(d MemberInfo) bool { return d.ID == mem.GetId() })
		b.departed = slices.Insert(b.departed, 0, MemberInfo{ID: mem.GetId(), Address: addr,
			Kinds: append([]string(nil), mem.GetKinds()...), Status: StatusDead, LeftAt: now})
		if len(b.departed) > maxDeparted {
			b.departed = b.departed[:maxDeparted]
		}
	}
}

// endpoint records that the link to addr broke (up false) or is back.
// Only addresses of listed members are kept.
func (b *memberBook) endpoint(addr string, up bool, listed []MemberInfo) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if up {
		delete(b.broken, addr)
		return
	}
	if !slices.ContainsFunc(listed, func(m MemberInfo) bool { return m.Address == addr }) {
		return
	}
	if b.broken == nil {
		b.broken = map[string]bool{}
	}
	b.broken[addr] = true
}

// mark sets the status of the listed members whose link broke.
func (b *memberBook) mark(listed []MemberInfo) []MemberInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range listed {
		if b.broken[listed[i].Address] {
			listed[i].Status = StatusSuspected
		}
	}
	return listed
}

func (b *memberBook) gone() []MemberInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]MemberInfo, len(b.departed))
	for i, d := range b.departed {
		d.Kinds = append([]string(nil), d.Kinds...)
		out[i] = d
	}
	return out
}

// Departed lists the members that left this member's view, newest first,
// at most 16, each with status "dead" and LeftAt set. A member that
// rejoins does so under a new id, so it is listed both ways.
func (m *Member) Departed() []MemberInfo { return m.book.gone() }

// Heartbeat is what a member last gossiped about itself.
type Heartbeat struct {
	// At is when this member received it (its own clock).
	At time.Time
	// Grains counts the member's activations by kind.
	Grains map[string]int64
}

// heard records a gossiped heartbeat of a listed member. It runs on the
// gossip actor's goroutine while it publishes the update, the one moment
// the value is safe to read (Proto.Actor's GetState hands out the live
// state, which that actor goes on writing).
func (b *memberBook) heard(u *pcluster.GossipUpdate, listed []MemberInfo, now time.Time) {
	if u.Key != pcluster.HeartbeatKey || u.Value == nil ||
		!slices.ContainsFunc(listed, func(m MemberInfo) bool { return m.ID == u.MemberID }) {
		return
	}
	hb := &pcluster.MemberHeartbeat{}
	if u.Value.UnmarshalTo(hb) != nil {
		return
	}
	grains := map[string]int64{}
	for k, n := range hb.GetActorStatistics().GetActorCount() {
		grains[k] = n
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.beats == nil {
		b.beats = map[string]Heartbeat{}
	}
	b.beats[u.MemberID] = Heartbeat{At: now, Grains: grains}
}

// Heartbeats is the last gossiped heartbeat of each listed member but
// this one, by member id: each member gossips its activation counts every
// gossip interval, so this is where the other members' grain counts are
// known.
func (m *Member) Heartbeats() map[string]Heartbeat {
	m.book.mu.Lock()
	defer m.book.mu.Unlock()
	out := make(map[string]Heartbeat, len(m.book.beats))
	for id, hb := range m.book.beats {
		out[id] = hb // Grains is never written after heard made it
	}
	return out
}
