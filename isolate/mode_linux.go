package isolate

import "os"

// Init modes: how a container's init comes to be.
const (
	modeZygote = "zygote" // the C init, forked by the zygote (the fast path)
	modeExec   = "exec"   // the C init, exec'd per container
	modeGo     = "go"     // the Go init, exec'd per container (the only one without cgo)
)

// initMode picks the init for a container. ISORUN_INIT=go forces the Go init (for tests of the
// fallback and for comparison); ISORUN_INIT=exec keeps the C init but execs it per container.
// Config.initMode, when set, overrides the environment: tests use it to run both inits side by
// side in one process.
func initMode(cfg *Config) string {
	if !haveCInit {
		return modeGo
	}
	m := cfg.initMode
	if m == "" {
		m = os.Getenv("ISORUN_INIT")
	}
	switch m {
	case "", modeZygote:
		return modeZygote
	case modeGo:
		return modeGo
	}
	return modeExec
}
