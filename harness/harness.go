package harness

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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
	isolate.ServeIfInit()
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files (testdata/*.diff)")
	}
	os.Exit(m.Run())
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
}

// Sandbox is one running container. Make it with Container; it ends with the test.
type Sandbox struct {
	t   testing.TB
	img fixtures.Image
	c   *isolate.Container
	cfg config

	uid, gid uint32
	groups   []uint32
	env      []string
	keepDir  string

	mu       sync.Mutex
	history  []string // commands and how they ended, for the log of a failed test
	finished bool
	timer    *time.Timer
}

// Container starts a container on img and returns it ready; t fails with a message naming the
// image and the step when it can't. Everything it made (processes, mounts, the upper layer) is
// undone by t.Cleanup, even when the test fails or panics. Where containers can't run (not Linux,
// not root) the test is skipped with the reason, or fails when ISORUN_REQUIRE=1.
func Container(t testing.TB, img fixtures.Image, opts ...Option) *Sandbox {
	t.Helper()
	if reason := unsupported(); reason != "" {
		if os.Getenv("ISORUN_REQUIRE") == "1" {
			t.Fatalf("%s (ISORUN_REQUIRE=1)", reason)
		}
		t.Skip(reason)
	}
	if img == nil {
		t.Fatal("harness: Container: nil image (use fixtures.Busybox(), fixtures.Host() or fixtures.Open)")
	}
	s := &Sandbox{t: t, img: img}
	for _, o := range opts {
		o(&s.cfg)
	}
	if os.Getenv("ISORUN_KEEP") == "1" {
		s.cfg.keep = true
	}
	res, err := img.Resolve()
	if err != nil {
		t.Fatalf("harness: image %q: %v", img.Ref(), err)
	}
	icfg := isolate.Config{
		Lowers:     res.Lowers,
		Hostname:   s.cfg.hostname,
		Mounts:     s.cfg.mounts,
		Privileged: s.cfg.privileged,
		Dir:        firstNonEmpty(s.cfg.dir, res.Config.WorkingDir),
	}
	if s.cfg.keep {
		if err := s.makeKeepDir(&icfg); err != nil {
			t.Fatalf("harness: ISORUN_KEEP: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := isolate.Start(ctx, icfg)
	if err != nil {
		s.removeKeepDir()
		t.Fatalf("harness: start container on image %q: %v", img.Ref(), err)
	}
	s.c = c
	t.Cleanup(s.cleanup)
	if err := s.resolveUser(firstNonEmpty(s.cfg.user, res.Config.User)); err != nil {
		t.Fatalf("harness: container %s: %v", c.ID(), err)
	}
	s.env = mergeEnv(res.Config.Env, s.cfg.env, s.homeFor())
	if s.cfg.timeout > 0 {
		s.timer = time.AfterFunc(s.cfg.timeout, s.timeout)
	}
	return s
}

func unsupported() string {
	if runtime.GOOS != "linux" {
		return "isorun: unsupported on " + runtime.GOOS
	}
	if os.Geteuid() != 0 {
		return "isorun: containers need root here (mount and pid namespaces need CAP_SYS_ADMIN); run the tests as root"
	}
	return ""
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

func (s *Sandbox) makeKeepDir(icfg *isolate.Config) error {
	dir, err := os.MkdirTemp("", "isorun-keep-")
	if err != nil {
		return err
	}
	s.keepDir = dir
	icfg.Upper, icfg.Work = filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, d := range []string{icfg.Upper, icfg.Work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

func (s *Sandbox) removeKeepDir() {
	if s.keepDir != "" {
		overlay.Remove(s.keepDir)
	}
}

func (s *Sandbox) timeout() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return
	}
	s.history = append(s.history, fmt.Sprintf("timeout after %v: container killed", s.cfg.timeout))
	s.c.Close()
	s.t.Errorf("harness: container %s on %q: killed after WithTimeout(%v)", s.c.ID(), s.img.Ref(), s.cfg.timeout)
}

func (s *Sandbox) cleanup() {
	s.mu.Lock()
	s.finished = true
	if s.timer != nil {
		s.timer.Stop()
	}
	history := s.history
	s.mu.Unlock()
	if s.t.Failed() && len(history) > 0 {
		s.t.Logf("harness: container %s on %q ran:\n  %s", s.c.ID(), s.img.Ref(), strings.Join(history, "\n  "))
	}
	s.c.Release()
	if s.keepDir != "" {
		log := filepath.Join(s.keepDir, "commands.log")
		os.WriteFile(log, []byte(strings.Join(history, "\n")+"\n"), 0o644)
		s.t.Logf("harness: ISORUN_KEEP: container %s kept its upper layer in %s/upper and its command log in %s", s.c.ID(), s.keepDir, log)
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
func (s *Sandbox) Command(name string, arg ...string) *Cmd {
	cmd := s.c.Command(name, arg...)
	cmd.Env = append([]string(nil), s.env...)
	cmd.UID, cmd.GID, cmd.Groups = s.uid, s.gid, s.groups
	return cmd
}

// CommandContext is Command whose process group is killed when ctx is done.
func (s *Sandbox) CommandContext(ctx context.Context, name string, arg ...string) *Cmd {
	cmd := s.c.CommandContext(ctx, name, arg...)
	cmd.Env = append([]string(nil), s.env...)
	cmd.UID, cmd.GID, cmd.Groups = s.uid, s.gid, s.groups
	return cmd
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
	s.record(cmd.Args, r)
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
	ch, err := s.diff()
	if err != nil {
		s.t.Fatalf("harness: container %s: %v", s.c.ID(), err)
	}
	return ch
}

func (s *Sandbox) diff() (overlay.Changes, error) {
	ch, err := overlay.Diff(s.c.Upper(), s.c.Lowers())
	if err != nil {
		return nil, err
	}
	created := map[string]bool{}
	for _, p := range s.c.Created() {
		created[p] = true
	}
	return ch.Filter(func(c overlay.Change) bool { return !(c.Kind == overlay.Added && created[c.Path]) }), nil
}

// Commit returns the container's filesystem as it is now as a new image (the base image's
// layers plus a copy of the upper layer), usable by Container until the test process exits.
// Commit while no command is writing.
func (s *Sandbox) Commit() fixtures.Image {
	s.t.Helper()
	img, err := fixtures.Commit(s.img, s.c.Upper())
	if err != nil {
		s.t.Fatalf("harness: container %s: %v", s.c.ID(), err)
	}
	return img
}

// WriteLayer writes the container's changes as an OCI image layer (a tar with .wh. whiteouts),
// for shipping the diff elsewhere.
func (s *Sandbox) WriteLayer(w io.Writer) error {
	ch, err := s.diff()
	if err != nil {
		return err
	}
	return overlay.WriteLayer(w, s.c.Upper(), ch)
}

// Container is the underlying isolate container, for what the harness does not wrap.
func (s *Sandbox) Container() *isolate.Container { return s.c }
