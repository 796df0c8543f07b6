package redis

import (
	"errors"
	"fmt"
	"testing"

	"granary/persistence"
)

// append.lua reads the commands' marks in chunks: a batch of more commands
// than Lua's stack holds for one unpack still appends, and a duplicate
// past the first chunk is found and named by its own index.
func TestAppendManyCommands(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv server) {
		s, _ := newStore(t, srv, 1)
		ctx := t.Context()
		batch := func(n, from int) ([]persistence.EventData, []persistence.CommandFence) {
			events := make([]persistence.EventData, n)
			cmds := make([]persistence.CommandFence, n)
			for i := range events {
				events[i] = persistence.EventData{Type: "Deposited", Data: []byte("x")}
				cmds[i] = persistence.CommandFence{ID: fmt.Sprintf("cmd-%d", from+i), Through: i + 1}
			}
			return events, cmds
		}
		const n = 4100
		events, cmds := batch(n, 0)
		res, err := s.Append(ctx, "many", 0, events, persistence.ForCommands(cmds...))
		if err != nil || res.Version != n {
			t.Fatalf("append of %d commands: %+v, %v", n, res, err)
		}
		// A new batch whose 601st command (past the first chunk of 500) is
		// one of the first batch's.
		events, cmds = batch(700, n)
		cmds[600].ID = "cmd-1234"
		_, err = s.Append(ctx, "many", n, events, persistence.ForCommands(cmds...))
		var dup *persistence.DuplicateError
		if !errors.As(err, &dup) || dup.Index != 600 || dup.Command != "cmd-1234" || dup.Version != 1235 {
			t.Fatalf("duplicate at index 600: %v (%+v), want it at version 1235", err, dup)
		}
		if v, err := s.StreamVersion(ctx, "many"); err != nil || v != n {
			t.Fatalf("version after the refused batch: %d, %v; want %d", v, err, n)
		}
	})
}
