package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/isorun/isorun/harness"
	"github.com/isorun/isorun/harness/script"
	"github.com/isorun/isorun/overlay"
)

// TestMain makes this test binary the isorun command too (testscript puts a copy on PATH as
// "isorun" while the tests run, and runs isorun when started under that name), and gives the
// tests an image cache of their own so that image ls, rm and gc never touch the user's.
func TestMain(m *testing.M) {
	testscript.Main(withCache{m}, map[string]func(){
		"isorun": func() { os.Exit(isorun(os.Args[1:])) },
	})
}

type withCache struct{ m *testing.M }

func (w withCache) Run() int {
	if os.Getenv("ISORUN_CACHE") != "" {
		return w.m.Run()
	}
	dir, err := os.MkdirTemp("", "isorun-cli-test-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Setenv("ISORUN_CACHE", dir)
	defer os.Unsetenv("ISORUN_CACHE")
	return w.m.Run()
}

func skipUnlessContainers(t *testing.T) {
	t.Helper()
	if err := harness.Supported(); err != nil {
		if os.Getenv("ISORUN_REQUIRE") == "1" {
			t.Fatalf("%v (ISORUN_REQUIRE=1)", err)
		}
		t.Skip(err)
	}
}

// TestCLI drives the isorun command through testdata/script/*.txtar.
func TestCLI(t *testing.T) {
	p := script.Params("testdata/script")
	testscript.Run(t, p)
}

// isorunCmd is the isorun command as the tests run it: this test binary, on PATH as isorun.
func isorunCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	path, err := exec.LookPath("isorun")
	if err != nil {
		t.Fatalf("isorun is not on PATH (testscript.Main puts it there): %v", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = t.TempDir()
	return cmd
}

// TestJSON parses --json back into overlay.Changes.
func TestJSON(t *testing.T) {
	skipUnlessContainers(t)
	cmd := isorunCmd(t, "run", "--image", "busybox", "--json", "--", "sh", "-c",
		"echo hi > /greeting; echo x >> /etc/hosts; rm /bin/ls; rm -rf /home; mkdir -p '/a b/c'")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, stderr.String())
	}
	var got overlay.Changes
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("--json output %q: %v", out, err)
	}
	want := overlay.Changes{
		{Kind: overlay.Added, Path: "/a b"},
		{Kind: overlay.Added, Path: "/a b/c"},
		{Kind: overlay.Deleted, Path: "/bin/ls"},
		{Kind: overlay.Modified, Path: "/etc/hosts"},
		{Kind: overlay.Added, Path: "/greeting"},
		{Kind: overlay.Deleted, Path: "/home"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("--json = %s\nparsed: %v\nwant:   %v", out, got, want)
	}
	// Every entry has exactly the contract's two keys.
	var raw []map[string]string
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	for _, r := range raw {
		if len(r) != 2 || r["kind"] == "" || r["path"] == "" {
			t.Fatalf("entry %v: want {\"kind\":..., \"path\":...}", r)
		}
	}
}

// TestInteractiveTTY types into `isorun run -i -t ... sh` through a pty, as a person at a
// terminal would: the container's terminal has the local window size and follows a resize,
// and the diff comes after the session.
func TestInteractiveTTY(t *testing.T) {
	skipUnlessContainers(t)
	cmd := isorunCmd(t, "run", "-i", "-t", "--image", "busybox", "--diff", "--", "sh")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 132})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	out := &lockedBuffer{}
	copied := make(chan struct{})
	go func() {
		io.Copy(out, ptmx) // ends with EIO once isorun exits
		close(copied)
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer cmd.Process.Kill()

	io.WriteString(ptmx, "[ -t 0 ] && [ -t 1 ] && echo on-a-tty; stty size\r")
	out.waitFor(t, "\n40 132\r\n")
	// A resize of the local terminal (SIGWINCH to isorun) reaches the container's.
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 50, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "\n50 100\r\n") && time.Now().Before(deadline) {
		io.WriteString(ptmx, "stty size\r")
		time.Sleep(100 * time.Millisecond)
	}
	out.waitFor(t, "\n50 100\r\n")
	io.WriteString(ptmx, "echo hi > /x; exit\r")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("isorun: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the session did not end\n%s", out.String())
	}
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	got := strings.ReplaceAll(out.String(), "\r\n", "\n")
	for _, want := range []string{"\non-a-tty\n", "\nA /x\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("session output lacks %q:\n%s", want, got)
		}
	}
	if i, j := strings.LastIndex(got, "exit"), strings.LastIndex(got, "A /x"); i > j {
		t.Errorf("the diff came before the end of the session:\n%s", got)
	}
}

// lockedBuffer collects output written by one goroutine and read by another.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(l.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output after 20s:\n%s", s, l.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestImportProgress: on a terminal, image import shows progress on stderr; piped, nothing
// (the testscript image_cache.txtar checks the piped case too).
func TestImportProgress(t *testing.T) {
	skipUnlessContainers(t)
	dir := t.TempDir()
	archive := filepath.Join(dir, "big.tar")
	// A root filesystem tar big enough to take a few progress ticks.
	if out, err := isorunCmd(t, "run", "--image", "busybox", "-v", dir+":/out", "--",
		"sh", "-c", "mkdir /big && for i in $(seq 400); do head -c 262144 /dev/urandom > /big/$i; done && tar -cf /out/big.tar /big /bin").CombinedOutput(); err != nil {
		t.Fatalf("making the archive: %v\n%s", err, out)
	}

	cmd := isorunCmd(t, "image", "import", archive)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var term bytes.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&term, ptmx); close(copied) }()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("image import: %v\n%s", err, term.String())
	}
	<-copied
	if !strings.Contains(term.String(), "importing "+archive+": ") || !strings.Contains(term.String(), "% of ") {
		t.Errorf("no progress on the terminal; it showed %q", term.String())
	}
	if !strings.HasSuffix(term.String(), "\r\033[K") {
		t.Errorf("the progress line was not cleared at the end: %q", term.String())
	}
	if !strings.HasPrefix(stdout.String(), "sha256:") {
		t.Errorf("stdout = %q; want the digest", stdout.String())
	}

	// Piped (and warm now), nothing on stderr.
	cmd = isorunCmd(t, "image", "import", archive)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("piped import: %v, stderr %q; want no error and no output", err, stderr.String())
	}
}

// TestScenariosThroughBuiltBinary builds the real isorun and runs the repository's scenarios
// with it: `isorun script testdata/scripts/*.txtar` passes as `go test` does.
func TestScenariosThroughBuiltBinary(t *testing.T) {
	skipUnlessContainers(t)
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build isorun with")
	}
	bin := filepath.Join(t.TempDir(), "isorun")
	build := exec.Command(gobin, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	files, err := filepath.Glob("../../testdata/scripts/*.txtar")
	if err != nil || len(files) < 12 {
		t.Fatalf("scenarios: %v, %v; want at least 12", files, err)
	}
	cmd := exec.Command(bin, append([]string{"script"}, files...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("isorun script: %v\n%s", err, out)
	}
	// As root nothing skips. Rootless, what skips says why, naming the rootless limitation
	// (another user, the host image) or the missing delegated cgroup.
	skips := regexp.MustCompile(`(?m)^--- SKIP: (\S+) .*\n    (.*)$`).FindAllStringSubmatch(string(out), -1)
	for _, m := range skips {
		if !harness.Rootless() || !strings.Contains(m[2], "rootless: ") && !strings.Contains(m[2], "resource limits need root, or write access to a delegated cgroup") {
			t.Errorf("scenario %s skipped (rootless: %v): %s", m[1], harness.Rootless(), m[2])
		}
	}
	if want := fmt.Sprintf("PASS: %d scenarios (%d skipped)", len(files), len(skips)); !strings.Contains(string(out), want) {
		t.Fatalf("isorun script output lacks %q:\n%s", want, out)
	}
}

func TestExpandShort(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"it", []string{"-it", "sh"}, []string{"-i", "-t", "sh"}},
		{"ti", []string{"-ti", "--image", "busybox", "sh"}, []string{"-i", "-t", "--image", "busybox", "sh"}},
		{"value not split", []string{"-e", "-it", "-it", "sh"}, []string{"-e", "-it", "-i", "-t", "sh"}},
		{"after the command", []string{"sh", "-it"}, []string{"sh", "-it"}},
		{"after --", []string{"--", "-it"}, []string{"--", "-it"}},
		{"equals form", []string{"--image=-it", "-it", "x"}, []string{"--image=-it", "-i", "-t", "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := expandShort(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("expandShort(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}
