package harness

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// fakeT is a testing.TB that records what the harness reports, for checking messages and
// failure behaviour. The embedded testing.TB is nil: a method the fake lacks panics, which says
// the harness started needing it.
type fakeT struct {
	testing.TB

	mu       sync.Mutex
	errors   []string
	logs     []string
	failed   bool
	fatal    bool // FailNow was called
	skipped  string
	cleanups []func()
	tempDirs []string
}

// runFake runs body as a test would run on a fake T: on its own goroutine, so that FailNow and
// Skip can end it with runtime.Goexit, then runs the cleanups in reverse order.
func runFake(body func(t *fakeT)) *fakeT {
	f := &fakeT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.runCleanups()
		body(f)
	}()
	<-done
	return f
}

func (f *fakeT) runCleanups() {
	for {
		f.mu.Lock()
		if len(f.cleanups) == 0 {
			f.mu.Unlock()
			return
		}
		fn := f.cleanups[len(f.cleanups)-1]
		f.cleanups = f.cleanups[:len(f.cleanups)-1]
		f.mu.Unlock()
		fn()
	}
}

func (f *fakeT) Helper()      {}
func (f *fakeT) Name() string { return "FakeTest" }

func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
	f.failed = true
}

func (f *fakeT) Error(args ...any) { f.Errorf("%s", fmt.Sprintln(args...)) }

func (f *fakeT) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	f.FailNow()
}

func (f *fakeT) Fatal(args ...any) {
	f.Error(args...)
	f.FailNow()
}

func (f *fakeT) Fail() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = true
}

func (f *fakeT) FailNow() {
	f.mu.Lock()
	f.failed, f.fatal = true, true
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeT) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

func (f *fakeT) Logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}

func (f *fakeT) Log(args ...any) { f.Logf("%s", fmt.Sprintln(args...)) }

func (f *fakeT) Skip(args ...any) {
	f.mu.Lock()
	f.skipped = fmt.Sprint(args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeT) Skipf(format string, args ...any) { f.Skip(fmt.Sprintf(format, args...)) }

func (f *fakeT) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *fakeT) TempDir() string {
	d, err := os.MkdirTemp("", "fake-")
	if err != nil {
		panic(err)
	}
	f.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// report is everything the fake recorded, for the failure message of the real test.
func (f *fakeT) report() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprintf("errors:\n%s\nlogs:\n%s", strings.Join(f.errors, "\n---\n"), strings.Join(f.logs, "\n---\n"))
}

func (f *fakeT) errorText() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.errors, "\n")
}
