package isolate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// limited is cfg with resources r.
func limited(cfg Config, r Resources) Config {
	cfg.Resources = &r
	return cfg
}

// cgroupDirs are the directories of c's cgroup, as the host sees them.
func cgroupDirs(c *Container) []string {
	c.cg.mu.Lock()
	defer c.cg.mu.Unlock()
	return append([]string(nil), c.cg.dirs...)
}

func requireGone(t *testing.T, dirs []string) {
	t.Helper()
	for _, d := range dirs {
		_, err := os.Stat(d)
		assert.True(t, errors.Is(err, os.ErrNotExist), "cgroup %s still there after Close (%v)", d, err)
	}
}

func TestResourcesValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Resources
		want string
	}{
		{"zero", Resources{}, ""},
		{"all", Resources{Memory: 1 << 20, Pids: 10, CPU: 1.5}, ""},
		{"negative memory", Resources{Memory: -1}, "memory limit -1: must not be negative"},
		{"negative pids", Resources{Pids: -5}, "pids limit -5: must not be negative"},
		{"negative cpu", Resources{CPU: -0.5}, "CPU limit -0.5"},
		{"tiny cpu", Resources{CPU: 0.001}, "the smallest is 0.01 CPU"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.validate()
			if tc.want == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tc.want)
			}
		})
	}
	assert.Equal(t, int64(20000), Resources{CPU: 0.2}.cpuQuota())
}

func TestStaleOwner(t *testing.T) {
	self, err := procStart(os.Getpid())
	require.NoError(t, err)
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	for _, tc := range []struct {
		name  string
		stale bool
	}{
		{fmt.Sprintf("isorun-%d-%d-abc", os.Getpid(), self), false},
		{fmt.Sprintf("isorun-%d-%d-abc", os.Getpid(), self+1), true}, // our pid, reused
		{fmt.Sprintf("isorun-%d-%d-abc", dead.Process.Pid, self), true},
		{"isorun-x-1-abc", false},
		{"isorun", false},
		{"other-1-2-3", false},
	} {
		assert.Equal(t, tc.stale, staleOwner(tc.name), tc.name)
	}
}

func TestResourcesNone(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		c := start(t, cfg)
		assert.Nil(t, c.cg)
		_, err := c.Stats()
		assert.ErrorContains(t, err, "no resource accounting")
		// The init is where we are.
		mine, err := os.ReadFile("/proc/self/cgroup")
		require.NoError(t, err)
		its, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", c.Pid()))
		require.NoError(t, err)
		assert.Equal(t, string(mine), string(its))
	})
}

func TestResourcesPlacement(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		c := start(t, limited(cfg, Resources{}))
		dirs := cgroupDirs(c)
		require.NotEmpty(t, dirs)
		// The init and a command are in every directory of the cgroup.
		out := sh(t, c, "echo $$; cat /proc/self/cgroup")
		procs := ""
		for _, d := range dirs {
			b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			require.NoError(t, err)
			procs += string(b)
		}
		assert.Contains(t, procs, strconv.Itoa(c.Pid())+"\n")
		name := filepath.Base(dirs[0])
		assert.Contains(t, out, "/"+name+"\n")
		require.NoError(t, c.Close())
		requireGone(t, dirs)
		_, err := c.Stats()
		assert.NoError(t, err, "Stats after Close gives the last reading")
	})
}

// TestResourcesCloseWhileRunning: Close under running commands and a reader of Stats removes
// the cgroup all the same (and, under -race, shares nothing unsafely with them).
func TestResourcesCloseWhileRunning(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		c := start(t, limited(cfg, Resources{Memory: 64 << 20, Pids: 100}))
		cmds := make([]*Cmd, 3)
		for i := range cmds {
			cmds[i] = c.Command("sleep", "100")
			require.NoError(t, cmds[i].Start())
		}
		stop := make(chan struct{})
		read := make(chan struct{})
		go func() {
			defer close(read)
			for {
				select {
				case <-stop:
					return
				default:
					c.Stats()
				}
			}
		}()
		dirs := cgroupDirs(c)
		require.NoError(t, c.Close())
		for _, cmd := range cmds {
			assert.ErrorIs(t, cmd.Wait(), ErrClosed)
		}
		close(stop)
		<-read
		requireGone(t, dirs)
	})
}

func TestResourcesOOM(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		c := start(t, limited(cfg, Resources{Memory: 32 << 20}))
		cmd := c.Command("tail", "/dev/zero")
		err := cmd.Run()
		var ee *ExitError
		require.True(t, errors.As(err, &ee), "tail /dev/zero under 32 MB: want an ExitError, got %v", err)
		assert.Equal(t, 137, ee.ExitCode())
		assert.True(t, ee.OOMKilled(), "OOMKilled")
		assert.Contains(t, ee.Error(), "out of memory")
		st, err := c.Stats()
		require.NoError(t, err)
		assert.GreaterOrEqual(t, st.OOMKills, int64(1))
		assert.LessOrEqual(t, st.MemoryPeak, int64(32<<20))
		assert.Greater(t, st.MemoryPeak, int64(16<<20))
		// The OOM killer took the command, not the init: the container still works.
		assert.Equal(t, "ok\n", sh(t, c, "echo ok"))
		// A command that merely exits 137 is not OOM-killed.
		err = c.Command("sh", "-c", "exit 137").Run()
		require.True(t, errors.As(err, &ee))
		assert.False(t, ee.OOMKilled())
		dirs := cgroupDirs(c)
		require.NoError(t, c.Close())
		requireGone(t, dirs)
	})
}

func TestResourcesPids(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		c := start(t, limited(cfg, Resources{Pids: 50}))
		bomb := "b() { b | b & }; b; sleep 60"
		cmd := c.Command("sh", "-c", bomb)
		require.NoError(t, cmd.Start())
		waitUntil(t, "the pids limit to refuse a fork", func() bool {
			st, err := c.Stats()
			return err == nil && st.PidsLimited > 0
		})
		st, err := c.Stats()
		require.NoError(t, err)
		assert.LessOrEqual(t, st.Pids, int64(50))
		// The bomb is one process group: killing it ends it, and the container works again.
		require.NoError(t, cmd.Signal(syscall.SIGKILL))
		err = cmd.Wait()
		var ee *ExitError
		require.True(t, errors.As(err, &ee), "%v", err)
		assert.True(t, ee.PidsLimited(), "PidsLimited")
		assert.False(t, ee.OOMKilled())
		waitUntil(t, "the bomb's processes to go", func() bool {
			b, err := os.ReadFile(filepath.Join(c.cg.dirOf("pids"), "cgroup.procs"))
			return err == nil && string(b) == fmt.Sprintf("%d\n", c.Pid())
		})
		assert.Equal(t, "ok\n", sh(t, c, "echo ok"))
		// A bomb left raging: Close still ends it, and the cgroup goes.
		require.NoError(t, c.Command("sh", "-c", bomb).Start())
		waitUntil(t, "the second bomb to hit the limit", func() bool {
			st, err := c.Stats()
			return err == nil && st.Pids >= 40
		})
		// Meanwhile a new command fails clearly, or runs.
		if err := c.Command("true").Run(); err != nil {
			assert.ErrorContains(t, err, "pids limit of 50")
		}
		dirs := cgroupDirs(c)
		ns := pidNS(t, c.Pid())
		require.NoError(t, c.Close())
		waitGone(t, ns, 5*time.Second)
		requireGone(t, dirs)
	})
}

func TestResourcesCPU(t *testing.T) {
	needRoot(t)
	c := start(t, limited(testConfig(modeZygote), Resources{CPU: 0.2}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := c.CommandContext(ctx, "sh", "-c", "while :; do :; done")
	require.NoError(t, cmd.Start())
	before, err := c.Stats()
	require.NoError(t, err)
	t0 := time.Now()
	time.Sleep(2 * time.Second)
	after, err := c.Stats()
	require.NoError(t, err)
	wall := time.Since(t0)
	cancel()
	cmd.Wait()
	share := float64(after.CPU-before.CPU) / float64(wall)
	throttled := readKey(c.cg.dirOf("cpu"), "cpu.stat", "nr_throttled")
	t.Logf("busy loop under 0.2 CPU: %.1f%% of one CPU over %v (throttled in %d periods)", 100*share, wall.Round(time.Millisecond), throttled)
	assert.Less(t, share, 0.35, "the quota holds")
	if share < 0.10 && throttled == 0 {
		// The quota never bit: the loop got less than its 20% because the machine is busy.
		t.Skipf("the machine is too busy to measure the quota: the loop got %.1f%% unthrottled", 100*share)
	}
	assert.Greater(t, share, 0.10)
	assert.Positive(t, throttled, "the quota throttled the loop")
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leftCgroups finds the cgroups that process pid made and did not remove, in every cgroup
// hierarchy mounted here (v1 and v2).
func leftCgroups(pid int) []string {
	mounts, err := cgroupMounts()
	if err != nil {
		return []string{err.Error()}
	}
	prefix := fmt.Sprintf("isorun-%d-", pid)
	var out []string
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if strings.HasPrefix(e.Name(), prefix) {
				out = append(out, p)
			} else if depth > 0 {
				walk(p, depth-1)
			}
		}
	}
	for _, m := range mounts {
		walk(m.point, 32)
	}
	return out
}

// TestCgroupKilledOwner: the cgroups of a SIGKILLed process go with the next sweep (what the
// first container with limits in any process does, and what GC does).
func TestCgroupKilledOwner(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		helper := exec.Command(os.Args[0], "-test.run=^$")
		helper.Env = append(os.Environ(), helperEnv+"=cgowner:"+cfg.initMode+":"+testRoot)
		helper.Stderr = os.Stderr
		out, err := helper.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, helper.Start())
		t.Cleanup(func() { helper.Process.Kill(); helper.Wait() })
		line := make([]byte, 4096)
		n, err := out.Read(line)
		require.NoError(t, err, "the helper's cgroups")
		dirs := strings.Fields(string(line[:n]))
		require.NotEmpty(t, dirs)
		for _, d := range dirs {
			require.DirExists(t, d)
		}
		require.NoError(t, helper.Process.Kill())
		helper.Wait()
		// Its zygote and inits die of their parent's death; the cgroups empty out.
		waitUntil(t, "the killed owner's containers to go", func() bool {
			for _, d := range dirs {
				if b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs")); len(b) > 0 {
					return false
				}
			}
			return true
		})
		h, err := cgroupHostOnce()
		require.NoError(t, err)
		sweepStale(h)
		requireGone(t, dirs)
		left, err := GC()
		require.NoError(t, err)
		for _, d := range dirs {
			assert.NotContains(t, left, d)
		}
	})
}

// TestCgroupV2View runs the cgroup v2 code on a cgroup2 mounted in a scratch mount namespace
// (a re-exec of this binary), since this host's cgroups may be v1 or hybrid. On a hybrid host
// the v2 hierarchy has none of the memory, pids and cpu controllers (they are bound to v1 and
// cannot move while it is mounted): what is tested there is the making of the cgroup, the
// init's placement in it by CLONE_INTO_CGROUP (with no setup op to join it), the accounting
// that needs no controller, removal, stale-cgroup GC, and the error for a limit without its
// controller. The limits themselves on v2 are tested only where the controllers are in v2.
func TestCgroupV2View(t *testing.T) {
	needRoot(t)
	mnt := t.TempDir()
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"=cgv2:"+mnt+":"+testRoot, cgroupRootEnv+"="+mnt)
	// A mount namespace of its own (Go makes its "/" private first): the cgroup2 mount is its
	// alone.
	helper.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := helper.CombinedOutput()
	t.Logf("helper:\n%s", out)
	require.NoError(t, err)
	require.Contains(t, string(out), "v2 view: ok")
	// Nothing of the helper's is left in the real v2 hierarchy either.
	assert.Empty(t, leftCgroups(helper.Process.Pid))
}

// cgroupHelper plays the helper processes of this file's tests (see helperMain); ok is false for
// a kind it does not know.
//
//	cgowner:MODE:ROOT  start a container with limits, print its cgroup directories, wait to be killed
//	cgv2:MNT:ROOT      mount cgroup2 on MNT (ISORUN_CGROUP_ROOT) and check the v2 code on it
func cgroupHelper(kind, rest string) (code int, ok bool) {
	arg, root, _ := strings.Cut(rest, ":")
	switch kind {
	case "cgowner":
		c, err := Start(context.Background(), Config{Lowers: []string{root}, initMode: arg, Resources: &Resources{Pids: 100, Memory: 64 << 20}})
		if err == nil {
			err = c.Command("sleep", "1000").Start()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1, true
		}
		fmt.Println(strings.Join(c.cg.dirs, " "))
		time.Sleep(2 * time.Minute) // killed long before
		return 2, true
	case "cgv2":
		if err := cgroupV2Checks(arg, root); err != nil {
			fmt.Fprintln(os.Stderr, "v2 view:", err)
			return 1, true
		}
		fmt.Println("v2 view: ok")
		return 0, true
	}
	return 0, false
}

func cgroupV2Checks(mnt, root string) error {
	if err := unix.Mount("cgroup2", mnt, "cgroup2", 0, ""); err != nil {
		return fmt.Errorf("mount cgroup2 on %s: %w", mnt, err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	h, err := cgroupHostOnce()
	if err != nil {
		return err
	}
	if !h.v2 || h.root != mnt {
		return fmt.Errorf("cgroups found at %s (v2 %v), want v2 at %s", h.root, h.v2, mnt)
	}
	ctx := context.Background()
	for _, mode := range testModes {
		if mode != modeGo && !haveCInit {
			continue
		}
		if err := v2Placement(ctx, mnt, root, mode); err != nil {
			return fmt.Errorf("%s init: %w", mode, err)
		}
	}
	// A limit whose controller v2 lacks fails, saying which.
	c, err := Start(ctx, Config{Lowers: []string{root}, Resources: &Resources{Memory: 32 << 20}})
	if boundToV1("memory") {
		if err == nil {
			c.Release()
			return errors.New("a memory limit without a v2 memory controller: no error")
		}
		for _, want := range []string{"no memory controller", "bound to a cgroup v1 hierarchy"} {
			if !strings.Contains(err.Error(), want) {
				return fmt.Errorf("error %q does not say %q", err, want)
			}
		}
		fmt.Println("memory limit:", err)
		left, _ := os.ReadDir(filepath.Join(mnt, cgroupBase))
		for _, e := range left {
			if strings.HasPrefix(e.Name(), fmt.Sprintf("isorun-%d-", os.Getpid())) {
				return fmt.Errorf("a failed start left cgroup %s", e.Name())
			}
		}
	} else {
		// A host whose v2 has the controller: the limit is set.
		if err != nil {
			return err
		}
		got := readInt(c.cg.dirs[0], "memory.max")
		c.Release()
		if got != 32<<20 {
			return fmt.Errorf("memory.max = %d, want %d", got, 32<<20)
		}
	}
	// GC removes a dead owner's cgroup from the v2 base.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		return err
	}
	base := filepath.Join(mnt, cgroupBase)
	os.Mkdir(base, 0o755)
	stale := filepath.Join(base, fmt.Sprintf("isorun-%d-1-dead", dead.Process.Pid))
	if err := os.Mkdir(stale, 0o755); err != nil {
		return err
	}
	// (The hierarchy may be mounted elsewhere too, as on a hybrid host: GC names the cgroup by
	// the first mount it finds it in.)
	removed, err := GC()
	if err != nil {
		return err
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("GC removed %q, not the stale %s", removed, stale)
	}
	if !slices.ContainsFunc(removed, func(p string) bool { return strings.HasSuffix(p, "/"+cgroupBase+"/"+filepath.Base(stale)) }) {
		return fmt.Errorf("GC removed the stale %s but says it removed %q", stale, removed)
	}
	return nil
}

// v2Placement starts a container with a cgroup (no limits: the hybrid v2 has no controllers)
// and checks that its init was forked into it, that commands are in it, and that it goes.
func v2Placement(ctx context.Context, mnt, root, mode string) error {
	c, err := Start(ctx, Config{Lowers: []string{root}, initMode: mode, Resources: &Resources{}})
	if err != nil {
		return err
	}
	defer c.Release()
	if len(c.cg.dirs) != 1 || c.cg.fd == nil {
		return fmt.Errorf("cgroup dirs %q, fd %v: want one directory, open for CLONE_INTO_CGROUP", c.cg.dirs, c.cg.fd)
	}
	dir := c.cg.dirs[0]
	if filepath.Dir(dir) != filepath.Join(mnt, cgroupBase) || !strings.HasPrefix(filepath.Base(dir), fmt.Sprintf("isorun-%d-", os.Getpid())) {
		return fmt.Errorf("cgroup %s: not isorun/isorun-PID-... under %s", dir, mnt)
	}
	// The setup has no op to join it: the init can only be there because it was forked there.
	setup, err := c.setupMessage()
	if err != nil {
		return err
	}
	if strings.Contains(string(setup), "\x00cgroup\x00") {
		return errors.New("the v2 setup program joins a cgroup; the init should have been forked into it")
	}
	want := "0::/" + cgroupBase + "/" + filepath.Base(dir) + "\n"
	its, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", c.Pid()))
	if err != nil {
		return err
	}
	if !strings.Contains(string(its), want) {
		return fmt.Errorf("the init's /proc/PID/cgroup is %q, want a line %q", its, want)
	}
	out, err := c.Command("cat", "/proc/self/cgroup").Output()
	if err != nil {
		return err
	}
	if !strings.Contains(string(out), want) {
		return fmt.Errorf("a command's /proc/self/cgroup is %q, want a line %q", out, want)
	}
	procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if !slices.Contains(strings.Fields(string(procs)), strconv.Itoa(c.Pid())) {
		return fmt.Errorf("the init %d is not in %s/cgroup.procs: %q", c.Pid(), dir, procs)
	}
	if err := c.Command("sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done").Run(); err != nil {
		return err
	}
	st, err := c.Stats()
	if err != nil {
		return err
	}
	if st.CPU <= 0 {
		return fmt.Errorf("Stats.CPU = %v after a busy command: cpu.stat not read", st.CPU)
	}
	if err := c.Close(); err != nil {
		return err
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cgroup %s still there after Close (%v)", dir, err)
	}
	fmt.Printf("%s init: forked into %s, CPU %v\n", mode, want[3:len(want)-1], st.CPU)
	return nil
}

// BenchmarkLifecycleLimits: a whole container (start, `true`, release) with and without a
// cgroup (a memory and a pids limit): the cgroup's cost, and the pool's saving that a limited
// container forgoes.
func BenchmarkLifecycleLimits(b *testing.B) {
	needRoot(b)
	for _, bc := range []struct {
		name string
		res  *Resources
	}{{"none", nil}, {"memory+pids", &Resources{Memory: 256 << 20, Pids: 1000}}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				cfg := testConfig(modeZygote)
				cfg.Resources = bc.res
				c, err := Start(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Command("true").Run(); err != nil {
					b.Fatal(err)
				}
				if err := c.Release(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
