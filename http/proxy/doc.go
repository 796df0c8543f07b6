// Package proxy owns the gateway's reverse proxy to services registered from
// outside Granary: picking an UP instance by the route's strategy, rewriting the
// path, setting forwarded and identity headers, one circuit breaker per
// instance, retrying undelivered requests, and the cluster-wide in-flight counts
// least_connections needs. It knows nothing of Echo or of the registry: the
// gateway resolves the route and the identity and hands them to Serve; the
// registry supplies the UP targets through Config.Targets.
package proxy
