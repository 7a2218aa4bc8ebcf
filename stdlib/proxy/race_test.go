//go:build race

package proxy

// raceEnabled: the test binary runs with the race detector, which makes
// timings meaningless.
const raceEnabled = true
