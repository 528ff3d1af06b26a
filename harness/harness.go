package harness

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isorun/isorun/fixtures"
	"github.com/isorun/isorun/isolate"
	"github.com/isorun/isorun/overlay"
)

// Main is the TestMain hook:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
//
// It serves the container side when this process is one (isolate's init, which in fact takes
// over before main runs), registers the -update flag for golden diffs unless the package defines
// its own, runs the tests and exits. Containers work without it; only -update needs it.
func Main(m *testing.M) {
	os.Exit(run(m))
}

// run is Main without the exit, so that this package's own TestMain can check for leaks after
// the tests.
func run(m *testing.M) int {
	isolate.ServeIfInit()
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files (testdata/*.diff)")
	}
	return m.Run()
}

// Cmd is a command in a container, shaped like os/exec.Cmd (see isolate.Cmd).
type Cmd = isolate.Cmd

// ExitError is the error of a command that ran and exited non-zero (or was killed); ExitCode
// gives its status, 128+N for signal N.
type ExitError = isolate.ExitError

// Result is what Run observed.
type Result struct {
	Stdout, Stderr string
	// ExitCode is the command's exit status: 128+N when killed by signal N, 127 when the
	// command was not found, 126 when it could not run, -1 when the container was gone.
	ExitCode int
	// Err is the error behind a non-zero ExitCode (nil for a command that exited 0).
	Err error
	// OOMKilled: the command died (ExitCode 137) because the container reached WithMemory's
	// limit. PidsLimited: WithPids' limit refused a fork while it ran.
	OOMKilled, PidsLimited bool
}

// Sandbox is one running container. Make it with Container; it ends with the test. It is an
// Engine whose errors fail the test and whose commands are logged when the test fails.
type Sandbox struct {
	t   testing.TB
	img fixtures.Image
	e   *Engine
	c   *isolate.Container

	mu       sync.Mutex
	history  []string // commands and how they ended, for the log of a failed test
	finished bool
	// timeoutReported says the test was failed for WithTimeout; cleanup reports a timeout that
	// fired too early (before Container returned) or raced the end of the test.
	timeoutReported bool
}

// Container starts a container on img and returns it ready; t fails with a message naming the
// image and the step when it can't. Everything it made (processes, mounts, the upper layer) is
// undone by t.Cleanup, even when the test fails or panics. Where containers can't run (not Linux;
// not root and the kernel allows no user namespace, see Rootless) the test is skipped with the
// reason, or fails when ISORUN_REQUIRE=1.
func Container(t testing.TB, img fixtures.Image, opts ...Option) *Sandbox {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	if reason, fail := platformPolicy(runtime.GOOS, blocker(cfg.rootless), os.Getenv("ISORUN_REQUIRE")); fail {
		t.Fatal(reason)
	} else if reason != "" {
		t.Skip(reason)
	}
	if img == nil {
		t.Fatal("harness: Container: nil image (use fixtures.Busybox(), fixtures.Host() or fixtures.Open)")
	}
	s := &Sandbox{t: t, img: img}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := start(ctx, img, cfg, s.timeout)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	s.mu.Lock() // the timeout may fire already
	s.e, s.c = e, e.c
	s.mu.Unlock()
	t.Cleanup(s.cleanup)
	return s
}

// platformPolicy decides what Container does on a platform that can't run containers: skip
// with the reason, or, with ISORUN_REQUIRE=1 (CI, where a skip would hide that nothing ran),
// fail with it. It takes the platform (and what blocks rootless containers, see blocker) as
// arguments so that the decision can be tested anywhere.
func platformPolicy(goos string, blocked error, require string) (reason string, fail bool) {
	switch {
	case goos != "linux":
		reason = "isorun: unsupported on " + goos
	case blocked != nil:
		reason = "isorun: " + blocked.Error()
	default:
		return "", false
	}
	if require == "1" {
		return reason + " (and ISORUN_REQUIRE=1 makes that a failure)", true
	}
	return reason, false
}

// unsupported is why containers can't run here, "" when they can.
func unsupported() string {
	reason, _ := platformPolicy(runtime.GOOS, blocker(false), "")
	return reason
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// mergeEnv layers environments: later KEY=VALUE pairs replace earlier ones with the same key,
// keeping the first position. HOME is added when missing.
func mergeEnv(image, extra []string, home string) []string {
	var out []string
	at := map[string]int{}
	for _, kv := range append(append([]string{}, image...), extra...) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := at[k]; ok {
			out[i] = kv
			continue
		}
		at[k] = len(out)
		out = append(out, kv)
	}
	if _, ok := at["PATH"]; !ok {
		out = append(out, "PATH="+isolate.DefaultPath)
	}
	if _, ok := at["HOME"]; !ok {
		out = append(out, "HOME="+home)
	}
	return out
}

// timeout runs on the timer's goroutine once WithTimeout's deadline killed the container. It
// fails the test unless the test is already over (Errorf after the end would panic) or
// Container has not returned yet; cleanup reports those cases.
func (s *Sandbox) timeout() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished || s.e == nil {
		return
	}
	s.reportTimeout()
}

// reportTimeout fails the test for WithTimeout; s.mu is held.
func (s *Sandbox) reportTimeout() {
	s.timeoutReported = true
	s.history = append(s.history, fmt.Sprintf("timeout after %v: container killed", s.e.cfg.timeout))
	s.t.Errorf("harness: container %s on %q: killed after WithTimeout(%v)", s.c.ID(), s.img.Ref(), s.e.cfg.timeout)
}

func (s *Sandbox) cleanup() {
	s.mu.Lock()
	s.finished = true
	// The engine marks the timeout before it kills, so a test that saw its commands die sees
	// TimedOut here even when the timer's callback has not got the lock yet.
	if s.e.TimedOut() && !s.timeoutReported {
		s.reportTimeout()
	}
	history := s.history
	s.mu.Unlock()
	if (s.t.Failed() || panicking()) && len(history) > 0 {
		s.t.Logf("harness: container %s on %q ran:\n  %s", s.c.ID(), s.img.Ref(), strings.Join(history, "\n  "))
	}
	s.e.Release()
	if dir := s.e.KeepDir(); dir != "" {
		log := filepath.Join(dir, "commands.log")
		os.WriteFile(log, []byte(strings.Join(history, "\n")+"\n"), 0o644)
		s.t.Logf("harness: ISORUN_KEEP: container %s kept its upper layer in %s/upper and its command log in %s", s.c.ID(), dir, log)
	}
}

// panicking reports whether the caller runs as a deferred call of a panic. A test's cleanups run
// while it panics, before the testing package marks it failed, so t.Failed alone would keep
// the command log out of the output of a test that panicked.
func panicking() bool {
	pc := make([]uintptr, 64)
	frames := runtime.CallersFrames(pc[:runtime.Callers(2, pc)])
	for {
		f, more := frames.Next()
		if f.Function == "runtime.gopanic" {
			return true
		}
		if !more {
			return false
		}
	}
}

// ID names the container in messages; it is also its default hostname.
func (s *Sandbox) ID() string { return s.c.ID() }

// Image is the image the container started from.
func (s *Sandbox) Image() fixtures.Image { return s.img }

// Close ends the container now (Diff, ReadFile and Commit keep working until the test ends).
// The test's cleanup does it anyway.
func (s *Sandbox) Close() { s.c.Close() }

// Command returns a command to run in the container, with the container's environment, user and
// working directory; set its fields, then Run (or Start and Wait), as with os/exec.
func (s *Sandbox) Command(name string, arg ...string) *Cmd { return s.e.Command(name, arg...) }

// CommandContext is Command whose process group is killed when ctx is done.
func (s *Sandbox) CommandContext(ctx context.Context, name string, arg ...string) *Cmd {
	return s.e.CommandContext(ctx, name, arg...)
}

// runWaitDelay bounds how long Run waits for output after the command exits: a server started
// in the background (`httpd &`) holds the output pipes, and Run should not wait for it.
const runWaitDelay = 500 * time.Millisecond

// Run runs a command to completion and reports what happened; it never fails the test (assert
// on the Result). A command that doesn't exist gives ExitCode 127 and says so in Stderr.
func (s *Sandbox) Run(name string, arg ...string) Result {
	return s.run(nil, name, arg...)
}

// RunInput is Run with stdin.
func (s *Sandbox) RunInput(stdin io.Reader, name string, arg ...string) Result {
	return s.run(stdin, name, arg...)
}

func (s *Sandbox) run(stdin io.Reader, name string, arg ...string) Result {
	cmd := s.Command(name, arg...)
	r := runCmd(cmd, stdin)
	s.record(cmd.Args, r)
	return r
}

// runCmd runs cmd to its end with stdin, its output captured, as Sandbox.Run does.
func runCmd(cmd *Cmd, stdin io.Reader) Result {
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	cmd.WaitDelay = runWaitDelay
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String(), Err: err}
	var ee *isolate.ExitError
	var se *isolate.Error
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.ExitCode = ee.ExitCode()
	case errors.As(err, &se):
		r.ExitCode = se.ExitCode()
		r.Stderr += err.Error() + "\n"
	default:
		r.ExitCode = -1
		r.Stderr += err.Error() + "\n"
	}
	if st := cmd.State(); st != nil {
		r.OOMKilled, r.PidsLimited = st.OOMKilled(), st.PidsLimited()
	}
	return r
}

// MustRun runs a command and fails the test unless it exits 0; it returns the command's stdout.
func (s *Sandbox) MustRun(name string, arg ...string) string {
	s.t.Helper()
	r := s.Run(name, arg...)
	if r.ExitCode != 0 {
		s.t.Fatalf("harness: container %s: %s: exit code %d\nstdout:\n%s\nstderr:\n%s", s.c.ID(), quoteArgs(append([]string{name}, arg...)), r.ExitCode, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

func (s *Sandbox) record(args []string, r Result) {
	line := fmt.Sprintf("$ %s -> exit %d", quoteArgs(args), r.ExitCode)
	if r.OOMKilled {
		line += " (OOM-killed)"
	}
	if tail := lastLines(r.Stderr, 3); tail != "" {
		line += "; stderr: " + tail
	}
	s.mu.Lock()
	s.history = append(s.history, line)
	if len(s.history) > 200 {
		s.history = s.history[len(s.history)-200:]
	}
	s.mu.Unlock()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, " | "))
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`;&|<>*?()") {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			q[i] = a
		}
	}
	return strings.Join(q, " ")
}

// Diff is the container's changes to the image so far, sorted by path, in docker diff's terms.
// Mount points the harness made for volumes are not changes; nor is anything inside a volume.
func (s *Sandbox) Diff() overlay.Changes {
	s.t.Helper()
	ch, err := s.e.Diff()
	if err != nil {
		s.t.Fatalf("harness: %v", err)
	}
	return ch
}

func (s *Sandbox) diff() (overlay.Changes, error) { return s.e.Diff() }

// Commit returns the container's filesystem as it is now as a new image (the base image's
// layers plus a copy of the upper layer), usable by Container until the test process exits.
// Volumes and tmpfs mounts are not part of it, content or mount points: it holds what Diff
// shows. Commit while no command is writing; after Close works too.
func (s *Sandbox) Commit() fixtures.Image {
	s.t.Helper()
	img, err := s.e.Commit()
	if err != nil {
		s.t.Fatalf("harness: %v", err)
	}
	return img
}

// WriteLayer writes the container's changes as an OCI image layer (a tar with .wh. whiteouts),
// for shipping the diff elsewhere.
func (s *Sandbox) WriteLayer(w io.Writer) error { return s.e.WriteLayer(w) }

// ReadFile reads a file by its path inside the container.
func (s *Sandbox) ReadFile(p string) ([]byte, error) { return s.e.ReadFile(p) }

// WriteFile writes a file by its path inside the container, like os.WriteFile: created with
// perm (owned by root) or truncated. The parent directory must exist. The write is a change
// like any other: it shows in Diff.
func (s *Sandbox) WriteFile(p string, data []byte, perm fs.FileMode) error {
	return s.e.WriteFile(p, data, perm)
}

// Engine is the container under the Sandbox, whose methods return errors instead of failing
// the test.
func (s *Sandbox) Engine() *Engine { return s.e }

// Container is the underlying isolate container, for what the harness does not wrap.
func (s *Sandbox) Container() *isolate.Container { return s.c }
