package isolate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What the host sees of containers.

const (
	// helperEnv turns the test binary into a helper process (see helperMain).
	helperEnv = "ISOLATE_TEST_HELPER"
	// sharedRootEnv says the test binary runs in a mount namespace whose "/" is shared.
	sharedRootEnv = "ISOLATE_TEST_SHARED_ROOT"
)

// helperMain is the test binary re-exec'd by a test to play a process that owns a container:
// "owner:MODE:ROOT" starts a container of ROOT in init mode MODE, runs `sleep 1000` in it, prints
// "INITPID ZYGOTEPID" and waits to be killed.
func helperMain() int {
	kind, rest, _ := strings.Cut(os.Getenv(helperEnv), ":")
	if code, ok := cgroupHelper(kind, rest); ok {
		return code
	}
	switch kind {
	case "owner":
		mode, root, _ := strings.Cut(rest, ":")
		c, err := Start(context.Background(), Config{Lowers: []string{root}, initMode: mode})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := c.Command("sleep", "1000").Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// A background child in its own session too, to show that it goes as well.
		if err := c.Command("sh", "-c", "setsid sleep 1001 >/dev/null 2>&1 &").Run(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		zpid := 0
		if mode == modeZygote {
			zpid = zygotePids()[0]
		}
		fmt.Printf("%d %d\n", c.Pid(), zpid)
		// The test kills us long before this; the bound keeps a lost helper from living forever.
		time.Sleep(2 * time.Minute)
		return 2
	}
	fmt.Fprintf(os.Stderr, "%s=%q: unknown helper\n", helperEnv, os.Getenv(helperEnv))
	return 1
}

// checkSharedRoot makes sure a run that claims a shared "/" has one.
func checkSharedRoot() error {
	mounts, err := readMountinfo()
	if err != nil {
		return err
	}
	for _, e := range mounts {
		if e.point == "/" {
			if !strings.Contains(" "+e.line+" ", " shared:") {
				return fmt.Errorf("%s is set but / is not shared: %s", sharedRootEnv, e.line)
			}
			return nil
		}
	}
	return errors.New("no / in mountinfo")
}

// TestHostMountsUnchanged: the host's mount table never gains an entry while a container (with
// volumes and a tmpfs) starts, runs and ends.
func TestHostMountsUnchanged(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		before, err := readMountinfo()
		require.NoError(t, err)
		check := func(when string) {
			t.Helper()
			now, err := readMountinfo()
			require.NoError(t, err)
			assert.Empty(t, ourNewMounts(before, now), "new mounts on the host %s", when)
		}
		cfg.Mounts = []Mount{
			{Type: "bind", Source: t.TempDir(), Target: "/data"},
			{Type: "bind", Source: t.TempDir(), Target: "/ro", ReadOnly: true},
			{Type: "tmpfs", Target: "/scratch"},
		}
		c := start(t, cfg)
		check("after Start")
		sh(t, c, "echo x > /data/y && mount | wc -l")
		check("while a command ran")
		// The container has its mounts, in its own namespace.
		theirs, err := readMountinfoOf(strconv.Itoa(c.Pid()))
		require.NoError(t, err)
		var points []string
		for _, e := range theirs {
			points = append(points, e.point)
		}
		assert.Contains(t, points, "/data")
		assert.Contains(t, points, "/proc")
		require.NoError(t, c.Close())
		check("after Close")
		require.NoError(t, c.Release())
		check("after Release")
	})
}

// TestCloseLeavesNoProcess: Close returns once every process of the container is gone, the ones
// started in the background and in other sessions included.
func TestCloseLeavesNoProcess(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		c := start(t, cfg)
		ns := pidNS(t, c.Pid())
		require.NotEqual(t, pidNS(t, os.Getpid()), ns)
		running := c.Command("sleep", "1000")
		require.NoError(t, running.Start())
		sh(t, c, "sleep 1001 >/dev/null 2>&1 & setsid sleep 1002 >/dev/null 2>&1 & httpd -p 8080")
		assert.GreaterOrEqual(t, len(pidsIn(ns)), 5, "init, three sleeps and httpd")
		require.NoError(t, c.Close())
		var left []int
		for _, p := range pidsIn(ns) {
			if alive(p) {
				left = append(left, p)
			}
		}
		assert.Empty(t, left, "processes of the container running after Close")
		// The init's exit status is collected soon after (by the zygote, or by us).
		deadline := time.Now().Add(time.Second)
		for len(pidsIn(ns)) > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		assert.Empty(t, pidsIn(ns), "zombies of the container a second after Close")
		assert.ErrorIs(t, running.Wait(), ErrClosed)
		assert.ErrorIs(t, c.Err(), ErrClosed)
		select {
		case <-c.Done():
		default:
			t.Error("Done is not closed after Close")
		}
		require.NoError(t, c.Close(), "a second Close")
	})
}

// TestOwnerKilled: when the process that owns a container is SIGKILLed (a test binary killed by
// go test's timeout, a CI runner giving up), its containers go with it: the kernel tells their
// inits, no one else has to clean up.
func TestOwnerKilled(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		self, err := os.Executable()
		require.NoError(t, err)
		helper := exec.Command(self)
		helper.Env = append(os.Environ(), helperEnv+"=owner:"+cfg.initMode+":"+testRoot)
		helper.Stderr = os.Stderr
		out, err := helper.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, helper.Start())
		killed := false
		defer func() {
			if !killed {
				helper.Process.Kill()
				helper.Wait()
			}
		}()
		line, err := bufio.NewReader(out).ReadString('\n')
		require.NoError(t, err, "the helper's report")
		var initPid, zygotePid int
		_, err = fmt.Sscan(line, &initPid, &zygotePid)
		require.NoError(t, err, "the helper's report %q", line)
		ns := pidNS(t, initPid)
		require.GreaterOrEqual(t, len(pidsIn(ns)), 3, "init and two sleeps in %s", ns)

		require.NoError(t, helper.Process.Signal(syscall.SIGKILL))
		helper.Wait()
		killed = true
		waitGone(t, ns, time.Second)
		if zygotePid > 0 {
			deadline := time.Now().Add(time.Second)
			for alive(zygotePid) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			assert.False(t, alive(zygotePid), "the zygote %d outlived its owner", zygotePid)
		}
	})
}

// alive says whether pid is a process that has not exited (a zombie has).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses, the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// sharedRootTests run again, by TestSharedRoot, in a mount namespace whose "/" is shared.
var sharedRootTests = []string{
	"TestRootHoldsOnlyImage", "TestNoHostMounts", "TestVolumes", "TestVolumeTargetSymlink",
	"TestHostMountsUnchanged", "TestCloseLeavesNoProcess", "TestLoopback", "TestRunAndExitCodes",
	"TestSetupErrors", "TestRootless",
}

// TestSharedRoot: on systemd hosts "/" is shared, and a runtime that forgets to make it slave in
// its mount namespace leaks its mounts to the host (and fails pivot_root with EINVAL). Re-run a
// representative subset of the suite with "/" made rshared in a scratch mount namespace (as
// ../shared/tools/with-shared-root does); each of those tests and TestMain check that no mount
// shows up in that namespace.
func TestSharedRoot(t *testing.T) {
	needRoot(t)
	if os.Getenv(sharedRootEnv) != "" {
		t.Skip("already running with a shared /")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare(1) from util-linux")
	}
	self, err := os.Executable()
	require.NoError(t, err)
	before, err := readMountinfo()
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"-m", "--propagation", "unchanged", "--", "sh", "-c",
		// Show the root's propagation, then run the tests; the namespace dies with sh.
		`mount --make-rshared / && grep ' / / ' /proc/self/mountinfo && exec "$@"`, "with-shared-root",
		self, "-test.run", "^(" + strings.Join(sharedRootTests, "|") + ")$", "-test.count=1", "-test.v"}
	cmd := exec.CommandContext(ctx, unshare, args...)
	cmd.Env = append(os.Environ(), sharedRootEnv+"=1")
	cmd.Dir = filepath.Dir(self)
	if wd, err := os.Getwd(); err == nil {
		cmd.Dir = wd
	}
	out, err := cmd.CombinedOutput()
	text := string(out)
	require.NoError(t, err, "the suite with a shared /:\n%s", text)
	assert.Contains(t, strings.SplitN(text, "\n", 2)[0], "shared:", "/ is shared in the namespace")
	for _, name := range sharedRootTests {
		assert.Contains(t, text, "--- PASS: "+name+" ", "%s passed with a shared /", name)
	}
	assert.NotContains(t, text, "--- FAIL")
	after, err := readMountinfo()
	require.NoError(t, err)
	assert.Empty(t, ourNewMounts(before, after), "mounts on the host after the shared-root run")
	if t.Failed() {
		t.Logf("output:\n%s", text)
	}
}
