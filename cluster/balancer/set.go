package balancer

import (
	"fmt"
	"maps"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
)

// Set holds one client per service.
type Set struct {
	clients map[string]*Client
}

// NewSet builds a client for each configured service over source.
func NewSet(configs map[string]Config, source Source, sender actor.SenderContext) (*Set, error) {
	s := &Set{clients: map[string]*Client{}}
	for name, cfg := range configs {
		c, err := NewClient(name, cfg, source, sender)
		if err != nil {
			return nil, err
		}
		s.clients[name] = c
	}
	return s, nil
}

// Client returns the client of service name.
func (s *Set) Client(name string) (*Client, error) {
	c, ok := s.clients[name]
	if !ok {
		return nil, fmt.Errorf("no client for service %q", name)
	}
	return c, nil
}

// Statuses reports every service, by name.
func (s *Set) Statuses() []Status {
	var out []Status
	for _, name := range slices.Sorted(maps.Keys(s.clients)) {
		out = append(out, s.clients[name].Status())
	}
	return out
}
