//go:build linux

package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/isorun/isorun/fixtures"
	"github.com/isorun/isorun/isolate"
)

// The soak (issue 9) runs many container lifecycles, ISORUN_SOAK_PARALLEL (default 50) at a
// time, each a mix of what tests do with a container, through both faces of the harness (the
// t-bound Container, the t-free Engine), and checks that this process is back where it started:
// open fds, goroutines, RSS, mounts, processes, state directories and cgroups.
//
// ISORUN_SOAK is the number of lifecycles (default 200: seconds, part of `make test`);
// `make soak` runs 2,000.

const (
	soakDefault         = 200
	soakParallelDefault = 50
	// soakRSSSlack is the RSS growth allowed: the larger of this and a quarter of the start. The
	// Go runtime keeps some of the heap that 50 lifecycles at once needed, even after
	// debug.FreeOSMemory; a leak of a few KiB per lifecycle over 2,000 goes past it.
	soakRSSSlack = 20 << 20
	// soakHeapSlack is the growth of the Go heap in use allowed (after a GC): what the runtime and
	// the testing package keep (the names of 1,000 subtests, sync.Pool caches) fits in it; a leak
	// of 3 KiB a lifecycle over `make soak`'s 2,000 does not.
	soakHeapSlack = 4 << 20
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func TestSoak(t *testing.T) {
	needContainers(t)
	n := envInt("ISORUN_SOAK", soakDefault)
	par := min(envInt("ISORUN_SOAK_PARALLEL", soakParallelDefault), n)
	vols := t.TempDir()
	s := &soak{t: t, vols: vols}

	// Warm-up: a lifecycle of each option and API, so that what is made once per process (the
	// zygote, the mount watcher, the cache's directories, this process's runs/ directory for
	// commits) exists before the start figures are taken.
	s.name = "warm"
	for _, i := range []int{0, 1, 3, 7, 12, 41} {
		s.lifecycle(t, i)
	}
	if t.Failed() {
		t.FailNow()
	}
	s = &soak{t: t, vols: vols, name: "lc"} // the counters count the soak
	zygBefore := zygoteFigures()
	// The figures are taken without the zygote and its pool of prewarmed inits (which live as long
	// as the process, and whose number follows the host's mount changes, see isolate's pool): a
	// check with them running comes first, at the end.
	isolate.Shutdown()
	before := settleSoak(nil)
	soakProfile(t, "before")
	if leaks := findLeaks(false); len(leaks) > 0 {
		t.Fatalf("left before the soak:\n\t%s", strings.Join(leaks, "\n\t"))
	}

	start := time.Now()
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for range par {
		wg.Go(func() {
			for !t.Failed() {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				s.lifecycle(t, i)
				done.Add(1)
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)

	// With the zygote still there: no container process is left, only the pool's ready inits.
	leaks := settledLeaks(false)
	zyg := zygoteFigures()
	isolate.Shutdown()
	after := settleSoak(&before)
	soakProfile(t, "after")

	lc := done.Load()
	t.Logf("soak: %d lifecycles (%d containers: commits start a second), %d in parallel, in %v: %.1f lifecycles/s",
		lc, s.containers.Load(), par, wall.Round(time.Millisecond), float64(lc)/wall.Seconds())
	t.Logf("soak: kinds: %d via Container, %d via Engine; %d commits, %d volumes, %d with a cgroup, %d WithTimeout kills, %d context kills, %d background commands left at Close",
		s.viaContainer.Load(), s.viaEngine.Load(), s.commits.Load(), s.volumes.Load(), s.cgroups.Load(), s.timeouts.Load(), s.ctxKills.Load(), s.background.Load())
	t.Logf("soak: before: %s", before)
	t.Logf("soak: after:  %s", after)
	t.Logf("soak: after the warm-up, before Shutdown: %s", zygBefore)
	t.Logf("soak: at the end, before Shutdown: %s", zyg)
	if raceEnabled {
		t.Logf("soak: -race: RSS is not compared (the race runtime keeps memory per goroutine ever started); the Go heap is")
	}
	if lc != int64(n) && !t.Failed() {
		t.Errorf("ran %d lifecycles of %d", lc, n)
	}
	if len(leaks) > 0 {
		t.Errorf("left by the soak with the zygote running:\n\t%s", strings.Join(leaks, "\n\t"))
	}
	if zyg.foreign > 0 {
		t.Errorf("processes in containers' pid namespaces other than the pool's: %d", zyg.foreign)
	}
	// The pool's prewarmed inits, and the containers isolate parked for the next Start of the
	// four Configs started last (one each, named isorun-ready too: see isolate's warm_linux.go).
	pool := envInt("ISORUN_POOL", 2)
	parked := 0
	if pool > 0 {
		parked = 4
	}
	if zyg.ready > pool+parked {
		t.Errorf("%d prewarmed inits and parked containers, more than the pool's %d and %d parked", zyg.ready, pool, parked)
	} else if limit := zygBefore.fds + 2*pool; zyg.fds > limit {
		// The zygote holds its own few fds and none per container; at most what a ready init
		// might cost, whose number varies with the host's mount changes.
		t.Errorf("the zygote has %d open fds, %d after the warm-up (allowed up to %d)", zyg.fds, zygBefore.fds, limit)
	}
	for _, d := range before.diff(after) {
		t.Error("not back after the soak: " + d)
	}
}

// soak holds a run's counters.
type soak struct {
	t    *testing.T
	vols string // host directories for volumes
	name string // of the subtests: "warm" for the warm-up, "lc"

	containers, viaContainer, viaEngine                       atomic.Int64
	commits, volumes, cgroups, timeouts, ctxKills, background atomic.Int64
}

// withCgroup says whether lifecycle kind k gets a cgroup (WithPids): one in ten, where cgroups
// can be made (not rootless without a delegated cgroup).
func (s *soak) withCgroup(k int) bool {
	return k%10 == 3 && resourcesBlocked() == nil
}

// soakKinds is the number of distinct lifecycle shapes: the options and steps depend on i mod
// it.
const soakKinds = 60

// lifecycle runs lifecycle i: the Engine API when it is odd or ends in a WithTimeout kill, else
// Container in a subtest of t (whose end is the container's).
func (s *soak) lifecycle(t *testing.T, i int) {
	k := i % soakKinds
	timeout := k == 7 || k == 37
	if i%2 == 1 || timeout {
		s.viaEngine.Add(1)
		s.engineLifecycle(t, i, timeout)
		return
	}
	s.viaContainer.Add(1)
	t.Run(fmt.Sprintf("%s%04d", s.name, i), func(t *testing.T) {
		sb := Container(t, fixtures.Busybox(), s.options(i)...)
		s.containers.Add(1)
		s.steps(t, i, sb.Engine(), sb.run)
		if i%4 == 0 {
			sb.Close()
			// After Close the upper is still readable, as the doc says.
			AssertDiffIncludes(t, sb.Diff(), "A /greeting", "D /bin/ls")
		}
	})
}

func (s *soak) options(i int) []Option {
	k := i % soakKinds
	opts := []Option{WithEnv("N=" + strconv.Itoa(i))}
	if k%5 == 0 {
		opts = append(opts, WithVolume(s.volDir(i), "/vol", false))
	}
	if s.withCgroup(k) {
		opts = append(opts, WithPids(64))
	}
	if k%4 == 1 {
		opts = append(opts, WithTmpfs("/scratch", "size=1m"))
	}
	return opts
}

func (s *soak) volDir(i int) string { return filepath.Join(s.vols, "v"+strconv.Itoa(i)) }

// engineLifecycle is one lifecycle on the t-free Engine: Start, the steps, Release; or, with
// timeout, a container that WithTimeout kills under a running command.
func (s *soak) engineLifecycle(t *testing.T, i int, timeout bool) {
	opts := s.options(i)
	if timeout {
		opts = append(opts, WithTimeout(300*time.Millisecond))
	}
	e, err := Start(context.Background(), fixtures.Busybox(), opts...)
	if err != nil {
		t.Errorf("lifecycle %d: %v", i, err)
		return
	}
	s.containers.Add(1)
	defer func() {
		if err := e.Release(); err != nil {
			t.Errorf("lifecycle %d: release: %v", i, err)
		}
		s.checkVolume(t, i)
	}()
	run := func(stdin io.Reader, name string, arg ...string) Result { return engineRun(e, stdin, name, arg...) }
	if timeout {
		s.timeouts.Add(1)
		r := run(nil, "sleep", "30")
		if r.ExitCode == 0 || !e.TimedOut() {
			t.Errorf("lifecycle %d: WithTimeout: sleep 30 ended with %d (%v), TimedOut %v", i, r.ExitCode, r.Err, e.TimedOut())
		}
		select {
		case <-e.Container().Done():
		default:
			t.Errorf("lifecycle %d: WithTimeout fired but the container is not done", i)
		}
		return
	}
	s.steps(t, i, e, run)
	if i%4 == 1 {
		e.Close()
		if ch, err := e.Diff(); err != nil {
			t.Errorf("lifecycle %d: Diff after Close: %v", i, err)
		} else {
			AssertDiffIncludes(t, ch, "A /greeting", "D /bin/ls")
		}
	}
}

// engineRun is Sandbox.Run on an Engine.
func engineRun(e *Engine, stdin io.Reader, name string, arg ...string) Result {
	return runCmd(e.Command(name, arg...), stdin)
}

// steps is what a lifecycle does with its container; tb reports, e is the container, run runs a
// command to its end (Sandbox.run or engineRun).
func (s *soak) steps(tb testing.TB, i int, e *Engine, run func(io.Reader, string, ...string) Result) {
	k := i % soakKinds
	fail := func(format string, args ...any) {
		tb.Helper()
		tb.Errorf("lifecycle %d (container %s): %s", i, e.ID(), fmt.Sprintf(format, args...))
	}
	n := strconv.Itoa(i)

	// WriteFile from outside, read by a command and by ReadFile.
	payload := "payload " + n + "\n"
	if err := e.WriteFile("/tmp/in", []byte(payload), 0o644); err != nil {
		fail("WriteFile: %v", err)
		return
	}
	if r := run(nil, "cat", "/tmp/in"); r.ExitCode != 0 || r.Stdout != payload {
		fail("cat /tmp/in: exit %d, %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	// A change made inside, seen from outside and in the diff.
	if r := run(nil, "sh", "-c", `echo "$N" > /greeting && rm /bin/ls`); r.ExitCode != 0 {
		fail("write /greeting: exit %d, stderr %q", r.ExitCode, r.Stderr)
	}
	if b, err := e.ReadFile("/greeting"); err != nil || string(b) != n+"\n" {
		fail("ReadFile /greeting: %q, %v", b, err)
	}
	if ch, err := e.Diff(); err != nil {
		fail("Diff: %v", err)
	} else {
		AssertDiffIncludes(tb, ch, "A /greeting", "D /bin/ls", "A /tmp/in")
	}
	// A command that fails with its own exit code.
	code := i%7 + 1
	if r := run(nil, "sh", "-c", "exit "+strconv.Itoa(code)); r.ExitCode != code {
		fail("exit %d: got %d (%v)", code, r.ExitCode, r.Err)
	} else if _, ok := r.Err.(*isolate.ExitError); !ok {
		fail("exit %d: error %T %v, want an *ExitError", code, r.Err, r.Err)
	}
	// A pipeline fed on stdin.
	lines := 500 + i%1000
	in := strings.Repeat("abc\nxyz\n", lines)
	if r := run(strings.NewReader(in), "sh", "-c", "tr a-z A-Z | grep -c ABC"); r.ExitCode != 0 || r.Stdout != strconv.Itoa(lines)+"\n" {
		fail("pipeline: exit %d, %q, want %d; stderr %q", r.ExitCode, r.Stdout, lines, r.Stderr)
	}
	// A command that does not exist.
	if k%3 == 0 {
		if r := run(nil, "no-such-command"); r.ExitCode != 127 {
			fail("no-such-command: exit %d", r.ExitCode)
		}
	}
	// A command killed by its context.
	if k%6 == 2 {
		s.ctxKills.Add(1)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := e.CommandContext(ctx, "sleep", "30").Run()
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			fail("sleep 30 under a 100ms context: %v", err)
		}
	}
	// The volume and the tmpfs.
	if k%5 == 0 {
		s.volumes.Add(1)
		if r := run(nil, "sh", "-c", `echo "v$N" > /vol/f`); r.ExitCode != 0 {
			fail("write /vol/f: exit %d, stderr %q", r.ExitCode, r.Stderr)
		}
	}
	if k%4 == 1 {
		if r := run(nil, "sh", "-c", `echo t > /scratch/t && cat /scratch/t`); r.ExitCode != 0 || r.Stdout != "t\n" {
			fail("tmpfs: exit %d, %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
		}
	}
	if s.withCgroup(k) {
		s.cgroups.Add(1)
		if st, err := e.Container().Stats(); err != nil || st.Pids < 1 {
			fail("WithPids(64): Stats: %+v, %v", st, err)
		}
	}
	// A commit, and a container on it (same API as this one).
	if k == 12 || k == 41 {
		s.commits.Add(1)
		img, err := e.Commit()
		if err != nil {
			fail("Commit: %v", err)
		} else {
			s.onCommit(tb, i, img)
		}
	}
	// Commands left running when the container ends: a shell with a background child, and
	// its output piped (half the time) to a buffer nobody reads until Wait.
	s.background.Add(1)
	bg := e.Command("sh", "-c", "sleep 1000 & echo started; exec sleep 1000")
	var bgOut bytes.Buffer
	if i%2 == 0 {
		bg.Stdout = &syncWriter{w: &bgOut}
	}
	if err := bg.Start(); err != nil {
		fail("start a background command: %v", err)
		return
	}
	if i%3 == 0 {
		// Waited for after the container ends (in a cleanup, after Close).
		waitBG := func() {
			e.Close()
			if err := bg.Wait(); err == nil {
				fail("a command running at Close: Wait says nil")
			}
		}
		if t, ok := tb.(*testing.T); ok && t != s.t {
			t.Cleanup(waitBG)
		} else {
			defer waitBG()
		}
	}
}

// onCommit starts a container on a committed image and checks it holds the change.
func (s *soak) onCommit(tb testing.TB, i int, img fixtures.Image) {
	tb.Helper()
	check := func(e *Engine) {
		if b, err := e.ReadFile("/greeting"); err != nil || string(b) != strconv.Itoa(i)+"\n" {
			tb.Errorf("lifecycle %d: the commit's /greeting: %q, %v", i, b, err)
		}
		if r := engineRun(e, nil, "ls", "/"); r.ExitCode != 127 {
			tb.Errorf("lifecycle %d: ls in the commit (deleted): exit %d", i, r.ExitCode)
		}
	}
	s.containers.Add(1)
	if t, ok := tb.(*testing.T); ok && t != s.t {
		check(Container(t, img).Engine())
		return
	}
	e, err := Start(context.Background(), img)
	if err != nil {
		tb.Errorf("lifecycle %d: start on the commit: %v", i, err)
		return
	}
	defer e.Release()
	check(e)
}

// checkVolume checks (and removes) a lifecycle's volume directory once its container is gone.
func (s *soak) checkVolume(tb testing.TB, i int) {
	if i%soakKinds%5 != 0 {
		return
	}
	dir := s.volDir(i)
	if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != "v"+strconv.Itoa(i)+"\n" {
		tb.Errorf("lifecycle %d: the volume's file on the host: %q, %v", i, b, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		tb.Errorf("lifecycle %d: %v", i, err)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// soakFigures is what the soak compares.
type soakFigures struct {
	fds, goroutines int
	rssKB           int64
	heapKB, objects uint64   // the Go heap in use, for telling the runtime's memory from a leak
	mounts          int      // mount table lines of ours (see isOurs), all kinds
	allMounts       int      // the whole mount table, which other processes change too: not compared
	procs           []string // live processes below this one
	stateDirs       []string // cache tmp/ and runs/ entries, TMPDIR isorun-*, our cgroups
	commitLayers    int      // layers in this process's runs/ directory: kept until exit, by design
}

func (f soakFigures) String() string {
	return fmt.Sprintf("fds %d, goroutines %d, RSS %.1f MiB (Go heap %.1f MiB, %d objects), our mounts %d (all %d), processes %d, state dirs %d %v, committed layers %d",
		f.fds, f.goroutines, float64(f.rssKB)/1024, float64(f.heapKB)/1024, f.objects, f.mounts, f.allMounts, len(f.procs), len(f.stateDirs), f.stateDirs, f.commitLayers)
}

// diff lists how after is not back to f.
func (f soakFigures) diff(after soakFigures) []string {
	var out []string
	if after.fds != f.fds {
		out = append(out, fmt.Sprintf("open fds: %d, were %d", after.fds, f.fds))
	}
	if after.goroutines > f.goroutines {
		out = append(out, fmt.Sprintf("goroutines: %d, were %d\n%s", after.goroutines, f.goroutines, goroutineDump()))
	}
	if after.heapKB > f.heapKB+soakHeapSlack>>10 {
		out = append(out, fmt.Sprintf("Go heap in use: %d KiB, was %d (allowed up to %d)", after.heapKB, f.heapKB, f.heapKB+soakHeapSlack>>10))
	}
	// With -race the race runtime's own memory grows with every goroutine ever started and is
	// never given back (golang/go#63276, #26813): tens of MiB per thousand lifecycles while the Go
	// heap stays flat: RSS is then reported, and the heap check above stands for it.
	if limit := f.rssKB + max(soakRSSSlack>>10, f.rssKB/4); after.rssKB > limit && !raceEnabled {
		out = append(out, fmt.Sprintf("RSS: %d KiB, was %d (allowed up to %d)", after.rssKB, f.rssKB, limit))
	}
	if after.mounts != f.mounts {
		out = append(out, fmt.Sprintf("our mounts: %d, were %d", after.mounts, f.mounts))
	}
	if strings.Join(after.procs, "\n") != strings.Join(f.procs, "\n") {
		out = append(out, fmt.Sprintf("processes: %q, were %q", after.procs, f.procs))
	}
	if strings.Join(after.stateDirs, "\n") != strings.Join(f.stateDirs, "\n") {
		out = append(out, fmt.Sprintf("state dirs: %q, were %q", after.stateDirs, f.stateDirs))
	}
	return out
}

// settleSoak takes the figures once what is going away asynchronously has gone (goroutines
// ending, the zygote's exit, killed processes reaped): with want, it polls (up to 10 s) until
// they match want; without, until two readings 100 ms apart agree.
func settleSoak(want *soakFigures) soakFigures {
	deadline := time.Now().Add(10 * time.Second)
	prev := takeSoakFigures()
	for {
		time.Sleep(100 * time.Millisecond)
		cur := takeSoakFigures()
		if want != nil && len(want.diff(cur)) == 0 {
			return cur
		}
		if want == nil && cur.fds == prev.fds && cur.goroutines == prev.goroutines && len(cur.procs) == len(prev.procs) {
			return cur
		}
		if time.Now().After(deadline) {
			return cur
		}
		prev = cur
	}
}

func takeSoakFigures() soakFigures {
	runtime.GC()
	debug.FreeOSMemory()
	var f soakFigures
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		f.fds = len(ents)
	}
	f.goroutines = runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f.heapKB, f.objects = ms.HeapInuse>>10, ms.HeapObjects
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				f.rssKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f.allMounts++
			if isOurs(line) {
				f.mounts++
			}
		}
	}
	for _, pid := range descendantsOf(os.Getpid()) {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		f.procs = append(f.procs, fmt.Sprintf("%d %s", pid, bytes.ReplaceAll(bytes.TrimRight(cmd, "\x00"), []byte{0}, []byte{' '})))
	}
	cache := filepath.Join(testRoot, "cache", "v1")
	for _, sub := range []string{"tmp", "runs"} {
		ents, _ := os.ReadDir(filepath.Join(cache, sub))
		for _, e := range ents {
			f.stateDirs = append(f.stateDirs, sub+"/"+e.Name())
			if sub == "runs" {
				layers, _ := os.ReadDir(filepath.Join(cache, sub, e.Name()))
				f.commitLayers += len(layers)
			}
		}
	}
	if m, _ := filepath.Glob(filepath.Join(testRoot, "tmp", "isorun-*")); len(m) > 0 {
		f.stateDirs = append(f.stateDirs, m...)
	}
	start, _ := procStartTicks(os.Getpid())
	f.stateDirs = append(f.stateDirs, cgroupsOf(os.Getpid(), start)...)
	return f
}

// zygoteState is the zygote's side at the end of the soak, before Shutdown.
type zygoteState struct {
	pid, fds     int
	ready        int // prewarmed inits
	foreign      int // other processes in containers' pid namespaces: leaks
	rssKB        int64
	descendantsN int
}

func (z zygoteState) String() string {
	return fmt.Sprintf("zygote pid %d: fds %d, RSS %.1f MiB; %d processes below this one, %d prewarmed inits, %d other container processes",
		z.pid, z.fds, float64(z.rssKB)/1024, z.descendantsN, z.ready, z.foreign)
}

func zygoteFigures() zygoteState {
	var z zygoteState
	me := os.Getpid()
	desc := descendantsOf(me)
	z.descendantsN = len(desc)
	for _, pid := range desc {
		// By comm: an init that shares its zygote's memory has the zygote's command line.
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		switch string(bytes.TrimSpace(comm)) {
		case "isorun-zygote":
			z.pid = pid
			if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
				z.fds = len(ents)
			}
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
						z.rssKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
					}
				}
			}
		case "isorun-ready":
			z.ready++
		default:
			z.foreign++
		}
	}
	return z
}

// soakProfile writes a heap profile to $ISORUN_SOAK_PROFILE/heap-<when>.pprof when that is set,
// for hunting what a failed soak kept: run with -test.memprofilerate=1 and compare with
// `go tool pprof -sample_index=inuse_objects -base heap-before.pprof heap-after.pprof`.
func soakProfile(t *testing.T, when string) {
	dir := os.Getenv("ISORUN_SOAK_PROFILE")
	if dir == "" {
		return
	}
	runtime.GC()
	runtime.GC() // the profile shows the heap as of the last completed GC cycle but one
	f, err := os.Create(filepath.Join(dir, "heap-"+when+".pprof"))
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Error(err)
	}
}

func goroutineDump() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
