package isolate

import "os"

// useZygote says whether containers are forked by the C zygote (the fast path) rather than
// exec'd one by one. ISORUN_INIT=go forces the Go init (for tests of the fallback and for
// comparison); ISORUN_INIT=exec keeps the C init but execs it per container.
func useZygote() bool {
	return haveCInit && os.Getenv("ISORUN_INIT") == ""
}
