package script_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/isorun/isorun/harness"
	"github.com/isorun/isorun/harness/script"
)

// TestMain gives the tests an image cache of their own, so that the images the scenarios build
// and commit do not pile up in the user's cache, unless ISORUN_CACHE names one.
func TestMain(m *testing.M) {
	if os.Getenv("ISORUN_CACHE") != "" {
		harness.Main(m)
	}
	dir, err := os.MkdirTemp("", "isorun-script-test-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("ISORUN_CACHE", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// skipUnlessContainers skips where containers can't run, or fails with ISORUN_REQUIRE=1.
func skipUnlessContainers(t *testing.T) {
	t.Helper()
	if err := harness.Supported(); err != nil {
		if os.Getenv("ISORUN_REQUIRE") == "1" {
			t.Fatalf("%v (ISORUN_REQUIRE=1)", err)
		}
		t.Skip(err)
	}
}

// TestScenarios runs the repository's scenarios, testdata/scripts/*.txtar at the module root:
// go test ./harness/script -run TestScenarios/NAME runs one.
func TestScenarios(t *testing.T) {
	skipUnlessContainers(t)
	testscript.Run(t, script.Params("../../testdata/scripts"))
}

// TestFailures runs scripts that must fail and checks what they say.
func TestFailures(t *testing.T) {
	skipUnlessContainers(t)
	tests := []struct {
		name, script, want string
	}{
		{"cexec usage", "container c\ncexec c", "usage: cexec NAME CMD [ARG...]"},
		{"cexec usage background", "cexec c &", "usage: cexec NAME CMD [ARG...]"},
		{"container usage", "container", "usage: container NAME [IMAGE]"},
		{"container too many", "container a busybox extra", "usage: container NAME [IMAGE]"},
		{"container bad flag", "container -x a", "container: flag provided but not defined: -x"},
		{"container bad env", "container -e NOEQUALS a", `container: -e "NOEQUALS": want KEY=VAL`},
		{"cdiff usage", "cdiff", "usage: cdiff NAME"},
		{"cput usage", "cput c a", "usage: cput NAME SRC DST"},
		{"cget usage", "cget c a", "usage: cget NAME SRC DST"},
		{"cfile usage", "cfile c a", "usage: cfile NAME PATH FILE"},
		{"cexists usage", "cexists c", "usage: cexists NAME PATH..."},
		{"ccommit usage", "ccommit c", "usage: ccommit NAME IMAGENAME"},
		{"csave usage", "csave x", "usage: csave IMAGE FILE"},
		{"cstop usage", "cstop", "usage: cstop NAME"},
		{"cstatus usage", "cstatus x", `cstatus: "x" is not a number`},
		{"cstatus none", "cstatus 0", "cstatus: no status to check: no cexec has ended yet"},
		{"cstatus several", "container c\ncexec c true &\ncexec c true &\ncwait\ncstatus 0", "or the last cwait waited for several"},
		{"ckill signal", "ckill -FOO", `ckill: unknown signal "-FOO"`},
		{"cwait unknown", "cwait nope", `cwait: no background command "nope"`},
		{"no container", "cexec nope true", `no container "nope" (start one with: container nope [IMAGE])`},
		{"no such container", "container a\ncdiff b", `no container "b" (have: a)`},
		{"duplicate", "container a\ncontainer a", `container "a" already exists`},
		{"failure", "container c\ncexec c false", "unexpected command failure"},
		{"success", "container c\n! cexec c true", "unexpected command success"},
		{"started", "container c\n! container d", "container d: unexpected success: it started"},
		{"status", "container c\n! cexec c sh -c 'exit 4'\ncstatus 3", "cstatus: exit status 4, want 3"},
		{"background failure", "container c\ncexec c false &\ncwait", "cexec c false: unexpected command failure"},
		{"background success", "container c\n! cexec c true &b&\ncwait b", "cexec c true: unexpected command success"},
		{"cfile missing", "container c\ncfile c /etc/nothing x\n-- x --\nx\n", "cfile: open /etc/nothing: no such file or directory"},
		{"cfile diff", "container c\ncexec c sh -c 'echo a > /f'\ncfile c /f x\n-- x --\nb\n", "-a\n+b"},
		{"cexists", "container c\ncexists c /nope", "/nope does not exist in container c"},
		{"not cexists", "container c\n! cexists c /bin", "/bin unexpectedly exists in container c"},
		{"condition", "[nope] stop", `unknown condition "nope"`},
		{"stopped", "container c\ncstop c\ncexec c true", "cexec c: isolate: container is closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, failed := runScript(t, tt.script)
			if !failed {
				t.Fatalf("script passed; want a failure saying %q\n%s", tt.want, log)
			}
			if !strings.Contains(log, tt.want) {
				t.Fatalf("log does not say %q:\n%s", tt.want, log)
			}
		})
	}
}

// runScript runs one script outside the testing package's control (a failure must not fail
// this test) and returns its log and whether it failed.
func runScript(t *testing.T, text string) (string, bool) {
	file := filepath.Join(t.TempDir(), "s.txtar")
	if err := os.WriteFile(file, []byte(text), 0o666); err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	p := script.Params("")
	p.Dir, p.Files = "", []string{file}
	testscript.RunT(r, p)
	return r.log.String(), r.failed
}

// recorder is a testscript.T that records instead of failing.
type recorder struct {
	mu     sync.Mutex
	log    strings.Builder
	failed bool
}

type stop struct{}

func (r *recorder) Skip(a ...any)  { panic(stop{}) }
func (r *recorder) Fatal(a ...any) { r.Log(a...); r.FailNow() }
func (r *recorder) Parallel()      {}
func (r *recorder) Log(a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintln(&r.log, a...)
}
func (r *recorder) FailNow() {
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
	panic(stop{})
}
func (r *recorder) Verbose() bool { return false }
func (r *recorder) Run(name string, f func(testscript.T)) {
	defer func() {
		if e := recover(); e != nil {
			if _, ok := e.(stop); !ok {
				panic(e)
			}
		}
	}()
	f(r)
}
