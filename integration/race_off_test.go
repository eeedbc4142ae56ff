//go:build !race

package integration

// raceEnabled reports whether the tests run with the race detector.
const raceEnabled = false
