package cluster

import (
	"context"
	"fmt"
	"time"

	"granary/actors/registry"
	"granary/actors/saga"
	"granary/messages"
	"granary/persistence/reminder"
)

// RegistryConfig configures the registry of outside services and the
// durable timers that drive it.
type RegistryConfig struct {
	// View is where instance and route grains publish and gateways read;
	// Reminders holds the cluster's durable timers. Every member of a
	// cluster must share both (Redis); nil gives this process its own,
	// which only a single-process cluster may use.
	View      registry.View
	Reminders reminder.Store
	Hosts     registry.Hosts
	// MaxInstances caps registrations; ProbeTimeout bounds a health probe.
	MaxInstances int64
	ProbeTimeout time.Duration
	PurgeAfter   time.Duration
	// ReminderPoll is how often each member looks for due reminders.
	ReminderPoll time.Duration
}

// DefaultRegistryConfig returns the contract's defaults.
func DefaultRegistryConfig() RegistryConfig {
	return RegistryConfig{Hosts: registry.LoopbackOnly(), MaxInstances: registry.DefaultMaxInstances, ProbeTimeout: 2 * time.Second,
		PurgeAfter: registry.DefaultPurgeAfter, ReminderPoll: 200 * time.Millisecond}
}

func (c RegistryConfig) validate() error {
	if len(c.Hosts.Allowed) == 0 || c.MaxInstances < 1 || c.ProbeTimeout <= 0 || c.PurgeAfter <= 0 || c.ReminderPoll <= 0 {
		return fmt.Errorf("registry: Hosts, MaxInstances %d, ProbeTimeout %v, PurgeAfter %v and ReminderPoll %v must be set",
			c.MaxInstances, c.ProbeTimeout, c.PurgeAfter, c.ReminderPoll)
	}
	return nil
}

// withDefaults fills in this process's own view and timers when none is
// shared.
func (c RegistryConfig) withDefaults() RegistryConfig {
	if c.View == nil {
		c.View = registry.NewMemoryView()
	}
	if c.Reminders == nil {
		c.Reminders = reminder.NewMemory()
	}
	return c
}

// RegistryView is the view this member's grains publish to.
func (m *Member) RegistryView() registry.View { return m.registry.View }

// RegistryHosts are the hosts instances may be registered at.
func (m *Member) RegistryHosts() registry.Hosts { return m.registry.Hosts }

// Reminders is the member's durable timer store.
func (m *Member) Reminders() reminder.Store { return m.registry.Reminders }

// scheduler adapts a reminder store to the registry's Scheduler.
type scheduler struct{ store reminder.Store }

func (s scheduler) Schedule(ctx context.Context, kind, id string, at time.Time) error {
	return s.store.Set(ctx, reminder.Key{Kind: kind, ID: id}, at)
}

func (s scheduler) Unschedule(ctx context.Context, kind, id string) error {
	return s.store.Cancel(ctx, reminder.Key{Kind: kind, ID: id})
}

// registryConfig is what the registry kinds of member m share.
func (m *Member) registryConfig(cfg GrainsConfig) registry.Config {
	return registry.Config{Grain: cfg.grainConfig(m.ID()), View: m.registry.View, Reminders: scheduler{m.registry.Reminders},
		Hosts: m.registry.Hosts, MaxInstances: m.registry.MaxInstances, ProbeTimeout: m.registry.ProbeTimeout, PurgeAfter: m.registry.PurgeAfter}
}

// wakeMessages are what a reminder sends to a grain of each kind.
var wakeMessages = map[string]func() any{
	saga.TransferKind: resumeSaga,
	saga.OrderKind:    resumeSaga,
	registry.InstanceKind: func() any {
		return &messages.InstanceRequest{Command: &messages.InstanceRequest_Wake{Wake: &messages.WakeInstance{}}}
	},
}

func resumeSaga() any {
	return &messages.SagaRequest{Command: &messages.SagaRequest_Resume{Resume: &messages.ResumeSaga{}}}
}

// startReminders claims due reminders until Stop and wakes their grains,
// wherever they live: a dead member's timers fire on the others.
func (m *Member) startReminders() {
	ctx, cancel := context.WithCancel(context.Background())
	m.stopReminders, m.remindersDone = cancel, make(chan struct{})
	p := &reminder.Poller{Store: m.registry.Reminders, Interval: m.registry.ReminderPoll, Logger: m.log,
		Wake: func(ctx context.Context, d reminder.Due) error {
			msg, ok := wakeMessages[d.Kind]
			if !ok {
				// Nothing can serve it; drop it rather than fire forever.
				m.log.Warn("reminder of an unknown kind dropped", "kind", d.Kind, "id", d.ID)
				return m.registry.Reminders.Cancel(ctx, d.Key)
			}
			res, err := m.Call(ctx, d.Kind, d.ID, msg())
			if err != nil {
				return fmt.Errorf("wake %s/%s: %w", d.Kind, d.ID, err)
			}
			if f, ok := res.(interface{ GetFailure() *messages.Failure }); ok && f.GetFailure() != nil {
				if f.GetFailure().GetCode() == messages.CodeNotFound {
					// A timer whose grain never came to be: drop it.
					return m.registry.Reminders.Cancel(ctx, d.Key)
				}
				return fmt.Errorf("wake %s/%s: %w", d.Kind, d.ID, f.GetFailure())
			}
			return nil
		}}
	m.poller = p
	go func() {
		defer close(m.remindersDone)
		p.Run(ctx)
	}()
}

// ReminderStats are this member's reminder poller counters.
func (m *Member) ReminderStats() reminder.Stats {
	if m.poller == nil {
		return reminder.Stats{}
	}
	return m.poller.Stats()
}
