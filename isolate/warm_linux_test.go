//go:build linux

package isolate

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/isorun/isorun/overlay"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// warmConfig is testConfig with an ImageID of the test's own, so that it shares parked
// containers with no other test.
func warmConfig(t *testing.T) Config {
	t.Helper()
	needRoot(t)
	if !haveCInit {
		t.Skip("no C init in a binary built without cgo: containers are never parked")
	}
	if poolSize() == 0 {
		t.Skip("ISORUN_POOL=0 turns parked containers off")
	}
	cfg := testConfig(modeZygote)
	cfg.ImageID = "test:" + t.Name() + ":" + newID()
	return cfg
}

// parked waits for the container parked for cfg and returns it.
func parked(t *testing.T, cfg Config) *Container {
	t.Helper()
	key := warmKey(&cfg)
	require.NotEmpty(t, key)
	var c *Container
	waitUntil(t, "a container parked after a Start", func() bool {
		warm.Lock()
		defer warm.Unlock()
		c = warm.ready[key]
		return c != nil
	})
	return c
}

// startTwice starts two containers of cfg, which has the next one parked, and returns that.
func startTwice(t *testing.T, cfg Config) *Container {
	t.Helper()
	start(t, cfg)
	start(t, cfg)
	return parked(t, cfg)
}

// A Config's first Start parks nothing.
func TestWarmNotForOne(t *testing.T) {
	cfg := warmConfig(t)
	start(t, cfg)
	time.Sleep(200 * time.Millisecond)
	warm.Lock()
	p, filling := warm.ready[warmKey(&cfg)], warm.filling[warmKey(&cfg)]
	warm.Unlock()
	assert.Nil(t, p)
	assert.False(t, filling)
}

// startParked starts a container of cfg that was parked (a host mount change may drop the
// parked one between the look and the Start: then it tries again).
func startParked(t *testing.T, cfg Config) (*Container, *Container) {
	t.Helper()
	for try := 0; ; try++ {
		p := parked(t, cfg)
		c := start(t, cfg)
		if c == p {
			return c, p
		}
		require.Less(t, try, 20, "Start never took the parked container")
	}
}

// names are a process's comm and cmdline, which leak checks read.
func names(t *testing.T, pid int) [2]string {
	t.Helper()
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	require.NoError(t, err)
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	require.NoError(t, err)
	return [2]string{strings.TrimSpace(string(comm)), strings.TrimRight(string(cmdline), "\x00")}
}

// A Start with an ImageID parks a container for the next one: set up, named isorun-ready until
// taken, then the caller's in every way a fresh container is.
func TestWarmContainer(t *testing.T) {
	cfg := warmConfig(t)
	cfg.Env = []string{"A=1"}
	for i := 0; i < 2; i++ { // the first Start of a Config parks nothing, the second does
		require.NoError(t, start(t, cfg).Release())
	}
	p := parked(t, cfg)
	// The zygote answers as soon as it has forked the init, which renames itself right after.
	ready := [2]string{"isorun-ready", "isorun-ready"}
	if sharesZygoteMemory(t, p.Pid()) {
		ready[1] = "isorun-init" // the command line is the zygote's (init_linux.c)
	}
	assert.Eventually(t, func() bool { return names(t, p.Pid()) == ready }, 5*time.Second, time.Millisecond,
		"a parked container's init, as leak checks know it: %q", names(t, p.Pid()))

	cfg.Env = []string{"B=2"}
	cfg.Dir = "/tmp"
	c, p := startParked(t, cfg)
	assert.Same(t, p, c)
	assert.Equal(t, "isorun-init", strings.TrimSpace(sh(t, c, "cat /proc/1/comm")), "renamed before the first command")
	assert.Equal(t, [2]string{"isorun-init", "isorun-init"}, names(t, c.Pid()))
	assert.Equal(t, "2 \n/tmp\n", sh(t, c, `echo "$B $A"; pwd`), "the Env and Dir of the Start that took it")
	assert.Equal(t, c.ID()+"\n", sh(t, c, "hostname"))
	assert.Equal(t, testRootEntries, lines(sh(t, c, "ls -A /")))
	assert.Equal(t, []string{"1", "ps"}, psPids(t, c), "nothing ran in it before")
	got, err := overlay.Diff(c.Upper(), c.Lowers())
	require.NoError(t, err)
	assert.Empty(t, got.String(), "a parked container's upper layer is empty")
	sh(t, c, "echo hi > /greeting && rm /bin/ls")
	got, err = overlay.Diff(c.Upper(), c.Lowers())
	require.NoError(t, err)
	assert.Equal(t, "D /bin/ls\nA /greeting\n", got.String())
	pid := c.Pid()
	require.NoError(t, c.Release())
	_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
	assert.True(t, os.IsNotExist(err), "a released container that was parked is gone")
}

// psPids is what ps shows in c: pid 1, and the ps itself (named so, its pid varies).
func psPids(t *testing.T, c *Container) []string {
	var out []string
	for _, l := range lines(sh(t, c, "ps -o pid,comm")) {
		f := strings.Fields(l)
		if len(f) != 2 || f[0] == "PID" {
			continue
		}
		if f[1] == "ps" {
			out = append(out, "ps")
		} else {
			out = append(out, f[0])
		}
	}
	return out
}

// A parked container is only ever handed to a Start whose setup would have made the same one.
func TestWarmKey(t *testing.T) {
	base := Config{Lowers: []string{"/a", "/b"}, ImageID: "sha256:x", initMode: modeZygote}
	if poolSize() == 0 {
		t.Skip("ISORUN_POOL=0 turns parked containers off")
	}
	k := warmKey(&base)
	require.NotEmpty(t, k)
	same := base
	same.Env, same.Dir = []string{"X=1"}, "/srv"
	assert.Equal(t, k, warmKey(&same), "Env and Dir are the commands', not the setup's")
	for name, change := range map[string]func(*Config){
		"ImageID":     func(c *Config) { c.ImageID = "sha256:y" },
		"Lowers":      func(c *Config) { c.Lowers = []string{"/a"} },
		"Hostname":    func(c *Config) { c.Hostname = "h" },
		"ScratchSize": func(c *Config) { c.ScratchSize = 1 << 20 },
		"Privileged":  func(c *Config) { c.Privileged = true },
		"Rootless":    func(c *Config) { c.Rootless = true },
	} {
		c := base
		change(&c)
		assert.NotEqual(t, k, warmKey(&c), "%s is part of the key", name)
		assert.NotEmpty(t, warmKey(&c), name)
	}
	for name, change := range map[string]func(*Config){
		"no ImageID": func(c *Config) { c.ImageID = "" },
		"Mounts":     func(c *Config) { c.Mounts = []Mount{{Type: "tmpfs", Target: "/t"}} },
		"Resources":  func(c *Config) { c.Resources = &Resources{Pids: 10} },
		"Upper":      func(c *Config) { c.Upper, c.Work = "/u", "/w" },
		"Go init":    func(c *Config) { c.initMode = modeGo },
	} {
		c := base
		change(&c)
		assert.Empty(t, warmKey(&c), "%s: never parked", name)
	}
}

// A privileged Start does not get the parked container of an unprivileged one (it has nodev and
// a read-only /dev), and vice versa.
func TestWarmPrivilegedApart(t *testing.T) {
	cfg := warmConfig(t)
	p := startTwice(t, cfg)
	priv := cfg
	priv.Privileged = true
	c := start(t, priv)
	assert.NotSame(t, p, c)
	sh(t, c, "mknod /dev/x c 1 3 && echo ok > /dev/x") // a privileged /dev: writable, nodes work
}

// A parked container whose init died is not handed out: the Start gets a working one.
func TestWarmDeadParked(t *testing.T) {
	cfg := warmConfig(t)
	p := startTwice(t, cfg)
	require.NoError(t, unix.Kill(p.Pid(), unix.SIGKILL))
	// Dead: its pidfd reports the exit (nobody reads a parked container's socket to notice).
	fds := []unix.PollFd{{Fd: int32(p.pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 10_000)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the parked init outlived its SIGKILL by 10s")
	c := start(t, cfg)
	assert.NotSame(t, p, c)
	assert.Equal(t, "ok\n", sh(t, c, "echo ok"))
}

// Shutdown releases parked containers: no isorun-ready process of ours is left.
func TestWarmShutdown(t *testing.T) {
	cfg := warmConfig(t)
	p := startTwice(t, cfg)
	Shutdown()
	_, err := os.Stat(fmt.Sprintf("/proc/%d", p.Pid()))
	assert.True(t, os.IsNotExist(err), "the parked container's init is gone")
	warm.Lock()
	n := len(warm.ready)
	warm.Unlock()
	assert.Zero(t, n)
	assert.Equal(t, "ok\n", sh(t, start(t, cfg), "echo ok"), "containers start after a Shutdown")
}

// A change of the host's mount table drops parked containers, as it drops prewarmed inits.
func TestWarmDroppedOnMountChange(t *testing.T) {
	cfg := warmConfig(t)
	p := startTwice(t, cfg)
	dir := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, ""))
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the parked container outlived a change of the host's mounts by 10s")
	}
}
