package isolate

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExitState is how a finished command ended.
type ExitState struct {
	ws unix.WaitStatus
	// Set from the container's cgroup (Config.Resources) when the command ended.
	oomKilled, pidsLimited bool
}

// ExitCode is the command's exit status, or 128+N when signal N killed it (as a shell reports it).
func (s *ExitState) ExitCode() int {
	switch {
	case s.ws.Exited():
		return s.ws.ExitStatus()
	case s.ws.Signaled():
		return 128 + int(s.ws.Signal())
	}
	return -1
}

// Signaled says whether a signal killed the command, and which.
func (s *ExitState) Signaled() (syscall.Signal, bool) {
	return s.ws.Signal(), s.ws.Signaled()
}

// Success reports whether the command exited with status 0.
func (s *ExitState) Success() bool { return s.ws.Exited() && s.ws.ExitStatus() == 0 }

// OOMKilled says whether the command died (exit code 137) because the container reached its
// memory limit: the OOM killer killed it, or, for a shell reporting 137, one of its children,
// while it ran. Only a container with Config.Resources can tell; see Container.Stats.
func (s *ExitState) OOMKilled() bool { return s.oomKilled }

// PidsLimited says whether the container's pids limit refused a fork while the command ran
// (its own or another process's in the container).
func (s *ExitState) PidsLimited() bool { return s.pidsLimited }

func (s *ExitState) String() string {
	why := ""
	if s.oomKilled {
		why = " (out of memory: OOM-killed at the container's memory limit)"
	} else if s.pidsLimited {
		why = " (the container's pids limit refused a fork)"
	}
	if sig, ok := s.Signaled(); ok {
		return "signal: " + sig.String() + why
	}
	return "exit status " + strconv.Itoa(s.ExitCode()) + why
}

// ExitError is returned by Wait and Run when the command ran and did not exit with 0.
type ExitError struct {
	*ExitState
	// Stderr holds the command's standard error when Output collected it.
	Stderr []byte
}

func (e *ExitError) Error() string { return e.ExitState.String() }

// Error is a command that could not be started: not found, not executable, a bad working
// directory. ExitCode gives what a shell would: 127 not found, 126 found but not runnable.
type Error struct {
	Name string // the command, as given
	Op   string // "exec", "chdir", ...
	Path string // what failed: the path tried, the directory
	Err  error
}

// ErrNotFound is the Err of an Error when the command is not in the container's PATH.
var ErrNotFound = errors.New("executable file not found in $PATH")

func (e *Error) Error() string {
	if e.Op == "exec" && errors.Is(e.Err, ErrNotFound) {
		return fmt.Sprintf("isolate: exec %q: %v", e.Name, e.Err)
	}
	if e.Path != "" && e.Path != e.Name {
		return fmt.Sprintf("isolate: %s %q: %s: %v", e.Op, e.Name, e.Path, e.Err)
	}
	return fmt.Sprintf("isolate: %s %q: %v", e.Op, e.Name, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ExitCode is 127 for a command that does not exist and 126 for one that cannot run.
func (e *Error) ExitCode() int {
	if errors.Is(e.Err, ErrNotFound) || errors.Is(e.Err, syscall.ENOENT) || errors.Is(e.Err, syscall.ENOTDIR) {
		return 127
	}
	return 126
}
