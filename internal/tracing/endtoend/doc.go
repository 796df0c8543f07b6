// Package endtoend holds the tracing test that needs the whole stack (a
// gateway in front of an in-process cluster, exporting to an in-process
// OTLP receiver). It is a package of its own because that test installs
// the process's global tracer provider.
package endtoend
