package testkit

import "go.uber.org/goleak"

// LeakOptions are the goleak exceptions for goroutines Proto.Actor itself
// leaves behind at the pinned version, and only those:
//   - the test provider's TTL loop ranges over a ticker channel that Stop
//     never closes, so it blocks forever after shutdown;
//   - the throttles' timer goroutines outlive shutdown by up to their period
//     (the gossip actor's is 60s).
//
// Use as goleak.VerifyTestMain(m, testkit.LeakOptions()...).
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster/clusterproviders/test.(*Provider).startTtlReport.func1"),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster.(*Gossiper).StartGossiping.NewThrottle.func3.1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottle.func1.1"),
		// The same timers where inlining names them after their owner: the
		// dead-letter throttle (1s) and the gossip actor's (60s, started by
		// its first gossip to another member; un-inlined name too).
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/cluster.NewGossipActor.NewThrottleWithLogger.func2.1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottleWithLogger.func1.1"),
	}
}
