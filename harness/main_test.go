package harness

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/isorun/isorun/fixtures"
	"github.com/isorun/isorun/isolate"
)

// helperEnv, when set, makes this test binary a child that one test started to run a helper
// test (see cleanup_test.go); it then shares its parent's cache and skips the leak checks,
// which are the parent's.
const helperEnv = "ISORUN_HARNESS_HELPER"

// testRoot is this test binary's scratch root: ISORUN_CACHE and TMPDIR point inside it, so that
// what the harness leaves behind can be told from what other processes on the machine make.
var testRoot string

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(run(m))
	}
	if reason := unsupported(); reason != "" && os.Getenv("ISORUN_REQUIRE") != "1" {
		// Examples cannot skip: on a machine that can't run containers, their Output would
		// not match and they would fail where every test skips. Skip them by flag instead.
		flag.Set("test.skip", "^Example")
		fmt.Fprintf(os.Stderr, "harness tests: examples skipped: %s\n", reason)
	} else if err := hostImageBlocked(); err != nil {
		// The same for the one example on the host image, which rootless cannot run.
		flag.Set("test.skip", "^ExampleContainer_host$")
		fmt.Fprintf(os.Stderr, "--- SKIP: ExampleContainer_host (by -test.skip): %v\n", err)
	}
	root, err := os.MkdirTemp("", "isorun-harness-test-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "harness tests: %v\n", err)
		os.Exit(1)
	}
	testRoot = root
	for _, d := range []string{"cache", "tmp"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "harness tests: %v\n", err)
			os.Exit(1)
		}
	}
	os.Setenv("ISORUN_CACHE", filepath.Join(root, "cache"))
	os.Setenv("TMPDIR", filepath.Join(root, "tmp"))

	code := run(m)

	if leaks := settledLeaks(true); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "harness tests: left behind after the tests:\n\t%s\n", strings.Join(leaks, "\n\t"))
		code = 1
	}
	// Nothing is mounted under root (findLeaks looked), so removing it cannot reach through a
	// mount into something else.
	if err := os.RemoveAll(root); err != nil {
		fmt.Fprintf(os.Stderr, "harness tests: remove %s: %v\n", root, err)
		code = 1
	}
	os.Exit(code)
}

// settledLeaks is findLeaks once what is still going away has gone: a container's init exits
// before its parent, the zygote, has reaped it, so for a moment it is a zombie in its own pid
// namespace. What is still there after a few seconds is a leak.
func settledLeaks(final bool) []string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		leaks := findLeaks(final)
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// findLeaks lists what containers of this process left: processes in another pid namespace
// below this process, overlay mounts on this test's directories or on "/" (the Host image),
// unfinished work in the cache's tmp/, committed layers of other processes in runs/, and
// isorun-* directories in TMPDIR. Committed layers of this process stay in runs/ until it
// exits, by design (fixtures.Commit); final says the tests are over, when even those are
// checked to be this process's only.
func findLeaks(final bool) []string {
	var leaks []string
	leaks = append(leaks, foreignProcesses()...)
	leaks = append(leaks, overlayMounts()...)
	if testRoot == "" {
		return leaks
	}
	cache := filepath.Join(testRoot, "cache", "v1") // fixtures' layout: ISORUN_CACHE/v1/{tmp,runs,...}
	if ents, err := os.ReadDir(filepath.Join(cache, "tmp")); err == nil {
		for _, e := range ents {
			leaks = append(leaks, "cache tmp/: "+e.Name())
		}
	}
	if ents, err := os.ReadDir(filepath.Join(cache, "runs")); err == nil && final {
		mine := "run-" + strconv.Itoa(os.Getpid()) + "-"
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), mine) {
				leaks = append(leaks, "cache runs/: "+e.Name()+" (not this process's)")
			}
		}
	}
	if m, _ := filepath.Glob(filepath.Join(testRoot, "tmp", "isorun-*")); len(m) > 0 {
		leaks = append(leaks, "TMPDIR: "+strings.Join(m, ", "))
	}
	return leaks
}

// foreignProcesses lists the processes in a pid namespace other than ours that descend from
// this process: container processes still alive. (The zygote is in ours; what other processes
// on the machine run is not our business.)
func foreignProcesses() []string {
	me := os.Getpid()
	myNS, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return []string{"read /proc/self/ns/pid: " + err.Error()}
	}
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
		if err != nil {
			// A container's init is not dumpable: not root, its ns links are closed to us
			// (EACCES). Its status still says how deep its pid namespace is.
			if nspidDepth(pid) <= nspidDepth(me) {
				continue
			}
			ns = fmt.Sprintf("a pid namespace below ours (NSpid depth %d)", nspidDepth(pid))
		} else if ns == myNS {
			continue
		}
		if descends(pid, me) {
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			// By comm: an init that shares its zygote's memory has the zygote's command line.
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); string(bytes.TrimSpace(comm)) == "isorun-ready" {
				continue // a prewarmed init of the zygote's pool: ready for the next container
			}
			out = append(out, fmt.Sprintf("process %d (state %s) in %s: %s", pid, procState(pid), ns, bytes.ReplaceAll(bytes.TrimRight(cmd, "\x00"), []byte{0}, []byte{' '})))
		}
	}
	return out
}

// nspidDepth is how many pid namespaces pid is in (its NSpid line in /proc/PID/status), 0 when
// that cannot be read.
func nspidDepth(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			return len(strings.Fields(rest))
		}
	}
	return 0
}

// descends reports whether pid's parent chain reaches ancestor.
func descends(pid, ancestor int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		ppid, err := parentOf(pid)
		if err != nil {
			return false
		}
		if ppid == ancestor {
			return true
		}
		pid = ppid
	}
	return false
}

func procState(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])); len(f) > 0 {
		return f[0]
	}
	return "?"
}

func parentOf(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: the fields start after the last ")".
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	return strconv.Atoi(f[1])
}

// overlayMounts lists the overlay mounts in our mount namespace that an isorun container made:
// on this test's directories (image layers in its cache, ISORUN_KEEP uppers in its TMPDIR) or
// with "/" as a lower (the Host image). isorun mounts overlays only inside containers' own
// namespaces, so there should be none; other processes' overlays are not ours to judge.
func overlayMounts() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return []string{"read /proc/self/mountinfo: " + err.Error()}
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		_, after, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(after, "overlay ") {
			continue
		}
		if isOurs(line) {
			out = append(out, "overlay mount: "+line)
		}
	}
	return out
}

func isOurs(mountinfoLine string) bool {
	if testRoot != "" && strings.Contains(mountinfoLine, testRoot) {
		return true
	}
	f := strings.Fields(mountinfoLine)
	opts := f[len(f)-1]
	for _, o := range strings.Split(opts, ",") {
		k, v, _ := strings.Cut(o, "=")
		if k == "lowerdir" || k == "lowerdir+" {
			for _, l := range strings.Split(v, ":") {
				if l == "/" {
					return true
				}
			}
		}
	}
	return false
}

// needContainers skips (or, with ISORUN_REQUIRE=1, fails) a test that needs containers where
// they can't run, as Container does, for tests that must decide before their first Container:
// those that check a fake T's record or a child's output, or build things first.
// hostImageBlocked is why fixtures.Host() cannot be a container's image here, nil when it can:
// rootless, overlayfs refuses the host's root as a lower (see isolate.ErrLowerHasMounts).
func hostImageBlocked() error {
	if !Rootless() {
		return nil
	}
	if err := isolate.RootlessLowerBlocker("/"); err != nil {
		return fmt.Errorf("rootless: the host image cannot run: %w", err)
	}
	return nil
}

// needHostImage skips a test on fixtures.Host() where it cannot run, after checking that
// Container refuses it with that reason.
func needHostImage(t *testing.T) {
	t.Helper()
	err := hostImageBlocked()
	if err == nil {
		return
	}
	f := runFake(func(ft *fakeT) { Container(ft, fixtures.Host()) })
	require.True(t, f.fatal, "the host image started rootless although %v", err)
	assert.Contains(t, f.errorText(), isolate.ErrLowerHasMounts.Error())
	t.Skip(err)
}

func needContainers(t *testing.T) {
	t.Helper()
	if reason, fail := platformPolicy(runtime.GOOS, blocker(false), os.Getenv("ISORUN_REQUIRE")); fail {
		t.Fatal(reason)
	} else if reason != "" {
		t.Skip(reason)
	}
}
