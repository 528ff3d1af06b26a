package harness_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/isorun/isorun/fixtures"
	"github.com/isorun/isorun/harness"
)

// The examples are test bodies: in a test file, write what is inside test(func(t testing.TB)
// { ... }) in a func TestX(t *testing.T). The harness needs root on Linux; these examples run
// (and check their output) where the package's tests do.

// A first container: start busybox, change its filesystem, look at the diff.
func Example() {
	test(func(t testing.TB) {
		sb := harness.Container(t, fixtures.Busybox())
		sb.MustRun("sh", "-c", "echo hello > /greeting && rm /bin/ls")

		fmt.Print(sb.Diff())
		harness.AssertDiff(t, sb.Diff(), "A /greeting", "D /bin/ls")
	})
	// Output:
	// D /bin/ls
	// A /greeting
}

// Run never fails the test: it reports what happened, and the test decides.
func ExampleSandbox_Run() {
	test(func(t testing.TB) {
		sb := harness.Container(t, fixtures.Busybox())

		r := sb.Run("sh", "-c", "echo to stdout; echo to stderr >&2; exit 3")
		fmt.Printf("exit %d, stdout %q, stderr %q\n", r.ExitCode, r.Stdout, r.Stderr)

		r = sb.Run("no-such-command")
		fmt.Println(r.ExitCode, r.Stderr)

		r = sb.Run("sh", "-c", "kill -KILL $$")
		fmt.Println(r.ExitCode, r.Err)
	})
	// Output:
	// exit 3, stdout "to stdout\n", stderr "to stderr\n"
	// 127 isolate: exec "no-such-command": executable file not found in $PATH
	//
	// 137 signal: killed
}

// Command is os/exec's Cmd for a container: stdin, stdout and stderr can be any reader and
// writer, or files passed to the command as they are.
func ExampleSandbox_Command() {
	test(func(t testing.TB) {
		sb := harness.Container(t, fixtures.Busybox())

		cmd := sb.Command("sort")
		cmd.Stdin = strings.NewReader("pear\napple\nfig\n")
		cmd.Stdout = os.Stdout
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
	})
	// Output:
	// apple
	// fig
	// pear
}

// A volume shares a host directory with the container. Its content is not part of the diff.
func ExampleWithVolume() {
	test(func(t testing.TB) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "input.txt"), []byte("41\n"), 0o644)

		sb := harness.Container(t, fixtures.Busybox(), harness.WithVolume(dir, "/work", false))
		sb.MustRun("sh", "-c", "expr $(cat /work/input.txt) + 1 > /work/output.txt")

		out, _ := os.ReadFile(filepath.Join(dir, "output.txt"))
		fmt.Printf("output: %s", out)
		fmt.Printf("diff: %q\n", sb.Diff().String())
	})
	// Output:
	// output: 42
	// diff: ""
}

// Commit turns a container's filesystem into an image: set up once, then start as many
// containers on it as there are cases.
func ExampleSandbox_Commit() {
	test(func(t testing.TB) {
		setup := harness.Container(t, fixtures.Busybox())
		setup.MustRun("sh", "-c", "mkdir -p /etc/app && echo 'debug = false' > /etc/app/config")
		configured := setup.Commit()

		for _, debug := range []string{"false", "true"} {
			sb := harness.Container(t, configured)
			sb.MustRun("sed", "-i", "s/= false/= "+debug+"/", "/etc/app/config")
			fmt.Printf("debug=%s: %q\n", debug, sb.Diff().String())
		}
	})
	// Output:
	// debug=false: ""
	// debug=true: "C /etc/app/config\n"
}

// The Host image runs the host's own programs over its own files, with every change kept in
// the container.
func ExampleContainer_host() {
	test(func(t testing.TB) {
		sb := harness.Container(t, fixtures.Host())
		sb.MustRun("sh", "-c", "echo '127.0.0.2 isorun.example' >> /etc/hosts")

		fmt.Print(sb.Diff())
		hosts, _ := os.ReadFile("/etc/hosts")
		fmt.Println("on the host:", strings.Contains(string(hosts), "isorun.example"))
	})
	// Output:
	// C /etc/hosts
	// on the host: false
}

// Diff assertions report every difference at once; Ignoring leaves out noise.
func ExampleAssertDiff() {
	test(func(t testing.TB) {
		sb := harness.Container(t, fixtures.Busybox())
		sb.MustRun("sh", "-c", `
			mkdir -p /etc/app && echo 'port = 8080' > /etc/app/config
			echo 'app:x:999:999::/:/bin/false' >> /etc/passwd
			echo scratch > /tmp/install.log`)

		ok := harness.Ignoring("/tmp/**").AssertDiff(t, sb.Diff(), `
			A /etc/app
			A /etc/app/config
			C /etc/passwd
		`)
		fmt.Println("exact:", ok)

		ok = harness.AssertDiffIncludes(t, sb.Diff(), "C /etc/passwd")
		fmt.Println("includes:", ok)

		ok = sb.AssertFile("/etc/app/config", "port = 8080\n")
		fmt.Println("file:", ok)
	})
	// Output:
	// exact: true
	// includes: true
	// file: true
}

// A golden file holds the expected diff: testdata/example-motd.diff here. Run the tests with
// -update to write it from the diff.
func ExampleAssertDiffGolden() {
	test(func(t testing.TB) {
		sb := harness.Container(t, fixtures.Busybox())
		sb.MustRun("sh", "-c", "echo 'Welcome' > /etc/motd && rm /bin/ls /bin/cp")

		fmt.Println(harness.AssertDiffGolden(t, sb.Diff(), "example-motd"))
	})
	// Output:
	// true
}

// test runs body as the body of a test, with a stand-in for the *testing.T that examples do
// not get: failures print (so the example's output shows them), cleanups run at the end.
func test(body func(t testing.TB)) {
	t := &exampleT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer t.cleanup()
		body(t)
	}()
	<-done
}

// exampleT is the testing.TB of an example. The embedded interface is nil: a method the
// harness started needing and exampleT lacks panics, which the examples then show.
type exampleT struct {
	testing.TB

	mu       sync.Mutex
	failed   bool
	cleanups []func()
}

func (t *exampleT) Helper()      {}
func (t *exampleT) Name() string { return "Example" }

func (t *exampleT) Errorf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
	fmt.Printf("FAIL: "+format+"\n", args...)
}

func (t *exampleT) Error(args ...any)                 { t.Errorf("%s", fmt.Sprint(args...)) }
func (t *exampleT) Fatalf(format string, args ...any) { t.Errorf(format, args...); t.FailNow() }
func (t *exampleT) Fatal(args ...any)                 { t.Error(args...); t.FailNow() }
func (t *exampleT) FailNow()                          { t.Fail(); runtime.Goexit() }
func (t *exampleT) Logf(format string, args ...any)   { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (t *exampleT) Log(args ...any)                   { fmt.Fprintln(os.Stderr, args...) }

func (t *exampleT) Skip(args ...any) {
	fmt.Printf("SKIP: %s\n", fmt.Sprint(args...))
	runtime.Goexit()
}

func (t *exampleT) Fail() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
}

func (t *exampleT) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *exampleT) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *exampleT) TempDir() string {
	dir, err := os.MkdirTemp("", "example-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (t *exampleT) cleanup() {
	for {
		t.mu.Lock()
		if len(t.cleanups) == 0 {
			t.mu.Unlock()
			return
		}
		f := t.cleanups[len(t.cleanups)-1]
		t.cleanups = t.cleanups[:len(t.cleanups)-1]
		t.mu.Unlock()
		f()
	}
}
