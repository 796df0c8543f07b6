package testkit

import "go.uber.org/goleak"

// LeakOptions are the goleak exceptions for goroutines Proto.Actor itself
// leaves behind at the pinned version, and only those:
//   - the test provider's TTL loop ranges over a ticker channel that Stop
//     never closes, so it blocks forever after shutdown;
//   - the throttles' timer goroutines outlive shutdown by up to their period
//     (the gossip actor's is 60s);
//   - after a peer crashes (Cluster.Kill), the remote endpoint writer of
//     each member still sending to it retries the dial 5 times, 2s apart,
//     and leaks the gRPC ClientConn of every failed try: endpointWriter.
//     initializeInternal assigns each new grpc.Dial to the writer's conn
//     field without closing the previous one, so only the last is closed
//     when the writer stops. A lost ClientConn redials the dead address
//     forever, and nothing holds it any more, so stopping the members does
//     not end it. Its goroutines are gRPC's own, named nowhere else by
//     Proto.Actor: the address connection backing off between dials and the
//     callback serializers every ClientConn runs. Ignoring those two hides
//     only ClientConns that are not connected; a leaked connected one still
//     shows its transport goroutines. The writer's retry loop itself ends
//     within 10s of the crash.
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
		// The request-log throttle (2s) a failing cluster.Request starts.
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/cluster.(*DefaultContext).Request.(*Config).ToClusterContextConfig.NewThrottleWithLogger.func3.1"),
		// Dials to a crashed peer (see above).
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/remote.(*endpointWriter).initialize"),
		goleak.IgnoreTopFunction("google.golang.org/grpc.(*addrConn).resetTransport"),
		// Its name since grpc 1.7x (1.83 here, which OpenTelemetry's OTLP
		// exporter requires).
		goleak.IgnoreTopFunction("google.golang.org/grpc.(*addrConn).resetTransportAndUnlock"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	}
}
