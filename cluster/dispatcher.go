package cluster

import (
	"github.com/asynkron/protoactor-go/actor"

	"granary/internal/warm"
)

// warmDispatcher runs grain mailboxes on warm workers (internal/warm).
// Proto.Actor's default starts a goroutine for every mailbox run, so under
// load almost every message of a grain began on a fresh, small stack and
// grew it on its first deep call (account.Decide, Host.Settle): ~5 % of a
// member's CPU in the deposit profile (issue 10). Schedule never blocks.
type warmDispatcher struct {
	pool       *warm.Pool
	throughput int
}

func (d warmDispatcher) Schedule(fn func()) { d.pool.Go(fn) }
func (d warmDispatcher) Throughput() int    { return d.throughput }

var _ actor.Dispatcher = warmDispatcher{}

// grainDispatcher is shared by every grain kind of the process: idle
// workers serve any mailbox.
var grainDispatcher = warmDispatcher{pool: warm.New(256, warm.DefaultIdle), throughput: 300}
