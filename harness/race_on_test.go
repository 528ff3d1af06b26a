//go:build race

package harness

// raceEnabled says the test binary was built with -race.
const raceEnabled = true
