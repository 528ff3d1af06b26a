package isolate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/isorun/isorun/overlay"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// forRootless runs body in every init mode with a rootless Config (Config.Rootless, so that root
// tests the rootless path too): the C init forked by the zygote maps itself; the exec'd inits, C
// and Go, are mapped by ForkExec before their exec.
func forRootless(t *testing.T, body func(t *testing.T, cfg Config)) {
	t.Helper()
	needRoot(t)
	if why := RootlessBlocker(); why != nil {
		t.Skipf("rootless containers cannot run here: %v", why)
	}
	for _, mode := range []string{modeZygote, modeExec, modeGo} {
		t.Run(mode, func(t *testing.T) {
			if mode != modeGo && !haveCInit {
				t.Skip("no C init in a binary built without cgo")
			}
			cfg := testConfig(mode)
			cfg.Rootless = true
			body(t, cfg)
		})
	}
}

func TestRootless(t *testing.T) {
	forRootless(t, func(t *testing.T, cfg Config) {
		c := start(t, cfg)
		assert.True(t, c.Rootless())
		// The caller is root inside, and nobody else is mapped.
		assert.Equal(t, "0 0\n", sh(t, c, "echo $(id -u) $(id -g)"))
		assert.Equal(t, []string{fmt.Sprintf("0 %d 1", os.Geteuid())}, fieldsOf(sh(t, c, "cat /proc/self/uid_map")))
		assert.Equal(t, []string{fmt.Sprintf("0 %d 1", os.Getegid())}, fieldsOf(sh(t, c, "cat /proc/self/gid_map")))
		assert.Equal(t, "deny\n", sh(t, c, "cat /proc/self/setgroups"))
		ns, err := os.Readlink("/proc/self/ns/user")
		require.NoError(t, err)
		inner, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", c.Pid()))
		require.NoError(t, err)
		assert.NotEqual(t, ns, inner, "the init is in a user namespace of its own")

		// Commands keep Docker's default capabilities (in the user namespace) under no_new_privs.
		status := sh(t, c, "cat /proc/self/status")
		assert.Equal(t, "00000000a80425fb", statusField(status, "CapEff"))
		assert.Equal(t, "00000000a80425fb", statusField(status, "CapBnd"))
		assert.Equal(t, "1", statusField(status, "NoNewPrivs"))

		// /dev's nodes are the host's, bound; /proc is ours; /sys is read-only and shows our
		// net namespace.
		assert.Equal(t, "3\n", sh(t, c, "echo abc > /dev/null && head -c 3 /dev/urandom | wc -c"))
		assert.Equal(t, "1\n", sh(t, c, "ls /proc | grep -cx 1"))
		assert.Equal(t, "lo\n", sh(t, c, "ls /sys/class/net"))
		assert.Contains(t, shFails(t, c, "mkdir /sys/kernel/isorun-test"), "Read-only file system")
		assert.Contains(t, shFails(t, c, "echo 1 > /proc/sys/vm/swappiness"), "Read-only file system")
		assert.Equal(t, "1\n", sh(t, c, "grep -c lo: /proc/net/dev"))

		// The overlay marks its state with user.overlay.* and the kernel makes the whiteouts:
		// Diff reads them as usual.
		sh(t, c, "echo x > /x; rm /bin/ls; rm -rf /etc; mkdir /etc; echo new > /etc/new; mkdir /made")
		got, err := overlay.Diff(c.Upper(), c.Lowers())
		require.NoError(t, err)
		assert.Equal(t, "D /bin/ls\nD /etc/group\nA /etc/new\nD /etc/passwd\nA /made\nA /x\n", got.String())
		var st unix.Stat_t
		require.NoError(t, unix.Lstat(c.Upper()+"/bin/ls", &st))
		assert.Equal(t, uint32(unix.S_IFCHR), st.Mode&unix.S_IFMT, "a whiteout")
		assert.Zero(t, st.Rdev)
		buf := make([]byte, 8)
		n, err := unix.Lgetxattr(c.Upper()+"/etc", "user.overlay.opaque", buf)
		require.NoError(t, err, "the recreated /etc is opaque by user.overlay.opaque")
		assert.Equal(t, "y", string(buf[:n]))

		// What the command made is the caller's on the host.
		require.NoError(t, unix.Lstat(c.Upper()+"/x", &st))
		assert.Equal(t, uint32(os.Geteuid()), st.Uid)
		assert.Equal(t, uint32(os.Getegid()), st.Gid)
	})
}

// Only root is mapped: a command cannot run as another user, and says why.
func TestRootlessOtherUser(t *testing.T) {
	forRootless(t, func(t *testing.T, cfg Config) {
		c := start(t, cfg)
		cmd := c.Command("id")
		cmd.UID, cmd.GID = 1000, 1000
		err := cmd.Run()
		var e *Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, "set user", e.Op)
		assert.ErrorIs(t, err, syscall.EINVAL)
		assert.Contains(t, err.Error(), rootlessOneID)
		// A file of another owner in the image is nobody's inside.
		assert.Equal(t, "65534\n", sh(t, c, "stat -c %u /home/user"))
	})
}

// Root and rootless containers side by side in one process: the pool changes kind each time, and
// every container gets an init of its own kind.
func TestRootlessMixed(t *testing.T) {
	needRoot(t)
	if !haveCInit {
		t.Skip("no C init in a binary built without cgo: no pool")
	}
	if why := RootlessBlocker(); why != nil {
		t.Skipf("rootless containers cannot run here: %v", why)
	}
	if os.Getenv(rootlessEnv) == "1" {
		t.Skip("ISORUN_ROOTLESS=1: every container is rootless")
	}
	for i := 0; i < 6; i++ {
		cfg := testConfig(modeZygote)
		cfg.Rootless = i%3 != 0
		c := start(t, cfg)
		want := "0 0 4294967295"
		if cfg.Rootless {
			want = fmt.Sprintf("0 %d 1", os.Geteuid())
		}
		assert.Equal(t, []string{want}, fieldsOf(sh(t, c, "cat /proc/self/uid_map")), "container %d", i)
		// Give the pool the time to refill, so that the next Start may take a prewarmed init.
		time.Sleep(20 * time.Millisecond)
	}
}

// With the pool, a rootless container takes a prewarmed rootless init: it was mapped before the
// container asked for it.
func TestRootlessPool(t *testing.T) {
	needRoot(t)
	if !haveCInit {
		t.Skip("no C init in a binary built without cgo: no pool")
	}
	if why := RootlessBlocker(); why != nil {
		t.Skipf("rootless containers cannot run here: %v", why)
	}
	if poolSize() == 0 {
		t.Skip("ISORUN_POOL=0")
	}
	cfg := testConfig(modeZygote)
	cfg.Rootless = true
	start(t, cfg) // the pool now makes rootless inits
	deadline := time.Now().Add(10 * time.Second)
	for {
		pool.Lock()
		n, kind := len(pool.ready), pool.userns
		pool.Unlock()
		if n > 0 && kind {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no prewarmed rootless init after 10s (%d ready, rootless %v)", n, kind)
		}
		time.Sleep(10 * time.Millisecond)
	}
	pool.Lock()
	r := pool.ready[len(pool.ready)-1]
	pool.Unlock()
	c := start(t, cfg)
	if c.Pid() != r.pid {
		t.Skip("the pool was drained (the host's mounts changed) before Start took from it")
	}
	assert.Equal(t, []string{fmt.Sprintf("0 %d 1", os.Geteuid())}, fieldsOf(sh(t, c, "cat /proc/self/uid_map")))
	assert.Equal(t, "deny\n", sh(t, c, "cat /proc/self/setgroups"))
	sh(t, c, "echo x > /x && rm /bin/ls")
	got, err := overlay.Diff(c.Upper(), c.Lowers())
	require.NoError(t, err)
	assert.Equal(t, "D /bin/ls\nA /x\n", got.String())
}

// A kept upper on disk (ISORUN_KEEP's) works rootless: user xattrs on the host's filesystem.
func TestRootlessUpperOnDisk(t *testing.T) {
	forRootless(t, func(t *testing.T, cfg Config) {
		dir := t.TempDir()
		cfg.Upper, cfg.Work = filepath.Join(dir, "upper"), filepath.Join(dir, "work")
		require.NoError(t, os.Mkdir(cfg.Upper, 0o755))
		require.NoError(t, os.Mkdir(cfg.Work, 0o755))
		c := start(t, cfg)
		sh(t, c, "rm -rf /etc && mkdir /etc && touch /etc/f")
		require.NoError(t, c.Release())
		got, err := overlay.Diff(cfg.Upper, cfg.Lowers)
		require.NoError(t, err)
		assert.Equal(t, "A /etc/f\nD /etc/group\nD /etc/passwd\n", got.String())
		require.NoError(t, overlay.Remove(dir))
	})
}

func TestRootlessBlocker(t *testing.T) {
	sysctls := func(kv map[string]int) func(string) (int, bool) {
		return func(name string) (int, bool) {
			v, ok := kv[name]
			return v, ok
		}
	}
	debian := map[string]int{"user/max_user_namespaces": 1000, "kernel/unprivileged_userns_clone": 0}
	ubuntu := map[string]int{"user/max_user_namespaces": 1000, "kernel/apparmor_restrict_unprivileged_userns": 1}
	for _, tc := range []struct {
		name      string
		euid      int
		hasUserns bool
		sysctls   map[string]int
		release   string
		proc      []string
		want      string
	}{
		{"fine", 1000, true, map[string]int{"user/max_user_namespaces": 1000}, "6.8.0-45-generic", nil, ""},
		{"no sysctls at all", 1000, true, nil, "6.1.0", nil, ""},
		{"no user namespaces", 1000, false, nil, "6.1.0", nil, "CONFIG_USER_NS"},
		{"max_user_namespaces=0", 1000, true, map[string]int{"user/max_user_namespaces": 0}, "6.1.0", nil, "user.max_user_namespaces=0"},
		{"max_user_namespaces=0 stops root too", 0, true, map[string]int{"user/max_user_namespaces": 0}, "6.1.0", nil, "user.max_user_namespaces=0"},
		{"debian switch", 1000, true, debian, "6.1.0", nil, "kernel.unprivileged_userns_clone=0"},
		{"debian switch spares root", 0, true, debian, "6.1.0", nil, ""},
		{"debian switch on", 1000, true, map[string]int{"kernel/unprivileged_userns_clone": 1}, "6.1.0", nil, ""},
		{"apparmor", 1000, true, ubuntu, "6.8.0-45-generic", nil, "kernel.apparmor_restrict_unprivileged_userns=1"},
		{"apparmor spares root", 0, true, ubuntu, "6.8.0-45-generic", nil, ""},
		{"old kernel", 1000, true, nil, "5.10.0-28-amd64", nil, "before Linux 5.11 (this kernel is 5.10.0-28-amd64)"},
		{"4.x kernel", 0, true, nil, "4.19.0", nil, "before Linux 5.11"},
		{"5.11 is enough", 1000, true, nil, "5.11.0", nil, ""},
		{"masked proc", 1000, true, nil, "6.1.0", []string{"/proc/kcore", "/proc/keys"}, "/proc/kcore, /proc/keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := rootlessBlocker(tc.euid, tc.hasUserns, sysctls(tc.sysctls), tc.release, tc.proc)
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// A failed rootless start names what blocks user namespaces when something does, and only
// for the errors user namespaces cause.
func TestExplainRootless(t *testing.T) {
	c := &Container{cfg: Config{Rootless: true}}
	setup := &SetupError{ID: "x", Step: "mount proc", Err: syscall.EPERM}
	got := c.explainRootless(setup)
	assert.ErrorIs(t, got, syscall.EPERM)
	if why := RootlessBlocker(); why != nil {
		assert.Contains(t, got.Error(), why.Error())
	} else {
		assert.Equal(t, setup, got, "nothing to add where nothing blocks")
	}
	other := &SetupError{ID: "x", Step: "open lower /nope", Err: syscall.ENOENT}
	assert.Equal(t, error(other), c.explainRootless(other))
	root := &Container{}
	assert.Equal(t, error(setup), root.explainRootless(setup))
	assert.Nil(t, c.explainRootless(nil))
	assert.False(t, errors.Is(c.explainRootless(other), syscall.EPERM))
}

func fieldsOf(s string) []string {
	var out []string
	for _, l := range lines(s) {
		out = append(out, strings.Join(strings.Fields(l), " "))
	}
	return out
}

func statusField(status, field string) string {
	for _, l := range lines(status) {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// hostSysEnv marks the run of TestRootlessSysFallback that TestRootlessHostSys makes, in a mount
// namespace whose /sys has a tmpfs over /sys/kernel/mm holding one file, isorun-marker.
const hostSysEnv = "ISORUN_TEST_HOST_SYS"

// TestRootlessHostSys: where the host's /sys has mounts over parts of it, the kernel refuses a
// sysfs in a user namespace (it would reveal what they hide), and the init binds the host's /sys
// read-only instead. Run TestRootlessSysFallback in a mount namespace made so.
func TestRootlessHostSys(t *testing.T) {
	needRoot(t)
	if os.Getenv(hostSysEnv) != "" {
		t.Skip("already in the run with a masked /sys")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare(1) from util-linux")
	}
	if _, err := os.Stat("/sys/kernel/mm"); err != nil {
		t.Skip("no /sys/kernel/mm to mount over")
	}
	self, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, unshare, "-m", "--propagation", "private", "--", "sh", "-c",
		`mount -t tmpfs isorun-test /sys/kernel/mm && touch /sys/kernel/mm/isorun-marker && exec "$@"`, "masked-sys",
		self, "-test.run", "^TestRootlessSysFallback$", "-test.count=1", "-test.v")
	// The child's "/" is private (unshare --propagation private), whatever the parent's: it must
	// not claim a shared one.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, sharedRootEnv+"=") })
	cmd.Env = append(env, hostSysEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "--- PASS: TestRootlessSysFallback ")
	assert.NotContains(t, string(out), "--- FAIL")
}

func TestRootlessSysFallback(t *testing.T) {
	if os.Getenv(hostSysEnv) == "" {
		t.Skip("run by TestRootlessHostSys")
	}
	forRootless(t, func(t *testing.T, cfg Config) {
		c := start(t, cfg)
		assert.Equal(t, "isorun-marker\n", sh(t, c, "ls /sys/kernel/mm"), "the host's /sys, with what is mounted in it")
		assert.Contains(t, shFails(t, c, "touch /sys/kernel/mm/x"), "Read-only file system")
		assert.Contains(t, shFails(t, c, "mkdir /sys/kernel/isorun-test"), "Read-only file system")
	})
}
