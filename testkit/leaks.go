package testkit

import "go.uber.org/goleak"

// LeakOptions are the goleak exceptions for goroutines Proto.Actor itself
// leaves behind at the pinned version, and only those:
//   - the test provider's TTL loop ranges over a ticker channel that Stop
//     never closes, so it blocks forever after shutdown;
//   - the throttle's timer goroutine outlives shutdown by up to its period.
//
// Use as goleak.VerifyTestMain(m, testkit.LeakOptions()...).
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster/clusterproviders/test.(*Provider).startTtlReport.func1"),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster.(*Gossiper).StartGossiping.NewThrottle.func3.1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottle.func1.1"),
	}
}
