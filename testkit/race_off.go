//go:build !race

package testkit

// RaceEnabled reports whether the test binary was built with -race.
const RaceEnabled = false
