package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/isorun/isorun/harness/script"
)

const scriptHelp = `Usage: isorun script [OPTIONS] FILE.txtar...

Run testscript scenarios, as 'go test' does with harness/script, outside 'go test': the
testscript language (exec, stdout, cmp, ...) plus the container commands container, cexec,
cwait, ckill, cstatus, cdiff, cput, cget, cfile, cexists, ccommit, csave and cstop, and the
conditions [containers], [root], [userns] and [overlay] (see 'go doc
github.com/isorun/isorun/harness/script'). Each scenario runs in a fresh work directory
($WORK); its containers end with it.

Prints one line per scenario, and the log of each that failed (of each, with -v). Exits 0
when all passed or were skipped, 1 when any failed, 125 on isorun's own errors.

Examples:
  isorun script testdata/scripts/*.txtar
  isorun script -v testdata/scripts/volumes_rw.txtar
  isorun script -work failing.txtar        # keep $WORK to look at afterwards
`

func cmdScript(args []string) int {
	fs := newFlags("script")
	verbose := fs.Bool("v", false, "print every scenario's log, not only the failures'")
	work := fs.Bool("work", false, "keep each scenario's work directory and print where it is")
	cont := fs.Bool("continue", false, "keep running a scenario after a failed command")
	if code, done := parseFlags(fs, args, scriptHelp); done {
		return code
	}
	files := fs.Args()
	if len(files) == 0 {
		return fail(errors.New("script: no scenario files given (usage: isorun script FILE.txtar...)"))
	}
	for _, f := range files {
		info, err := os.Stat(f)
		if err != nil {
			return fail(fmt.Errorf("script: %w", err))
		}
		if info.IsDir() {
			return fail(fmt.Errorf("script: %s is a directory; name the files (%s/*.txtar)", f, strings.TrimSuffix(f, "/")))
		}
	}
	p := script.Params("")
	p.Dir, p.Files = "", files
	p.TestWork = *work
	p.ContinueOnError = *cont
	r := &scriptRunner{verbose: *verbose}
	if !r.runAll(p) {
		return fail(errors.New("script: " + strings.TrimSpace(r.log.String())))
	}
	if r.failed > 0 {
		fmt.Printf("FAIL: %d of %d scenarios failed\n", r.failed, r.ran)
		return 1
	}
	fmt.Printf("PASS: %d scenarios (%d skipped)\n", r.ran, r.skipped)
	return 0
}

// scriptRunner is the testscript.T that runs scenarios outside `go test`, as testscript's
// own command does: FailNow and Skip unwind the scenario with a panic that Run recovers.
// Scenarios run one after the other.
type scriptRunner struct {
	verbose bool

	mu      sync.Mutex
	log     strings.Builder
	failed  int // scenarios (top level), or 1 when this one failed
	ran     int
	skipped int
	skip    bool
}

type (
	failNow struct{}
	skipNow struct{}
)

func (r *scriptRunner) Skip(a ...any) {
	r.Log(a...)
	r.mu.Lock()
	r.skip = true
	r.mu.Unlock()
	panic(skipNow{})
}
func (r *scriptRunner) Fatal(a ...any) { r.Log(a...); r.FailNow() }
func (r *scriptRunner) Parallel()      {}
func (r *scriptRunner) Verbose() bool  { return r.verbose }
func (r *scriptRunner) Log(a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	msg := fmt.Sprint(a...)
	r.log.WriteString(msg)
	if !strings.HasSuffix(msg, "\n") {
		r.log.WriteByte('\n')
	}
}
func (r *scriptRunner) FailNow() {
	r.mu.Lock()
	r.failed = 1
	r.mu.Unlock()
	panic(failNow{})
}

// runAll runs every scenario; it returns false when testscript itself failed before running
// any (its reason is in the log).
func (r *scriptRunner) runAll(p testscript.Params) (ok bool) {
	defer func() {
		if e := recover(); e != nil {
			if _, isFail := e.(failNow); !isFail {
				panic(e)
			}
			ok = false
		}
	}()
	testscript.RunT(r, p)
	return true
}

func (r *scriptRunner) Run(name string, f func(testscript.T)) {
	child := &scriptRunner{verbose: r.verbose}
	start := time.Now()
	func() {
		defer func() {
			if e := recover(); e != nil {
				switch e.(type) {
				case failNow, skipNow:
				default:
					panic(e)
				}
			}
		}()
		f(child)
	}()
	status := "PASS"
	switch {
	case child.failed > 0:
		status = "FAIL"
	case child.skip:
		status = "SKIP"
	}
	r.ran++
	if status == "FAIL" {
		r.failed++
	}
	if status == "SKIP" {
		r.skipped++
	}
	fmt.Printf("--- %s: %s (%.2fs)\n", status, name, time.Since(start).Seconds())
	lines := strings.Split(strings.TrimRight(child.log.String(), "\n"), "\n")
	switch {
	case status == "FAIL" || r.verbose:
		for _, line := range lines {
			fmt.Printf("    %s\n", line)
		}
	case status == "SKIP":
		// Why: the skip command, the log's last line.
		fmt.Printf("    %s\n", strings.TrimSpace(lines[len(lines)-1]))
	}
}
