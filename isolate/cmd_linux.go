package isolate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Cmd is a command to run in a container, shaped like os/exec.Cmd: set the fields, then Run, or
// Start and Wait. Its argv is passed as is (never joined into a shell string).
type Cmd struct {
	// Args holds the command line, Args[0] the command: a path inside the container, or a name
	// looked up in the PATH of Env.
	Args []string
	// Env is the command's environment; nil means the container's default (Config.Env). PATH
	// and HOME are added when missing.
	Env []string
	// Dir is the working directory inside the container; empty means Config.Dir, then "/".
	Dir string
	// Stdin, Stdout and Stderr work as in os/exec: nil is the container's /dev/null, an *os.File
	// is passed to the command directly, anything else is copied through a pipe.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// UID and GID to run as (0: root); Groups are supplementary groups.
	UID, GID uint32
	Groups   []uint32
	// TTY makes Stdin the command's controlling terminal (it must be a terminal): for the CLI's -t.
	TTY bool
	// WaitDelay, as in os/exec, bounds how long Wait waits for the command's output pipes to close
	// once it has exited (a background child may hold them). Zero waits for them.
	WaitDelay time.Duration

	// Pid is the command's pid inside the container, once Start has returned (Run, Output and
	// CombinedOutput do not wait to learn it).
	Pid int

	c      *Container
	ctx    context.Context
	id     string
	events chan event
	status *ExitState
	closes []io.Closer // our ends of pipes, closed after Wait
	outs   []*os.File  // our read ends of the output pipes (also in closes)
	after  []io.Closer // child ends, closed once the init has them
	copies []func() error
	copied chan error
	done   bool
	err    error
	stopCx func() bool
	// cgroup counters when the command started, to tell why it ended (nil cgroup: unused)
	cgBefore cgroupEvents
}

type event struct {
	verb   string // started, failed, exit, gone
	pid    int
	stage  int
	errno  syscall.Errno
	what   string
	status unix.WaitStatus
}

// Command returns the Cmd to run name with arg in the container.
func (c *Container) Command(name string, arg ...string) *Cmd {
	return &Cmd{c: c, Args: append([]string{name}, arg...)}
}

// CommandContext is Command whose process group is killed when ctx is done.
func (c *Container) CommandContext(ctx context.Context, name string, arg ...string) *Cmd {
	cmd := c.Command(name, arg...)
	cmd.ctx = ctx
	return cmd
}

// Start starts the command; it returns once the command runs (or could not be run: an *Error).
func (cmd *Cmd) Start() error { return cmd.start(false) }

// start sends the command to the init. Unless quiet, it waits for the init's "started" (or
// "failed"); a quiet start (Run) returns once the request is sent, and Wait takes whichever of
// "failed" and "exit" comes: one reply and one wakeup of this process per command instead of two.
func (cmd *Cmd) start(quiet bool) error {
	if cmd.c == nil {
		return errors.New("isolate: Cmd not made by Container.Command")
	}
	if cmd.id != "" {
		return errors.New("isolate: already started")
	}
	if len(cmd.Args) == 0 || cmd.Args[0] == "" {
		return errors.New("isolate: no command")
	}
	if cmd.ctx != nil {
		if err := cmd.ctx.Err(); err != nil {
			return err
		}
	}
	c := cmd.c
	m := new(message).str("exec")
	c.mu.Lock()
	if c.dead != nil {
		c.mu.Unlock()
		return c.dead
	}
	c.seq++
	cmd.id = strconv.FormatUint(c.seq, 10)
	cmd.events = make(chan event, 2)
	c.jobs[cmd.id] = cmd
	c.mu.Unlock()

	flags, fds, err := cmd.stdio()
	if err != nil {
		cmd.abandon()
		return err
	}
	if cmd.TTY {
		flags |= execTTY
	}
	if c.cfg.Privileged {
		flags |= execPrivileged
	}
	if quiet {
		flags |= execQuiet
	}
	m.str(cmd.id).num(int64(flags)).num(int64(cmd.UID)).num(int64(cmd.GID)).num(int64(len(cmd.Groups)))
	for _, g := range cmd.Groups {
		m.num(int64(g))
	}
	dir := cmd.Dir
	if dir == "" {
		dir = c.cfg.Dir
	}
	m.str(dir).num(int64(len(cmd.Args))).strs(cmd.Args...)
	env := cmd.environ()
	m.num(int64(len(env))).strs(env...)
	m.fds = fds
	if c.cg != nil {
		cmd.cgBefore = c.cg.events()
	}
	if err := c.send(m); err != nil {
		cmd.abandon()
		if c.Err() != nil {
			return c.Err()
		}
		return fmt.Errorf("isolate: exec %q: %w", cmd.Args[0], err)
	}
	cmd.closeAll(cmd.after)
	cmd.after = nil
	if !quiet {
		ev := <-cmd.events
		switch ev.verb {
		case "started":
			cmd.Pid = ev.pid
		case "failed":
			cmd.abandon()
			return cmd.startError(ev)
		default:
			cmd.abandon()
			if err := c.Err(); err != nil {
				return err
			}
			// Never a nil error for a command that Wait cannot wait for.
			return fmt.Errorf("isolate: exec %q: the init answered %q before %q", cmd.Args[0], ev.verb, "started")
		}
	}
	cmd.copied = make(chan error, len(cmd.copies))
	for _, f := range cmd.copies {
		go func() { cmd.copied <- f() }()
	}
	if cmd.ctx != nil {
		cmd.stopCx = context.AfterFunc(cmd.ctx, func() { cmd.Signal(syscall.SIGKILL) })
	}
	return nil
}

func (cmd *Cmd) startError(ev event) error {
	e := &Error{Name: cmd.Args[0], Path: ev.what, Err: ev.errno}
	switch ev.stage {
	case stageLookup:
		e.Op = "exec"
		if ev.errno == syscall.ENOENT {
			e.Err = ErrNotFound
		}
	case stageExec:
		e.Op = "exec"
	case stageChdir:
		e.Op = "chdir"
	case stageCreds:
		e.Op = "set user"
		e.Path = fmt.Sprintf("uid %d gid %d", cmd.UID, cmd.GID)
	case stageCaps:
		e.Op = "drop capabilities"
	case stageTTY:
		e.Op = "set controlling terminal"
	case stageSeccomp:
		e.Op = "install seccomp filter"
	default:
		e.Op = "set up stdio"
	}
	if ev.stage == stageCreds && ev.errno == syscall.EINVAL && cmd.c.cfg.Rootless {
		e.Err = fmt.Errorf("%w (%s)", ev.errno, rootlessOneID)
	}
	if ev.errno == syscall.EAGAIN && cmd.c.cg != nil && cmd.c.cg.res.Pids > 0 {
		e.Err = fmt.Errorf("%w (the container is at its pids limit of %d)", ev.errno, cmd.c.cg.res.Pids)
	}
	return e
}

// environ is the command's environment, with a PATH and a HOME always (as a login would set
// HOME: the user's home in the image's /etc/passwd, "/root" for root, else "/").
func (cmd *Cmd) environ() []string {
	env := cmd.Env
	if env == nil {
		env = cmd.c.cfg.Env
	}
	hasPath, hasHome := false, false
	for _, kv := range env {
		hasPath = hasPath || strings.HasPrefix(kv, "PATH=")
		hasHome = hasHome || strings.HasPrefix(kv, "HOME=")
	}
	env = env[:len(env):len(env)]
	if !hasPath {
		env = append(env, "PATH="+DefaultPath)
	}
	if !hasHome {
		env = append(env, "HOME="+cmd.c.home(cmd.UID))
	}
	return env
}

// home is uid's home directory in the container's /etc/passwd, read through the container's
// root so that the image's symlinks resolve inside it.
func (c *Container) home(uid uint32) string {
	if uid == 0 {
		return "/root"
	}
	if c.root == nil {
		return "/"
	}
	fd, err := openat2Retry(int(c.root.Fd()), "etc/passwd", &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return "/"
	}
	f := os.NewFile(uintptr(fd), "/etc/passwd")
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return "/"
	}
	want := strconv.FormatUint(uint64(uid), 10)
	for _, line := range strings.Split(string(b), "\n") {
		// name:password:uid:gid:gecos:home:shell
		f := strings.Split(line, ":")
		if len(f) >= 7 && f[2] == want && path.IsAbs(f[5]) {
			return f[5]
		}
	}
	return "/"
}

// stdio prepares the fds passed to the init: files directly, pipes for other readers and writers.
func (cmd *Cmd) stdio() (int, []int, error) {
	flags := 0
	var fds []int
	if cmd.Stdin != nil {
		f, ok := cmd.Stdin.(*os.File)
		if !ok {
			pr, pw, err := os.Pipe()
			if err != nil {
				return 0, nil, fmt.Errorf("isolate: stdin pipe: %w", err)
			}
			f = pr
			cmd.after = append(cmd.after, pr)
			cmd.closes = append(cmd.closes, pw)
			in := cmd.Stdin
			cmd.copies = append(cmd.copies, func() error {
				_, err := io.Copy(pw, in)
				if errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed) {
					err = nil // the command stopped reading, as os/exec forgives
				}
				if cerr := pw.Close(); err == nil && cerr != nil && !errors.Is(cerr, os.ErrClosed) {
					err = cerr
				}
				return err
			})
		}
		flags |= execStdin
		fds = append(fds, int(f.Fd()))
	}
	var outFile *os.File
	for i, w := range []io.Writer{cmd.Stdout, cmd.Stderr} {
		if w == nil {
			continue
		}
		flag := execStdout << i
		if i == 1 && interfaceEqual(cmd.Stdout, cmd.Stderr) && outFile != nil {
			flags |= flag
			fds = append(fds, int(outFile.Fd()))
			continue
		}
		f, ok := w.(*os.File)
		if !ok {
			pr, pw, err := os.Pipe()
			if err != nil {
				cmd.closeAll(cmd.after)
				cmd.closeAll(cmd.closes)
				return 0, nil, fmt.Errorf("isolate: output pipe: %w", err)
			}
			f = pw
			cmd.after = append(cmd.after, pw)
			cmd.closes = append(cmd.closes, pr)
			cmd.outs = append(cmd.outs, pr)
			cmd.copies = append(cmd.copies, func() error {
				_, err := io.Copy(w, pr)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					err = drainNow(w, pr) // Wait gave up on the pipe closing: see stopCopies
				}
				pr.Close()
				if errors.Is(err, os.ErrClosed) {
					err = nil // Wait closed it (a pipe the poller does not take)
				}
				return err
			})
		}
		if i == 0 {
			outFile = f
		}
		flags |= flag
		fds = append(fds, int(f.Fd()))
	}
	return flags, fds, nil
}

func interfaceEqual(a, b any) bool {
	defer func() { recover() }()
	return a == b
}

func (cmd *Cmd) closeAll(cs []io.Closer) {
	for _, c := range cs {
		c.Close()
	}
}

func (cmd *Cmd) abandon() {
	c := cmd.c
	c.mu.Lock()
	delete(c.jobs, cmd.id)
	c.mu.Unlock()
	cmd.closeAll(cmd.after)
	cmd.closeAll(cmd.closes)
	cmd.after, cmd.closes, cmd.copies = nil, nil, nil
}

// deliver is called by the container's reader for this command's messages.
func (cmd *Cmd) deliver(ev event) { cmd.events <- ev }

// finish delivers the end of the container to a command that still waits.
func (cmd *Cmd) finish(ev event) {
	select {
	case cmd.events <- ev:
	default:
	}
}

// Signal sends sig to the command's process group (what it started in the background too).
func (cmd *Cmd) Signal(sig syscall.Signal) error {
	if cmd.id == "" {
		return errors.New("isolate: not started")
	}
	return cmd.c.send(new(message).strs("kill", cmd.id).num(int64(sig)))
}

// Wait waits for the command to exit and its output to be copied. A non-zero exit is an
// *ExitError; a container closed under it is ErrClosed (or why it ended).
func (cmd *Cmd) Wait() error {
	if cmd.id == "" {
		return errors.New("isolate: not started")
	}
	if cmd.done {
		return errors.New("isolate: Wait was already called")
	}
	cmd.done = true
	ev := <-cmd.events
	if cmd.stopCx != nil {
		cmd.stopCx()
	}
	var err error
	switch ev.verb {
	case "failed":
		// A quiet start's (Run's): the command never ran. Its pipes are closed on the other
		// side, so the copies end at once.
		err = cmd.startError(ev)
	case "exit":
		cmd.status = &ExitState{ws: ev.status}
		if cmd.c.cg != nil {
			cmd.c.cg.mark(cmd.status, cmd.cgBefore)
		}
	default:
		err = cmd.c.Err()
		if err == nil {
			err = ErrClosed
		}
		// The container's end killed the command.
		cmd.status = &ExitState{ws: unix.WaitStatus(syscall.SIGKILL)}
	}
	var timer <-chan time.Time
	if cmd.WaitDelay > 0 {
		t := time.NewTimer(cmd.WaitDelay)
		defer t.Stop()
		timer = t.C
	} else if err != nil {
		// Nothing is left to write to the pipes once the container is gone.
		timer = time.After(time.Second)
	}
	var copyErr error
	for remaining := len(cmd.copies); remaining > 0; {
		select {
		case e := <-cmd.copied:
			remaining--
			if copyErr == nil {
				copyErr = e
			}
		case <-timer:
			cmd.stopCopies()
			timer = nil
			if copyErr == nil {
				copyErr = errWaitDelay
			}
		}
	}
	cmd.closeAll(cmd.closes)
	if err != nil {
		return err
	}
	if ctxErr := cmd.ctxErr(); ctxErr != nil && !cmd.status.Success() {
		return ctxErr
	}
	if !cmd.status.Success() {
		return &ExitError{ExitState: cmd.status}
	}
	if copyErr != nil && copyErr != errWaitDelay {
		return copyErr
	}
	return nil
}

var errWaitDelay = errors.New("isolate: I/O incomplete after WaitDelay")

// stopCopies ends the copies once the command has exited and WaitDelay (or the container's end)
// has passed without its pipes closing: a background child holds them, or this process has not
// got round to reading yet. What the output pipes hold now is all that the command wrote before
// it exited (a writer blocks while a pipe is full: what it wrote is in the pipe or copied), so the
// copies take that and stop, rather than lose it as closing the pipes under them would (a busy
// machine, or a slow Writer, leaves a copy that far behind); what a background child writes later
// is cut off. Stdin is closed.
func (cmd *Cmd) stopCopies() {
	for _, c := range cmd.closes {
		if f, ok := c.(*os.File); ok && slices.Contains(cmd.outs, f) {
			if f.SetReadDeadline(time.Unix(1, 0)) == nil {
				continue // the copy's Read returns os.ErrDeadlineExceeded, then drainNow
			}
		}
		c.Close()
	}
}

// drainNow copies what f (a pipe) holds now to w, without waiting for more.
func drainNow(w io.Writer, f *os.File) error {
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	buf := make([]byte, 32<<10)
	for {
		var n int
		var rerr error
		// Returning true: one read, never a wait for the pipe to be readable.
		if err := rc.Read(func(fd uintptr) bool { n, rerr = unix.Read(int(fd), buf); return true }); err != nil {
			return err
		}
		if rerr == unix.EINTR {
			continue
		}
		if n <= 0 {
			return nil // empty now (EAGAIN), or no writer left (0)
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
	}
}

func (cmd *Cmd) ctxErr() error {
	if cmd.ctx == nil {
		return nil
	}
	return cmd.ctx.Err()
}

// State is how the command ended, after Wait.
func (cmd *Cmd) State() *ExitState { return cmd.status }

// Run starts the command and waits for it.
func (cmd *Cmd) Run() error {
	if err := cmd.start(true); err != nil {
		return err
	}
	return cmd.Wait()
}

// Output runs the command and returns its standard output; an *ExitError carries its stderr.
func (cmd *Cmd) Output() ([]byte, error) {
	if cmd.Stdout != nil {
		return nil, errors.New("isolate: Stdout already set")
	}
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	collect := cmd.Stderr == nil
	if collect {
		cmd.Stderr = &errb
	}
	err := cmd.Run()
	if ee, ok := err.(*ExitError); ok && collect {
		ee.Stderr = errb.Bytes()
	}
	return out.Bytes(), err
}

// CombinedOutput runs the command and returns its standard output and error, interleaved.
func (cmd *Cmd) CombinedOutput() ([]byte, error) {
	if cmd.Stdout != nil || cmd.Stderr != nil {
		return nil, errors.New("isolate: Stdout or Stderr already set")
	}
	var b syncBuffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.Bytes(), err
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Bytes()
}
