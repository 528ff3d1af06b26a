package harness

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/isorun/isorun/fixtures"
	"github.com/isorun/isorun/isolate"
)

// The kill tests run a child test process that uses containers, kill it at a chosen point (no
// cleanup runs: SIGKILL, a `go test -timeout` panic, SIGINT and SIGTERM, which Go's default
// handling turns into death by that signal) and check what it left: no process, no mount, and
// state directories (cache tmp/ and runs/, cgroups) that the next run, or GC, removes.
//
// A child's orphans would be reparented to the host's init and be hard to tell from other
// processes on the machine, so the child runs under a reaper (TestKillReaper, this binary
// again) that is a child subreaper (PR_SET_CHILD_SUBREAPER): whatever outlives the child is
// reparented to the reaper, and "descends from the reaper" is exactly "left by the child".

// killEnv selects a role for this binary: "reaper", or "child:MODE".
const killEnv = "ISORUN_KILLTEST"

// killArgsEnv holds the child's command line flags, for the reaper to pass on.
const killArgsEnv = "ISORUN_KILLTEST_ARGS"

// killTarEnv is the big archive the "import" child imports.
const killTarEnv = "ISORUN_KILLTEST_TAR"

// TestKilledTestLeavesNothing is the kill matrix: where the child is when it dies, and how.
func TestKilledTestLeavesNothing(t *testing.T) {
	needContainers(t)
	if os.Getenv(killEnv) != "" {
		t.Skip("in a kill test's child")
	}
	tests := []struct {
		name  string
		mode  string         // what the child does (see TestKillChild)
		sig   syscall.Signal // 0: the child dies of its own -test.timeout
		reuse string         // what reclaims the leftovers: "next" (the next run) or "gc"
		env   string         // for the child
	}{
		{name: "import/SIGKILL", mode: "import", sig: unix.SIGKILL, reuse: "next"},
		{name: "start/SIGKILL", mode: "start", sig: unix.SIGKILL, reuse: "next"},
		{name: "command/SIGKILL", mode: "command", sig: unix.SIGKILL, reuse: "next"},
		{name: "command/SIGINT", mode: "command", sig: unix.SIGINT, reuse: "gc"},
		{name: "command/SIGTERM", mode: "command", sig: unix.SIGTERM, reuse: "next"},
		{name: "cleanup/SIGKILL", mode: "cleanup", sig: unix.SIGKILL, reuse: "gc"},
		{name: "timeout", mode: "timeout", reuse: "next"},
		{name: "keep/SIGKILL", mode: "keep", sig: unix.SIGKILL, reuse: "gc"},
		// The Go init (no cgo) is exec'd per container rather than forked by a zygote.
		{name: "start/SIGKILL/go-init", mode: "start", sig: unix.SIGKILL, reuse: "next", env: "ISORUN_INIT=go"},
		{name: "command/SIGKILL/go-init", mode: "command", sig: unix.SIGKILL, reuse: "gc", env: "ISORUN_INIT=go"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := startKillChild(t, tt.mode, tt.sig == 0, tt.env)
			switch tt.mode {
			case "import":
				// Kill once the unpacking is under way: its tmp/ directory holds files.
				k.waitFor(t, "unpacking", func() bool {
					m, _ := filepath.Glob(filepath.Join(k.cache, "v1", "tmp", "unpack-*", "root", "*"))
					return len(m) > 0
				})
			case "timeout":
			default:
				k.waitLine(t, "KILLTEST-READY")
				if tt.mode == "start" {
					// Starts are under way all the time in the child: land anywhere in one.
					time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
				}
			}
			if tt.sig != 0 {
				require.NoError(t, unix.Kill(k.childPid, tt.sig))
			}
			status := k.waitExit(t)
			if tt.sig != 0 {
				assert.Equal(t, fmt.Sprintf("signal %d", tt.sig), status, "the child dies of the signal")
			} else {
				assert.Equal(t, "exit 2", status, "a -test.timeout panic exits 2")
				assert.Contains(t, k.output(), "panic: test timed out after 1s")
			}

			// Nothing runs and nothing is mounted once the kernel and the zygote are done.
			k.assertNoProcesses(t)
			assert.Empty(t, overlayMounts(), "overlay mounts left")
			assert.NotContains(t, mountinfo(t), k.dir, "a mount below the child's directories")

			left := k.leftovers()
			switch tt.mode {
			case "import":
				assert.NotEmpty(t, left, "the kill landed after the unpacking: make the archive bigger")
			case "cleanup":
				assert.NotEmpty(t, left, "the committed layer (runs/) is left until reclaimed")
			case "keep":
				keep, _ := filepath.Glob(filepath.Join(k.tmp, "isorun-keep-*"))
				require.Len(t, keep, 1, "ISORUN_KEEP's directory stays: it is the user's")
				k.keep = keep[0]
			}
			t.Logf("left by the killed child: %v", left)

			// The next run (or GC) removes what the killed child left, and only that.
			out := k.runAgain(t, tt.reuse)
			assert.Empty(t, k.leftovers(), "not reclaimed by %s; its output:\n%s", tt.reuse, out)
			if k.keep != "" {
				assert.DirExists(t, filepath.Join(k.keep, "upper"), "ISORUN_KEEP's directory is not reclaimed")
				b, err := os.ReadFile(filepath.Join(k.keep, "upper", "kept"))
				assert.NoError(t, err)
				assert.Equal(t, "mine\n", string(b))
			}
		})
	}
}

// killChild is a child test process under its reaper.
type killChild struct {
	dir, cache, tmp string // the child's own directories: ISORUN_CACHE and TMPDIR are in dir
	keep            string // an ISORUN_KEEP directory the child made
	reaper          *exec.Cmd
	reaperIn        io.WriteCloser
	childPid        int
	childStart      uint64

	mu     sync.Mutex
	out    bytes.Buffer
	lines  chan string
	status string        // how the child ended, once exited is closed
	exited chan struct{} // closed when the reaper reports the child's end
}

// startKillChild starts TestKillChild in mode under a reaper, with env added to its
// environment. With timeout the child gets -test.timeout=1s.
func startKillChild(t *testing.T, mode string, timeout bool, env string) *killChild {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	k := &killChild{dir: t.TempDir(), lines: make(chan string, 1024), exited: make(chan struct{})}
	k.cache, k.tmp = filepath.Join(k.dir, "cache"), filepath.Join(k.dir, "tmp")
	require.NoError(t, os.Mkdir(k.tmp, 0o755))
	args := "-test.run=^TestKillChild$ -test.v -test.count=1"
	if timeout {
		args += " -test.timeout=1s"
	}
	environ := append(os.Environ(), helperEnv+"=kill", killEnv+"=reaper", killArgsEnv+"="+args,
		"ISORUN_CACHE="+k.cache, "TMPDIR="+k.tmp, "ISORUN_KILLTEST_MODE="+mode)
	if env != "" {
		environ = append(environ, env)
	}
	if mode == "import" {
		environ = append(environ, killTarEnv+"="+bigArchive())
	}
	if mode == "keep" {
		environ = append(environ, "ISORUN_KEEP=1")
	}
	k.reaper = exec.Command(exe, "-test.run=^TestKillReaper$", "-test.count=1")
	k.reaper.Env = environ
	pr, pw := io.Pipe()
	k.reaper.Stdout, k.reaper.Stderr = pw, pw
	k.reaperIn, err = k.reaper.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, k.reaper.Start())
	t.Cleanup(func() {
		k.reaperIn.Close() // the reaper exits
		k.reaper.Wait()
		pw.Close()
		if t.Failed() {
			t.Logf("the child's output:\n%s", k.output())
		}
	})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			k.mu.Lock()
			k.out.WriteString(line + "\n")
			k.mu.Unlock()
			if pid, ok := strings.CutPrefix(line, "KILLTEST-CHILD "); ok {
				k.childPid, _ = strconv.Atoi(pid)
				k.childStart, _ = procStartTicks(k.childPid)
			}
			if status, ok := strings.CutPrefix(line, "KILLTEST-EXIT "); ok {
				k.status = status
				close(k.exited)
			}
			select {
			case k.lines <- line:
			default:
			}
		}
		io.Copy(io.Discard, pr)
	}()
	k.waitLine(t, "KILLTEST-CHILD ")
	return k
}

func (k *killChild) output() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.out.String()
}

// waitLine waits for a line of the child's (or the reaper's) that starts with prefix.
func (k *killChild) waitLine(t *testing.T, prefix string) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case line := <-k.lines:
			if strings.HasPrefix(line, prefix) {
				return
			}
		case <-k.exited:
			t.Fatalf("the child ended (%s) before %q; output:\n%s", k.status, prefix, k.output())
		case <-deadline:
			t.Fatalf("no %q from the child; output:\n%s", prefix, k.output())
		}
	}
}

// waitFor polls cond until it holds.
func (k *killChild) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		select {
		case <-k.exited:
			t.Fatalf("the child ended (%s) before %s; output:\n%s", k.status, what, k.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child never got to %s; output:\n%s", what, k.output())
		}
		time.Sleep(time.Millisecond)
	}
}

// waitExit returns how the child ended, as its reaper saw it: "exit N" or "signal N".
func (k *killChild) waitExit(t *testing.T) string {
	t.Helper()
	select {
	case <-k.exited:
		return k.status
	case <-time.After(time.Minute):
		t.Fatalf("the child did not end; output:\n%s", k.output())
		return ""
	}
}

// assertNoProcesses waits up to 3 s for every process the child left (now the reaper's: the
// zygote, container inits and commands) to be gone, killing them for the next tests if not.
func (k *killChild) assertNoProcesses(t *testing.T) {
	t.Helper()
	var left []int
	deadline := time.Now().Add(3 * time.Second)
	for {
		left = descendantsOf(k.reaper.Process.Pid)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(left) > 0 {
		var desc []string
		for _, pid := range left {
			ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			desc = append(desc, fmt.Sprintf("%d (state %s, %s): %s", pid, procState(pid), ns, bytes.ReplaceAll(bytes.TrimRight(cmd, "\x00"), []byte{0}, []byte{' '})))
			unix.Kill(pid, unix.SIGKILL)
		}
		t.Errorf("processes left 3 s after the child died:\n\t%s", strings.Join(desc, "\n\t"))
	}
}

// descendantsOf lists the live processes below pid (zombies are being reaped: not counted).
func descendantsOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		if descends(p, pid) && procState(p) != "Z" {
			out = append(out, p)
		}
	}
	return out
}

func procStartTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// leftovers lists the state the dead child left: its cache's tmp/ and runs/ entries (all of
// them are its: the cache is its own) and its cgroups.
func (k *killChild) leftovers() []string {
	var left []string
	for _, sub := range []string{"tmp", "runs"} {
		ents, _ := os.ReadDir(filepath.Join(k.cache, "v1", sub))
		for _, e := range ents {
			left = append(left, sub+"/"+e.Name())
		}
	}
	return append(left, cgroupsOf(k.childPid, k.childStart)...)
}

// cgroupsOf finds the cgroups that process pid (started at start) made: isolate names them
// isorun-PID-START-ID, under its own cgroup (v1) or /sys/fs/cgroup/isorun (v2).
func cgroupsOf(pid int, start uint64) []string {
	prefix := fmt.Sprintf("isorun-%d-%d-", pid, start)
	var found []string
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if strings.HasPrefix(e.Name(), prefix) {
				found = append(found, p)
			} else if depth > 0 {
				walk(p, depth-1)
			}
		}
	}
	walk("/sys/fs/cgroup", 6)
	return found
}

// runAgain runs the child once more, as the next run ("next": it uses the cache and makes a
// container with a cgroup) or as `isorun gc` ("gc": fixtures.GC and isolate.GC), and returns
// its output.
func (k *killChild) runAgain(t *testing.T, how string) string {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^TestKillChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=kill", killEnv+"=child", "ISORUN_KILLTEST_MODE="+how,
		"ISORUN_CACHE="+k.cache, "TMPDIR="+k.tmp)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "the %s run failed:\n%s", how, out)
	return string(out)
}

// mountinfo is this process's mount table.
func mountinfo(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	return string(b)
}

// bigArchive is a root filesystem tar big enough that its unpacking takes a while (8,000 small
// files), made once per test binary.
var bigArchive = sync.OnceValue(func() string {
	p := filepath.Join(testRoot, "big-rootfs.tar")
	f, err := os.Create(p)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	tw := tar.NewWriter(bw)
	body := bytes.Repeat([]byte("x"), 512)
	for d := range 80 {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("d%02d/", d), Mode: 0o755})
		for i := range 100 {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("d%02d/f%03d", d, i), Mode: 0o644, Size: int64(len(body))})
			tw.Write(body)
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	if err := bw.Flush(); err != nil {
		panic(err)
	}
	return p
})

// TestKillReaper is the reaper of a kill test's child (see TestKilledTestLeavesNothing): it
// starts the child, reports its pid and how it ended, and reaps everything reparented to it
// until its stdin closes.
func TestKillReaper(t *testing.T) {
	if os.Getenv(killEnv) != "reaper" {
		t.Skip("run by TestKilledTestLeavesNothing")
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, killEnv+"=") { // os.StartProcess keeps duplicates, and the first wins
			env = append(env, kv)
		}
	}
	env = append(env, killEnv+"=child")
	p, err := os.StartProcess(exe, append([]string{exe}, strings.Fields(os.Getenv(killArgsEnv))...),
		&os.ProcAttr{Env: env, Files: []*os.File{nil, os.Stdout, os.Stderr}})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("KILLTEST-CHILD %d\n", p.Pid)
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid == p.Pid {
			if ws.Signaled() {
				fmt.Printf("KILLTEST-EXIT signal %d\n", ws.Signal())
			} else {
				fmt.Printf("KILLTEST-EXIT exit %d\n", ws.ExitStatus())
			}
		}
		if pid > 0 {
			continue
		}
		if err == unix.ECHILD {
			select {
			case <-done:
				return
			default:
			}
		}
		select {
		case <-done:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// cgroupOpts gives a kill test's child a container with a cgroup (WithPids(64)) where this
// process can make one. Where it cannot (rootless without a delegated cgroup, see
// resourcesBlocked) it gives nothing: the kills then land among containers without cgroups only,
// which must leave nothing just the same.
func cgroupOpts() []Option {
	if resourcesBlocked() != nil {
		return nil
	}
	return []Option{WithPids(64)}
}

// TestKillChild is a kill test's child. Its mode (ISORUN_KILLTEST_MODE) says where it is when
// it is killed; "KILLTEST-READY" says it got there. "next" and "gc" are the runs after.
func TestKillChild(t *testing.T) {
	if os.Getenv(killEnv) != "child" {
		t.Skip("run by TestKilledTestLeavesNothing")
	}
	ready := func() { fmt.Println("KILLTEST-READY") }
	switch mode := os.Getenv("ISORUN_KILLTEST_MODE"); mode {
	case "import":
		img, err := fixtures.Open(os.Getenv(killTarEnv))
		require.NoError(t, err)
		_, err = img.Resolve()
		require.NoError(t, err)
		t.Fatal("the import ended before the kill")
	case "start":
		// Two loops of starts, one with a cgroup and one without, until killed.
		var wg sync.WaitGroup
		var once sync.Once
		for _, opts := range [][]Option{{WithTmpfs("/a"), WithTmpfs("/b")}, cgroupOpts()} {
			wg.Go(func() {
				for {
					e, err := Start(context.Background(), fixtures.Busybox(), opts...)
					if err != nil {
						t.Error(err)
						return
					}
					once.Do(ready)
					e.Release()
				}
			})
		}
		wg.Wait()
	case "command", "keep", "timeout":
		// A container with a cgroup running a shell with a background child, and (but with
		// ISORUN_KEEP, whose directory the test wants alone) one without running a sleep.
		sb := Container(t, fixtures.Busybox(), cgroupOpts()...)
		sb.MustRun("sh", "-c", "echo mine > /kept")
		bg := sb.Command("sh", "-c", "sleep 1000 & sleep 1000")
		require.NoError(t, bg.Start())
		if mode != "keep" {
			bg = Container(t, fixtures.Busybox()).Command("sleep", "1000")
			require.NoError(t, bg.Start())
		}
		ready()
		bg.Wait()
	case "cleanup":
		// Containers with commands running and a committed image: the harness's cleanups
		// have work to do when the kill lands among them.
		for range 12 {
			sb := Container(t, fixtures.Busybox())
			require.NoError(t, sb.Command("sleep", "1000").Start())
		}
		sb := Container(t, fixtures.Busybox(), cgroupOpts()...)
		sb.MustRun("sh", "-c", "echo c > /c")
		Container(t, sb.Commit()).MustRun("cat", "/c")
		t.Cleanup(ready) // runs first: the harness's cleanups come right after it
	case "next":
		// The next run: any use of the cache and any container with a cgroup clean up.
		Container(t, fixtures.Busybox(), cgroupOpts()...).MustRun("true")
	case "gc":
		removed, err := fixtures.GC()
		require.NoError(t, err)
		cgroups, err := isolate.GC()
		require.NoError(t, err)
		fmt.Printf("removed: %q\n", append(removed, cgroups...))
	default:
		t.Fatalf("unknown mode %q", mode)
	}
}
