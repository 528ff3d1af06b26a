package isolate

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// runFilter interprets the classic BPF of a seccomp filter (the instructions it uses) on one
// system call, and returns the action.
func runFilter(t *testing.T, f []unix.SockFilter, arch, nr uint32) uint32 {
	var a uint32
	for pc := 0; pc < len(f); pc++ {
		in := f[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			switch in.K {
			case 0:
				a = nr
			case 4:
				a = arch
			default:
				t.Fatalf("pc %d: load of seccomp_data offset %d", pc, in.K)
			}
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			if a == in.K {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("pc %d: instruction %#x", pc, in.Code)
		}
	}
	t.Fatal("the filter ran off its end")
	return 0
}

func TestKeyringFilter(t *testing.T) {
	f := keyringFilter()
	eperm := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	allow := uint32(unix.SECCOMP_RET_ALLOW)
	for _, c := range []struct {
		name     string
		arch     uint32
		keyrings []uint32 // add_key, request_key, keyctl
		others   []uint32 // read, write, execve, exit_group (and what sits next to the keyring calls)
	}{
		{"x86-64", unix.AUDIT_ARCH_X86_64, []uint32{248, 249, 250}, []uint32{0, 1, 59, 231, 247, 251}},
		{"x32", unix.AUDIT_ARCH_X86_64, []uint32{x32SyscallBit | 248, x32SyscallBit | 249, x32SyscallBit | 250},
			[]uint32{x32SyscallBit | 0, x32SyscallBit | 1, x32SyscallBit | 520, x32SyscallBit | 231}},
		{"i386", unix.AUDIT_ARCH_I386, []uint32{286, 287, 288}, []uint32{3, 4, 11, 252, 285, 289}},
		{"arm64", unix.AUDIT_ARCH_AARCH64, []uint32{217, 218, 219}, []uint32{63, 64, 221, 94, 216, 220}},
		{"arm", unix.AUDIT_ARCH_ARM, []uint32{309, 310, 311}, []uint32{3, 4, 11, 248, 308, 312}},
	} {
		for _, nr := range c.keyrings {
			assert.Equal(t, eperm, runFilter(t, f, c.arch, nr), "%s: call %#x", c.name, nr)
		}
		for _, nr := range c.others {
			assert.Equal(t, allow, runFilter(t, f, c.arch, nr), "%s: call %#x", c.name, nr)
		}
	}
	// The keyring numbers of one ABI are other calls in another: x86-64's keyctl (250) is
	// i386's 250 (fadvise64), allowed there.
	assert.Equal(t, allow, runFilter(t, f, unix.AUDIT_ARCH_I386, 250))
	for _, arch := range []uint32{unix.AUDIT_ARCH_PPC64LE, unix.AUDIT_ARCH_RISCV64, unix.AUDIT_ARCH_S390X, unix.AUDIT_ARCH_ARMEB, 0} {
		assert.Equal(t, uint32(unix.SECCOMP_RET_KILL_PROCESS), runFilter(t, f, arch, 250), "architecture %#x", arch)
	}
}

// TestKeyringFilterSame checks that the C init installs the filter the Go init does.
func TestKeyringFilterSame(t *testing.T) {
	if !haveCInit {
		t.Skip("no C init in a build without cgo")
	}
	c := cKeyringFilter()
	require.NotEmpty(t, c)
	assert.Equal(t, keyringFilter(), c)
}
