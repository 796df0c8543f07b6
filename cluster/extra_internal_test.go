package cluster

import (
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"granary/persistence/memory"
)

// TestBuiltinKindsNamesEveryKind holds builtinKinds to what kinds()
// registers: a kind added there but not to the list would let an extra
// kind of the same name silently replace it.
func TestBuiltinKindsNamesEveryKind(t *testing.T) {
	cfg := DefaultGrainsConfig()
	cfg.Account.Store, cfg.Account.Logger = memory.New(1), slog.New(slog.NewTextHandler(io.Discard, nil))
	system := actor.NewActorSystem()
	defer system.Shutdown()
	m := &Member{System: system, log: cfg.Account.Logger, registry: cfg.Registry.withDefaults()}
	var got []string
	for _, k := range kinds(m, cfg, newPlacement(cfg.Account.IdleTimeout/4, time.Second, cfg.Account.Logger)) {
		if !isService(cfg, k.Kind) {
			got = append(got, k.Kind)
		}
	}
	want := slices.Clone(builtinKinds)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("kinds() registers %v, builtinKinds lists %v", got, want)
	}
}
