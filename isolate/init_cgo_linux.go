//go:build linux && cgo

package isolate

// This file makes cgo compile init_linux.c into every binary that links the package: its
// constructor is the container side (zygote and init), before the Go runtime starts.

import "C"

const haveCInit = true
