package isolate

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/isorun/isorun/internal/mountinfo"
	"github.com/stretchr/testify/require"
)

// testRoot is the image every test runs: busybox and little else, built once per test binary by
// TestMain (tests may not import fixtures, which sits above this package).
var testRoot string

// testRootEntries is what `ls /` shows in a container of testRoot: the image's directories, plus
// nothing.
var testRootEntries = []string{"bin", "dev", "etc", "home", "proc", "root", "sys", "tmp"}

func TestMain(m *testing.M) {
	// Helper processes re-exec'd by tests (see helperMain) do their job and exit.
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	if os.Geteuid() != 0 {
		// Every test here needs root: containers need CAP_SYS_ADMIN (rootless is not this package's
		// default path). Run them and let each skip with the reason.
		os.Exit(m.Run())
	}
	if os.Getenv(sharedRootEnv) != "" {
		if err := checkSharedRoot(); err != nil {
			fmt.Fprintln(os.Stderr, "isolate test:", err)
			os.Exit(1)
		}
	}
	// Every temporary directory of this run (t.TempDir included) goes under one of its own, so
	// that the mount checks can tell this package's mounts from those of other packages' tests
	// running beside it (go test ./... runs them in parallel; overlay's mount under /tmp/Test*).
	tmp, err := os.MkdirTemp("", "isolate-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "isolate test:", err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", tmp)
	root, err := buildRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "isolate test: build the test image:", err)
		os.Exit(1)
	}
	testRoot = root
	before, _ := readMountinfo()
	code := m.Run()
	// The whole run must leave no mount of ours behind.
	if after, err := readMountinfo(); err == nil {
		if leaked := ourNewMounts(before, after); len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "isolate test: mounts left behind:\n  %s\n", strings.Join(leaked, "\n  "))
			code = 1
		}
	}
	// Nor any cgroup (Config.Resources), in any hierarchy, v1 or v2.
	if left := leftCgroups(os.Getpid()); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "isolate test: cgroups left behind:\n  %s\n", strings.Join(left, "\n  "))
		code = 1
	}
	if err := os.RemoveAll(root); err != nil {
		fmt.Fprintln(os.Stderr, "isolate test: remove the test image:", err)
		code = 1
	}
	// Empty by now (each test removed its own); a leftover is a leak to report, not to delete.
	if err := os.Remove(tmp); err != nil {
		fmt.Fprintln(os.Stderr, "isolate test: temporary directories left behind:", err)
		code = 1
	}
	os.Exit(code)
}

// buildRoot makes a minimal image: /bin/busybox with a symlink per applet, /etc/passwd and
// /etc/group with root and user 1000, /tmp 1777, and empty mount points.
func buildRoot() (string, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return "", fmt.Errorf("busybox-static is needed (make deps installs it): %w", err)
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return "", fmt.Errorf("busybox --list: %w", err)
	}
	removeStaleRoots()
	root, err := os.MkdirTemp("", fmt.Sprintf("isolate-test-root-%d-", os.Getpid()))
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(root)
		}
	}()
	if err := os.Chmod(root, 0o755); err != nil {
		return "", err
	}
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{{"bin", 0o755}, {"etc", 0o755}, {"tmp", 0o1777}, {"proc", 0o555}, {"dev", 0o755}, {"sys", 0o555},
		{"root", 0o700}, {"home", 0o755}, {"home/user", 0o755}} {
		p := filepath.Join(root, d.name)
		if err := os.Mkdir(p, d.mode); err != nil {
			return "", err
		}
		if err := os.Chmod(p, d.mode); err != nil { // past the umask
			return "", err
		}
	}
	if err := os.Chown(filepath.Join(root, "home/user"), 1000, 1000); err != nil {
		return "", err
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		return "", err
	}
	for _, name := range strings.Fields(string(list)) {
		if name == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", name)); err != nil {
			return "", err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
		"etc/group":  "root:x:0:\ntty:x:5:\nuser:x:1000:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	ok = true
	return root, nil
}

// removeStaleRoots removes the test images of test binaries that died before their TestMain
// could (go test -timeout panics, SIGKILL): their names carry the pid of their maker. They are
// plain directories: containers mount them only in their own mount namespaces.
func removeStaleRoots() {
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), "isolate-test-root-*-*"))
	for _, dir := range old {
		f := strings.SplitN(filepath.Base(dir), "-", 5)
		if len(f) < 5 {
			continue
		}
		pid, err := strconv.Atoi(f[3])
		if err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			os.RemoveAll(dir)
		}
	}
}

// The init modes every test runs in: the C init forked by the zygote (the default) and the Go
// init (the fallback without cgo).
var testModes = []string{modeZygote, modeGo}

// forModes runs body once per init mode, as subtests named after the mode. cfg is a Config of
// the test image in that mode. The subtests run one after the other: a test that wants
// parallelism calls t.Parallel itself.
func forModes(t *testing.T, body func(t *testing.T, cfg Config)) {
	t.Helper()
	needRoot(t)
	for _, mode := range testModes {
		t.Run(mode, func(t *testing.T) {
			if mode != modeGo && !haveCInit {
				t.Skip("no C init in a binary built without cgo")
			}
			body(t, testConfig(mode))
		})
	}
}

func testConfig(mode string) Config {
	return Config{Lowers: []string{testRoot}, initMode: mode}
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: containers mount filesystems and create namespaces")
	}
}

// start starts a container and releases it when the test ends.
func start(t testing.TB, cfg Config) *Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { c.Release() })
	return c
}

// sh runs a shell script in c, requires it to succeed, and returns its stdout.
func sh(t testing.TB, c *Container, script string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := c.Command("sh", "-c", script)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start(), "sh -c %q", script)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		// Say what the container is doing before giving up on it (its cleanup ends it).
		t.Fatalf("sh -c %q still runs after a minute; the container:\n%s", script, describe(c))
	}
	require.NoError(t, err, "sh -c %q\nstdout: %s\nstderr: %s", script, stdout.Bytes(), stderr.Bytes())
	return stdout.String()
}

// describe lists a container's processes as the host sees them: pid, state, what they wait in,
// command line and open descriptors.
func describe(c *Container) string {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", c.Pid()))
	if err != nil {
		return fmt.Sprintf("init %d: %v", c.Pid(), err)
	}
	var b strings.Builder
	for _, pid := range pidsIn(ns) {
		p := fmt.Sprintf("/proc/%d/", pid)
		stat, _ := os.ReadFile(p + "stat")
		wchan, _ := os.ReadFile(p + "wchan")
		cmdline, _ := os.ReadFile(p + "cmdline")
		fmt.Fprintf(&b, "  %d wchan=%s %s\n    stat: %s\n", pid, wchan, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), bytes.TrimSpace(stat))
		fds, _ := os.ReadDir(p + "fd")
		for _, fd := range fds {
			l, _ := os.Readlink(p + "fd/" + fd.Name())
			fmt.Fprintf(&b, "    fd %s -> %s\n", fd.Name(), l)
		}
	}
	return b.String()
}

// shFails runs a shell script that must fail and returns its combined output.
func shFails(t testing.TB, c *Container, script string) string {
	t.Helper()
	out, err := c.Command("sh", "-c", script).CombinedOutput()
	require.Error(t, err, "sh -c %q should have failed; output: %s", script, out)
	return string(out)
}

// ---- mounts -------------------------------------------------------------------------------------

type mountEntry struct {
	id, parent  string
	root, point string
	fstype, src string
	opts, super string
	line        string
}

func readMountinfo() ([]mountEntry, error) { return readMountinfoOf("self") }

func readMountinfoOf(pid string) ([]mountEntry, error) {
	f, err := os.Open("/proc/" + pid + "/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		e, ok := parseMountinfoLine(sc.Text())
		if ok {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}

// parseMountinfoLine splits a line of proc(5) mountinfo:
// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
func parseMountinfoLine(line string) (mountEntry, bool) {
	pre, post, ok := strings.Cut(line, " - ")
	if !ok {
		return mountEntry{}, false
	}
	a, b := strings.Fields(pre), strings.Fields(post)
	if len(a) < 6 || len(b) < 3 {
		return mountEntry{}, false
	}
	return mountEntry{id: a[0], parent: a[1], root: mountinfo.Unescape(a[3]), point: mountinfo.Unescape(a[4]), opts: a[5],
		fstype: b[0], src: mountinfo.Unescape(b[1]), super: b[2], line: line}, true
}

// ourNewMounts lists the mounts in after but not in before that a container of this test binary
// could have made: any on "/" or under /dev, /proc, /sys (where a container mounts when its
// propagation is wrong), any proc, sysfs or devpts, and any naming our test image or temp dirs.
// Other engineers' tests mount overlays and tmpfs in their own temp dirs on this machine at the
// same time; those are not ours and are left out.
func ourNewMounts(before, after []mountEntry) []string {
	old := map[string]bool{}
	for _, e := range before {
		old[e.id] = true
	}
	var out []string
	for _, e := range after {
		if old[e.id] {
			continue
		}
		if isOurs(e) {
			out = append(out, e.line)
		}
	}
	return out
}

func isOurs(e mountEntry) bool {
	for _, p := range []string{"/", "/dev", "/proc", "/sys"} {
		if e.point == p || (p != "/" && strings.HasPrefix(e.point, p+"/")) {
			return true
		}
	}
	switch e.fstype {
	case "proc", "sysfs", "devpts":
		return true
	}
	mentions := func(s string) bool {
		return (testRoot != "" && strings.Contains(s, testRoot)) || strings.Contains(s, "isolate-test")
	}
	return mentions(e.point) || mentions(e.root) || mentions(e.src) || mentions(e.super)
}

// ---- processes ----------------------------------------------------------------------------------

// pidNS is the pid namespace of pid, as readlink /proc/PID/ns/pid gives it ("pid:[4026532000]").
func pidNS(t testing.TB, pid int) string {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	require.NoError(t, err)
	return ns
}

// pidsIn lists the host pids of processes in the pid namespace ns (as leakcheck finds them).
func pidsIn(ns string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && l == ns {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// waitGone polls until no process is left running in ns, and fails the test after limit. A
// zombie is not running: it has exited and waits for its parent to collect its status (an init
// whose parent was killed waits for the host's pid 1, which takes its time).
func waitGone(t testing.TB, ns string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var left []int
		for _, p := range pidsIn(ns) {
			if alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var desc []string
			for _, p := range left {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
				desc = append(desc, fmt.Sprintf("%d %s", p, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
			}
			t.Fatalf("processes of %s still there after %v:\n  %s", ns, limit, strings.Join(desc, "\n  "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// countWriter counts what is written to it.
type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)
