package gateway_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"granary/internal/leakcheck"
	"granary/testkit"
)

// protoactorThrottleTimers are the goroutines actor.NewThrottle starts to
// wait out a throttle period (1 s to 60 s) once something was logged; they
// cannot be stopped and outlive the member. The compiler inlines NewThrottle
// into each caller, so each call site has its own name (these are the
// symbols of this test binary, with and without -race).
var protoactorThrottleTimers = []string{
	"github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1",
	"github.com/asynkron/protoactor-go/cluster.(*Config).ToClusterContextConfig.NewThrottleWithLogger.func2.1",
	"github.com/asynkron/protoactor-go/cluster.(*DefaultContext).Request.(*Config).ToClusterContextConfig.NewThrottleWithLogger.func3.1",
	"github.com/asynkron/protoactor-go/cluster.(*Gossiper).StartGossiping.NewThrottle.func3.1",
	"github.com/asynkron/protoactor-go/cluster.NewGossipActor.NewThrottleWithLogger.func2.1",
	"github.com/asynkron/protoactor-go/cluster.newBatchingProducerConfig.NewThrottleWithLogger.func3.1",
	"github.com/asynkron/protoactor-go/cluster.newInformer.NewThrottle.func1.1",
}

func TestMain(m *testing.M) {
	opts := []goleak.Option{
		// Proto.Actor's in-memory test provider reports its TTL in a
		// `for range ticker.C` loop; Shutdown stops the ticker, which never
		// closes its channel, so the loop outlives the member.
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster/clusterproviders/test.(*Provider).startTtlReport.func1"),
	}
	for _, f := range protoactorThrottleTimers {
		opts = append(opts, goleak.IgnoreTopFunction(f))
	}
	code := leakcheck.Run(m, opts...)
	// The granary binary the process tests built goes once they all ran.
	testkit.RemoveBuiltBinaries()
	os.Exit(code)
}
