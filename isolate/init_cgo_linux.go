//go:build linux && cgo

package isolate

// This file makes cgo compile init_linux.c into every binary that links the package: its
// constructor is the container side (zygote and init), before the Go runtime starts.

/*
#include <linux/filter.h>
struct sock_filter *isorun_keyring_filter(unsigned *n);
*/
import "C"

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

const haveCInit = true

// cKeyringFilter is the C init's seccomp filter (keyring_filter), for the test that it is the
// Go init's.
func cKeyringFilter() []unix.SockFilter {
	var n C.unsigned
	p := C.isorun_keyring_filter(&n)
	return append([]unix.SockFilter(nil), unsafe.Slice((*unix.SockFilter)(unsafe.Pointer(p)), int(n))...)
}
