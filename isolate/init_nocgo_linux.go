//go:build linux && !cgo

package isolate

import "golang.org/x/sys/unix"

const haveCInit = false

// cKeyringFilter is nil: there is no C init.
func cKeyringFilter() []unix.SockFilter { return nil }

// zygoteExe is this binary: without cgo there is no zygote to exec (modes never pick it).
func zygoteExe() (zygoteProgram, error) { return selfZygote, nil }
