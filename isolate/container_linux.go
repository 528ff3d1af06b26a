package isolate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned for work asked of a container that has been closed or has died.
var ErrClosed = errors.New("isolate: container is closed")

// DefaultPath is the PATH commands get when their environment has none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// namespaces are the clone flags of every container.
const namespaces = unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET

// Container is a running container: its init (pid 1 of its own namespaces) and the overlay it
// runs on. It is safe for concurrent use.
type Container struct {
	id      string
	cfg     Config
	conn    *net.UnixConn
	pid     int // of the init, in our pid namespace
	pidfd   int
	root    *os.File // the overlay's root mount
	scratch *os.File // the tmpfs holding upper/ and work/ (nil with Config.Upper)
	created []string // mount points the setup created in the overlay

	parked      bool     // set up ahead of its Start, not taken yet: see warm_linux.go
	madeSources []string // volume directories Start created on the host, deepest first
	cg          *cgroup  // Config.Resources' cgroup (cgroup_linux.go), or nil
	closeErr    error

	wmu     sync.Mutex // one datagram at a time
	mu      sync.Mutex
	jobs    map[string]*Cmd
	seq     uint64
	dead    error // why the container ended, once it has
	done    chan struct{}
	closing sync.Once
	reaped  chan struct{} // closed once an exec'd init is reaped (spawnExec); nil for the zygote's
}

// Start starts a container and returns when it is ready to run commands. ctx bounds the start
// only. Setup errors name the step: "isolate: pivot_root: invalid argument".
func Start(ctx context.Context, cfg Config) (*Container, error) {
	if len(cfg.Lowers) == 0 {
		return nil, errors.New("isolate: start container: no image layers (Config.Lowers is empty)")
	}
	if (cfg.Upper == "") != (cfg.Work == "") {
		return nil, errors.New("isolate: start container: Config.Upper and Config.Work go together")
	}
	cfg.Rootless = cfg.Rootless || Rootless()
	key := warmKey(&cfg)
	if key == "" {
		return launch(ctx, cfg)
	}
	if c := takeWarm(ctx, key, cfg); c != nil {
		return c, nil
	}
	return launch(ctx, cfg)
}

// launch sets up a container for its caller. (Parked containers are set up by the zygote:
// warm_linux.go.)
func launch(ctx context.Context, cfg Config) (_ *Container, err error) {
	c := &Container{id: newID(), cfg: cfg, pidfd: -1, jobs: map[string]*Cmd{}, done: make(chan struct{})}
	if err := c.checkRootlessLowers(); err != nil {
		return nil, err
	}
	// A failed start leaves no trace, not even the volume directories it made on the host.
	defer func() {
		if err != nil {
			for _, d := range c.madeSources {
				os.Remove(d) // empty: nothing ran in the container
			}
			if c.cg != nil {
				c.cg.remove()
			}
		}
	}()
	if r := cfg.Resources; r != nil {
		if err := r.validate(); err != nil {
			return nil, err
		}
		if c.cg, err = newCgroup(c.id, *r); err != nil {
			return nil, err
		}
	}
	setup, err := c.setupMessage()
	if err != nil {
		return nil, err
	}
	if err = c.spawn(ctx); err != nil {
		return nil, c.explainRootless(err)
	}
	// The setup may be larger than the socket buffer; the init reads it only once it runs.
	sent := make(chan error, 1)
	go func() {
		_, _, err := c.conn.WriteMsgUnix(setup, nil, nil)
		sent <- err
	}()
	if err := c.awaitReady(ctx, sent); err != nil {
		c.Close()
		return nil, c.explainRootless(err)
	}
	go c.read()
	return c, nil
}

func newID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// spawn creates the init and its control connection: a ready init from the pool, or one the
// zygote forks now, when this binary has the C init; else an exec of this binary (the Go init in
// init_go_linux.go takes over before main).
func (c *Container) spawn(ctx context.Context) error {
	mode := initMode(&c.cfg)
	if mode == modeZygote {
		var r *readyInit
		kind := zygoteKind(&c.cfg)
		// A container with a cgroup is forked into it (see cgroup_linux.go); the pool's inits
		// are the confined zygote's.
		if c.cg == nil && kind == zygoteConfined {
			r = takeReady(c.cfg.Rootless)
		}
		if r == nil {
			var err error
			if r, err = newInit(ctx, kind, c.cloneFlags(), false, c.cg.cloneFD()); err != nil {
				return fmt.Errorf("isolate: start container %s: %w", c.id, err)
			}
		}
		c.conn, c.pid, c.pidfd = r.conn, r.pid, r.pidfd
		return nil
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("isolate: start container: socketpair: %w", err)
	}
	child := os.NewFile(uintptr(fds[1]), "ctrl")
	defer child.Close()
	pf := os.NewFile(uintptr(fds[0]), "ctrl")
	fc, err := net.FileConn(pf)
	pf.Close()
	if err != nil {
		return fmt.Errorf("isolate: start container: %w", err)
	}
	c.conn = fc.(*net.UnixConn)
	if err := c.spawnExec(child, mode); err != nil {
		c.conn.Close()
		return err
	}
	return nil
}

// spawnExec runs the init as a fresh exec of this binary, from a goroutine locked to its thread
// for the init's whole life so that Pdeathsig means "the parent process died".
func (c *Container) spawnExec(ctrl *os.File, mode string) error {
	null, err := devNull()
	if err != nil {
		return fmt.Errorf("isolate: start container %s: %w", c.id, err)
	}
	which := "go"
	if mode != modeGo {
		which = "c"
	}
	sys := &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL, Cloneflags: namespaces}
	if c.cfg.Rootless {
		mapCaller(sys)
	}
	if fd := c.cg.cloneFD(); fd != nil {
		sys.UseCgroupFD, sys.CgroupFD = true, int(fd.Fd()) // clone3(CLONE_INTO_CGROUP)
	}
	started := make(chan error, 1)
	c.reaped = make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		pid, err := syscall.ForkExec("/proc/self/exe", []string{"isorun-init"}, &syscall.ProcAttr{
			Env:   []string{"_ISORUN_INIT=" + which + ":3"},
			Files: []uintptr{null.Fd(), null.Fd(), null.Fd(), ctrl.Fd()},
			Sys:   sys,
		})
		if err != nil {
			started <- fmt.Errorf("isolate: start container %s: exec /proc/self/exe: %w", c.id, err)
			return
		}
		c.pid = pid
		c.pidfd, err = unix.PidfdOpen(pid, 0)
		if err != nil {
			c.pidfd = -1
		}
		started <- nil
		var ws unix.WaitStatus
		for {
			if _, err := unix.Wait4(pid, &ws, 0, nil); err != unix.EINTR {
				break
			}
		}
		close(c.reaped)
	}()
	return <-started
}

// waitReap waits, at most d, until an init forked by the zygote has exited (its whole pid
// namespace with it: the kernel kills and reaps the rest before the init's exit is reported) and
// been reaped by the zygote, which takes up to a clone of new namespaces (100 ms seen) when the
// zygote is busy. Close promises that the container's processes are gone, and a zombie still
// shows in /proc.
//
// Since Linux 6.9 a pidfd reports POLLHUP once its process is reaped, and the wait is the
// runtime's poller's, on the caller's goroutine: a goroutine per container waiting for its init
// cost each container's Close a hand-off between threads, and one blocked in poll(2) kept the
// scheduler's monitor retaking its P, waking threads every 20 µs. Older kernels wake nobody at the
// reap: there, the zombie's state is read every millisecond once the init has exited.
func (c *Container) waitReap(d time.Duration) {
	deadline := time.Now().Add(d)
	if pidfdHangsUp() {
		if f, err := pollable(c.pidfd); err == nil {
			defer f.Close()
			f.SetReadDeadline(deadline)
			if rc, err := f.SyscallConn(); err == nil {
				var ev int16
				err := rc.Read(func(fd uintptr) bool {
					ev = pollNow(int(fd))
					return ev&unix.POLLHUP != 0 || ev&unix.POLLNVAL != 0
				})
				if err != nil || ev&unix.POLLHUP != 0 {
					return // reaped, or out of time
				}
			}
		}
	}
	fds := []unix.PollFd{{Fd: int32(c.pidfd), Events: unix.POLLIN}}
	for {
		ms := time.Until(deadline).Milliseconds()
		if ms <= 0 {
			return
		}
		if _, err := unix.Poll(fds, int(ms)); err != unix.EINTR {
			break
		}
	}
	waitReaped(c.pidfd, c.pid)
}

// pidfdHangsUp says whether pidfds report (and wake pollers at) their process's reap: Linux 6.9.
var pidfdHangsUp = sync.OnceValue(func() bool {
	major, minor, ok := parseRelease(kernelRelease())
	return ok && (major > 6 || major == 6 && minor >= 9)
})

// pollable is a non-blocking duplicate of fd, registered with the runtime's poller.
func pollable(fd int) (*os.File, error) {
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(d, true); err != nil {
		unix.Close(d)
		return nil, err
	}
	return os.NewFile(uintptr(d), "pidfd"), nil
}

// pollNow is fd's poll(2) events at this instant.
func pollNow(fd int) int16 {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, 0); err != unix.EINTR {
			return fds[0].Revents
		}
	}
}

// waitReaped waits (up to 10s) until the exited init behind pidfd has been reaped: the zombie's
// state is read every millisecond. After the reap the pid is gone or, at worst, another
// process's, which is not a zombie.
func waitReaped(pidfd, pid int) {
	stat := fmt.Sprintf("/proc/%d/stat", pid)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		fds := []unix.PollFd{{Fd: int32(pidfd)}} // no events: POLLHUP alone ends the wait
		if n, _ := unix.Poll(fds, 1); n == 1 && fds[0].Revents&unix.POLLHUP != 0 {
			return
		}
		b, err := os.ReadFile(stat)
		if err != nil {
			return
		}
		// "PID (COMM) STATE ...": COMM may hold anything, so the state follows the last ')'.
		if i := strings.LastIndexByte(string(b), ')'); i < 0 || i+2 >= len(b) || b[i+2] != 'Z' {
			return
		}
	}
}

// replyBufs hold the init's setup reply: up to 64 KiB (init_linux.c's OUT_MAX), the mount points
// it created. Zeroing a fresh one for every container showed in profiles.
var replyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<16); return &b }}

func (c *Container) awaitReady(ctx context.Context, sent <-chan error) error {
	stop := context.AfterFunc(ctx, func() { c.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	bp := replyBufs.Get().(*[]byte)
	defer replyBufs.Put(bp)
	buf := *bp
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := c.conn.ReadMsgUnix(buf, oob)
	fds := parseRights(oob[:oobn])
	if err != nil || n == 0 {
		closeFds(fds)
		if ctx.Err() != nil {
			return fmt.Errorf("isolate: start container %s: %w", c.id, ctx.Err())
		}
		if sent != nil { // nil: the zygote sent it (a parked container)
			if serr := <-sent; serr != nil {
				return fmt.Errorf("isolate: start container %s: send setup: %w", c.id, serr)
			}
		}
		return fmt.Errorf("isolate: start container %s: init exited during setup", c.id)
	}
	t := parse(buf[:n])
	switch verb, _ := t.next(); verb {
	case "ok":
		c.created = t.rest()
		want := 1
		if c.cfg.Upper == "" {
			want = 2
		}
		if len(fds) != want {
			closeFds(fds)
			return fmt.Errorf("isolate: start container %s: init sent %d fds, want %d", c.id, len(fds), want)
		}
		if want == 2 {
			c.scratch = os.NewFile(uintptr(fds[0]), "scratch")
		}
		c.root = os.NewFile(uintptr(fds[len(fds)-1]), "root")
		return nil
	case "err":
		closeFds(fds)
		step, _ := t.next()
		e, _ := t.int()
		detail, _ := t.next()
		err := error(syscall.Errno(e))
		if detail != "" {
			err = fmt.Errorf("%w (%s)", err, detail)
		}
		return &SetupError{ID: c.id, Step: step, Err: err}
	default:
		closeFds(fds)
		return fmt.Errorf("isolate: start container %s: init said %q", c.id, verb)
	}
}

// SetupError is a failure of one step of a container's setup, reported by its init.
type SetupError struct {
	ID   string // the container's
	Step string // e.g. "pivot_root", "bind /data on /mnt"
	Err  error
}

func (e *SetupError) Error() string {
	return fmt.Sprintf("isolate: container %s: %s: %v", e.ID, e.Step, e.Err)
}

func (e *SetupError) Unwrap() error { return e.Err }

// setupMessage is the program the init runs: see proto.go.
func (c *Container) setupMessage() ([]byte, error) {
	m := new(message).str("setup")
	if c.parked {
		m.str("parked")
	}
	// First of all, on cgroup v1, the init joins its cgroup: see cgroup_linux.go.
	for _, p := range c.cg.procsFiles() {
		m.strs("cgroup", p)
	}
	c.usernsOp(m)
	m.str("rslave")
	host := c.cfg.Hostname
	if host == "" {
		host = c.id
	}
	m.strs("hostname", host)
	if !c.cfg.Privileged {
		m.str("nodev")
	}
	upper, work := c.cfg.Upper, c.cfg.Work
	if upper == "" {
		opts := "mode=0755"
		if c.cfg.ScratchSize > 0 {
			opts += ",size=" + strconv.FormatInt(c.cfg.ScratchSize, 10)
		}
		m.strs("scratch", opts)
	}
	m.str("overlay").num(int64(len(c.cfg.Lowers)))
	for _, l := range c.cfg.Lowers {
		if !path.IsAbs(l) {
			return nil, fmt.Errorf("isolate: lower %q: not an absolute path", l)
		}
		m.str(l)
	}
	m.strs(upper, work, c.overlayOptions())
	m.strs("dev", "/dev", c.devFlag(), "proc", "/proc", "sysfs", "/sys")
	mounts, err := orderMounts(c.cfg.Mounts)
	if err != nil {
		return nil, err
	}
	for _, mt := range mounts {
		switch mt.Type {
		case "bind":
			flags := ""
			if mt.ReadOnly {
				flags += "r"
			}
			src, file, made, err := prepareSource(mt.Source)
			c.madeSources = append(made, c.madeSources...)
			if err != nil {
				return nil, err
			}
			if file {
				flags += "f"
			}
			m.strs("bind", src, mt.Target, flags)
		case "tmpfs":
			opts := mt.Options
			if mt.ReadOnly {
				opts = strings.TrimPrefix(opts+",ro", ",")
			}
			m.strs("tmpfs", mt.Target, opts)
		default:
			return nil, fmt.Errorf("isolate: mount on %s: unknown type %q (want bind or tmpfs)", mt.Target, mt.Type)
		}
	}
	m.str("pivot")
	for _, p := range maskedPaths {
		m.strs("mask", p)
	}
	for _, p := range readonlyPaths {
		m.strs("ro", p)
	}
	m.str("lo")
	if m.err != nil {
		return nil, fmt.Errorf("isolate: container setup: %w", m.err)
	}
	return m.b, nil
}

// orderMounts validates targets and sorts mounts so that a mount lands before any mount inside
// it, keeping the caller's order otherwise.
func orderMounts(ms []Mount) ([]Mount, error) {
	out := make([]Mount, len(ms))
	seen := map[string]bool{}
	for i, m := range ms {
		t, err := cleanTarget(m.Target)
		if err != nil {
			return nil, fmt.Errorf("isolate: %w", err)
		}
		if seen[t] {
			return nil, fmt.Errorf("isolate: mount target %s given twice", t)
		}
		seen[t] = true
		m.Target = t
		out[i] = m
	}
	sort.SliceStable(out, func(i, j int) bool {
		return strings.Count(out[i].Target, "/") < strings.Count(out[j].Target, "/")
	})
	return out, nil
}

// prepareSource checks a bind mount's host side, creating a missing directory, and says whether
// it is a file. made lists the directories it created, deepest first.
func prepareSource(src string) (_ string, file bool, made []string, _ error) {
	if !path.IsAbs(src) {
		abs, err := absPath(src)
		if err != nil {
			return "", false, nil, fmt.Errorf("isolate: volume source %q: %w", src, err)
		}
		src = abs
	}
	st, err := os.Stat(src)
	if errors.Is(err, os.ErrNotExist) {
		for d := path.Clean(src); d != "/"; d = path.Dir(d) {
			if _, err := os.Lstat(d); err == nil {
				break
			}
			made = append(made, d)
		}
		if err := os.MkdirAll(src, 0o755); err != nil {
			return "", false, made, fmt.Errorf("isolate: create volume source: %w", err)
		}
		return src, false, made, nil
	}
	if err != nil {
		return "", false, nil, fmt.Errorf("isolate: volume source: %w", err)
	}
	return src, !st.IsDir(), nil, nil
}

func absPath(p string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return path.Join(wd, p), nil
}

// ID names the container in messages (and is its default hostname).
func (c *Container) ID() string { return c.id }

// Pid is the init's pid in the caller's pid namespace.
func (c *Container) Pid() int { return c.pid }

// Upper is the directory that holds the container's writes: the overlay's upper layer. With the
// default tmpfs it is a /proc/self/fd path, valid in this process only and for as long as the
// container is open.
func (c *Container) Upper() string {
	if c.scratch == nil {
		return c.cfg.Upper
	}
	return fmt.Sprintf("/proc/self/fd/%d/upper", c.scratch.Fd())
}

// Lowers are the container's image layers, top first.
func (c *Container) Lowers() []string { return c.cfg.Lowers }

// Root is the container's root directory as its processes see it (volumes included), for reading
// and writing files from the outside: resolve paths under it with RESOLVE_IN_ROOT (see OpenFile).
// It stays readable after Close until the container's resources are released.
func (c *Container) Root() *os.File { return c.root }

// Created lists the mount points the setup had to create in the overlay (say /data for a volume
// on an image without one). They are in the upper layer, but they are the harness's doing, not
// the commands'.
func (c *Container) Created() []string { return c.created }

// Done is closed once the container has ended (closed, or its init died).
func (c *Container) Done() <-chan struct{} { return c.done }

// Err says why the container ended: nil while it runs, ErrClosed after Close.
func (c *Container) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// Close kills every process of the container and waits until they are gone, then removes its
// cgroup (Config.Resources; Stats keeps the last reading). The overlay's upper layer and root
// stay readable until Release. Close is idempotent; it fails only when the cgroup would not go.
func (c *Container) Close() error {
	c.closing.Do(func() {
		c.end(ErrClosed)
		if c.pidfd >= 0 {
			unix.PidfdSendSignal(c.pidfd, unix.SIGKILL, nil, 0)
		} else if c.pid > 0 {
			unix.Kill(c.pid, unix.SIGKILL)
		}
		c.conn.Close()
		if c.reaped != nil && c.pid > 0 { // an exec'd init: see spawnExec
			select {
			case <-c.reaped:
			case <-time.After(30 * time.Second):
			}
		} else if c.pidfd >= 0 {
			c.waitReap(30 * time.Second)
		}
		if c.pidfd >= 0 {
			unix.Close(c.pidfd)
			c.pidfd = -1
		}
		if c.cg != nil {
			c.closeErr = c.cg.remove()
		}
	})
	return c.closeErr
}

// Release closes the container (if still running) and frees its overlay and upper layer: with
// the default tmpfs, its writes are gone.
func (c *Container) Release() error {
	err := c.Close() // only a cgroup that would not go fails it

	if c.root != nil {
		c.root.Close()
	}
	if c.scratch != nil {
		c.scratch.Close()
	}
	return err
}

// end records why the container ended and fails every command still waiting.
func (c *Container) end(why error) {
	c.mu.Lock()
	if c.dead != nil {
		c.mu.Unlock()
		return
	}
	c.dead = why
	jobs := c.jobs
	c.jobs = map[string]*Cmd{}
	c.mu.Unlock()
	close(c.done)
	for _, j := range jobs {
		j.finish(event{verb: "gone"})
	}
}

// read dispatches the init's messages to the commands they are about. The longest, "failed",
// carries a path of at most PATH_MAX.
func (c *Container) read() {
	buf := make([]byte, 8<<10)
	for {
		n, _, _, _, err := c.conn.ReadMsgUnix(buf, nil)
		if err != nil || n == 0 {
			c.end(c.initExited())
			return
		}
		t := parse(buf[:n])
		verb, _ := t.next()
		id, _ := t.next()
		ev := event{verb: verb}
		switch verb {
		case "started":
			p, _ := t.int()
			ev.pid = int(p)
		case "failed":
			s, _ := t.int()
			e, _ := t.int()
			ev.stage, ev.errno = int(s), syscall.Errno(e)
			ev.what, _ = t.next()
		case "exit":
			s, _ := t.int()
			ev.status = unix.WaitStatus(s)
		}
		c.mu.Lock()
		j := c.jobs[id]
		if verb != "started" {
			delete(c.jobs, id)
		}
		c.mu.Unlock()
		if j != nil {
			j.deliver(ev)
		}
	}
}

func (c *Container) send(m *message) error {
	if m.err != nil {
		return m.err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var oob []byte
	if len(m.fds) > 0 {
		oob = unix.UnixRights(m.fds...)
	}
	_, _, err := c.conn.WriteMsgUnix(m.b, oob, nil)
	return err
}

// openat2Retry is openat2 that retries EAGAIN: with RESOLVE_IN_ROOT a ".." in the path (an image
// symlink like "../../tmp") fails so whenever a rename or mount anywhere on the system raced the
// lookup, which on a busy host is often; openat2(2) says to retry.
func openat2Retry(dirfd int, p string, how *unix.OpenHow) (int, error) {
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(dirfd, p, how)
		if err != unix.EAGAIN || tries == 1000 {
			return fd, err
		}
	}
}
