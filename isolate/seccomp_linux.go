package isolate

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// x32SyscallBit marks the x32 ABI's system call numbers on x86-64 (__X32_SYSCALL_BIT).
const x32SyscallBit = 0x40000000

// keyringFilter is the seccomp filter of a non-privileged command: add_key, request_key and
// keyctl fail with EPERM, every other system call is allowed. Without a user namespace, root in
// the container is the host's root to the kernel's keyrings (they belong to a uid), so these
// calls would reach the host root's user keyring. The filter knows every ABI a process on an
// x86-64 or arm64 kernel can call with: x86-64, its x32 numbers (the same calls with
// x32SyscallBit), i386 (int 0x80 or a 32-bit binary), arm64 and 32-bit arm; a call of any other
// architecture kills the process. It is keyring_filter in init_linux.c, instruction for
// instruction (TestKeyringFilterSame).
func keyringFilter() []unix.SockFilter {
	ld := func(off uint32) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}
	}
	ret := func(k uint32) unix.SockFilter { return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k} }
	const nrOff, archOff = 0, 4 // struct seccomp_data: int nr; __u32 arch; ...
	var f []unix.SockFilter
	// Each architecture's block is skipped when the call is not of that architecture.
	arch := func(a uint32, nrs ...uint32) {
		f = append(f, ld(archOff), unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: a, Jf: uint8(2*len(nrs) + 2)}, ld(nrOff))
		for _, nr := range nrs {
			f = append(f, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: nr, Jt: 0, Jf: 1},
				ret(unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM)))
		}
		f = append(f, ret(unix.SECCOMP_RET_ALLOW))
	}
	// add_key, request_key, keyctl in each ABI's table.
	arch(unix.AUDIT_ARCH_X86_64, 248, 249, 250, x32SyscallBit|248, x32SyscallBit|249, x32SyscallBit|250)
	arch(unix.AUDIT_ARCH_I386, 286, 287, 288)
	arch(unix.AUDIT_ARCH_AARCH64, 217, 218, 219) // asm-generic numbers
	arch(unix.AUDIT_ARCH_ARM, 309, 310, 311)     // EABI
	return append(f, ret(unix.SECCOMP_RET_KILL_PROCESS))
}

// installKeyringFilter installs keyringFilter on the calling thread, which must have
// no_new_privs set; the threads and processes it then starts inherit it. On another
// architecture than the filter knows it fails with ENOSYS, rather than run commands unfiltered
// (or have them killed: their own calls would be of an architecture the filter does not know).
func installKeyringFilter() error {
	switch runtime.GOARCH {
	case "amd64", "386", "arm64", "arm":
	default:
		return unix.ENOSYS
	}
	f := keyringFilter()
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0)
	runtime.KeepAlive(f)
	return err
}
