//go:build linux

package isolate

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// procStatus is a field of /proc/PID/status.
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, l := range lines(string(b)) {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return ""
}

// sharesZygoteMemory says whether the init pid runs in its zygote's address space (kcmp).
func sharesZygoteMemory(t *testing.T, pid int) bool {
	t.Helper()
	ppid, err := strconv.Atoi(procStatus(t, pid, "PPid"))
	require.NoError(t, err)
	const kcmpVM = 1
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(ppid), uintptr(pid), kcmpVM, 0, 0, 0)
	require.Zero(t, errno, "kcmp %d %d", ppid, pid)
	return r == 0
}

// The confined zygote holds what an unprivileged container's commands share (the bounding set,
// the keyring filter), and its inits inherit it; a privileged container's init comes from the
// other zygote, which holds none of it.
func TestZygoteKinds(t *testing.T) {
	needRoot(t)
	if !haveCInit {
		t.Skip("no C init in a binary built without cgo: no zygote")
	}
	full := procStatus(t, os.Getpid(), "CapBnd")
	cfg := testConfig(modeZygote)
	plain := start(t, cfg)
	cfg.Privileged = true
	priv := start(t, cfg)

	zmu.Lock()
	confined, other := zygotes[zygoteConfined], zygotes[zygotePrivileged]
	zmu.Unlock()
	require.NotNil(t, confined)
	require.NotNil(t, other)
	assert.NotEqual(t, confined.pid, other.pid)
	for _, p := range []struct {
		what      string
		pid       int
		bnd, filt string
	}{
		{"confined zygote", confined.pid, "00000000a80425fb", "2"},
		{"unprivileged init", plain.Pid(), "00000000a80425fb", "2"},
		{"privileged zygote", other.pid, full, "0"},
		{"privileged init", priv.Pid(), full, "0"},
	} {
		assert.Equal(t, p.bnd, procStatus(t, p.pid, "CapBnd"), p.what)
		assert.Equal(t, p.filt, procStatus(t, p.pid, "Seccomp"), p.what)
	}
	assert.Equal(t, "0", procStatus(t, confined.pid, "NoNewPrivs"), "root needs no no_new_privs to install a filter")
	// The init keeps its own capabilities: it still mounts, after all.
	assert.Equal(t, full, procStatus(t, plain.Pid(), "CapEff"))
	out, err := plain.Command("sh", "-c", "grep -E '^(CapBnd|Seccomp):' /proc/self/status").Output()
	require.NoError(t, err)
	assert.Equal(t, "CapBnd:\t00000000a80425fb\nSeccomp:\t2\n", string(out))
}

// An init of the confined zygote refuses a privileged container's setup: it could not take the
// filter or the capabilities back.
func TestConfinedZygoteRefusesPrivileged(t *testing.T) {
	needRoot(t)
	if !haveCInit {
		t.Skip("no C init in a binary built without cgo: no zygote")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := testConfig(modeZygote)
	cfg.Privileged = true
	c := &Container{id: newID(), cfg: cfg, pidfd: -1, jobs: map[string]*Cmd{}, done: make(chan struct{})}
	setup, err := c.setupMessage()
	require.NoError(t, err)
	r, err := newInit(ctx, zygoteConfined, c.cloneFlags(), false, nil)
	require.NoError(t, err)
	c.conn, c.pid, c.pidfd = r.conn, r.pid, r.pidfd
	_, _, err = c.conn.WriteMsgUnix(setup, nil, nil)
	require.NoError(t, err)
	err = c.awaitReady(ctx, nil)
	c.Close()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "a privileged container from the confined zygote")
	_, err = os.Stat(fmt.Sprintf("/proc/%d", c.pid))
	assert.True(t, os.IsNotExist(err), "the init is gone")
}
