package isolate

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// The zygote (init_linux.c) is started once per process from this binary and forks every
// container's init. There are two kinds, each started when first needed: the confined zygote,
// for unprivileged containers (the default), holds their commands' confinement that does not
// depend on the container (Docker's capability bounding set and the keyring filter) so that its
// inits inherit it instead of making it each time; the other, for Config.Privileged, holds
// none. Its lifetime is the process's: a goroutine locked to its OS thread creates it
// with Pdeathsig and then waits for it, so the signal can only fire when this process dies
// (golang/go#27505: Pdeathsig follows the creating thread); its control socket closing tells it the
// same thing, and it then kills every container it made.

type zygote struct {
	conn *net.UnixConn
	pid  int

	mu      sync.Mutex
	pending map[string]func(zreply) // called by the reader with the reply to a request
	dead    bool
	exited  chan struct{} // closed once the zygote has been reaped
}

type zreply struct {
	pid   int
	pidfd int
	ctrl  int // a parked container's control socket (park), else -1
	err   error
}

// discard kills the init a reply is about, if any, and closes the reply's descriptors: for a
// reply nobody will use.
func (r zreply) discard() {
	if r.pidfd >= 0 {
		unix.PidfdSendSignal(r.pidfd, unix.SIGKILL, nil, 0)
		unix.Close(r.pidfd)
	}
	if r.ctrl >= 0 {
		unix.Close(r.ctrl)
	}
}

var (
	zmu     sync.Mutex
	zygotes [2]*zygote // by kind: zygotePrivileged, zygoteConfined
	zseq    atomic.Uint64
)

// The zygote kinds.
const (
	zygotePrivileged = 0
	zygoteConfined   = 1
)

// zygoteKind is the kind of zygote that forks cfg's init.
func zygoteKind(cfg *Config) int {
	if cfg.Privileged {
		return zygotePrivileged
	}
	return zygoteConfined
}

// devNull is opened once: every init and zygote starts with it as stdio.
var devNull = sync.OnceValues(func() (*os.File, error) { return os.OpenFile(os.DevNull, os.O_RDWR, 0) })

// getZygote returns the running zygote of a kind, starting it if need be.
func getZygote(kind int) (*zygote, error) {
	zmu.Lock()
	defer zmu.Unlock()
	if z := zygotes[kind]; z != nil {
		z.mu.Lock()
		dead := z.dead
		z.mu.Unlock()
		if !dead {
			return z, nil
		}
	}
	z, err := startZygote(kind)
	if err != nil {
		return nil, err
	}
	zygotes[kind] = z
	return z, nil
}

// zygotePids are the pids of the running zygotes, for tests that look for leftover processes.
func zygotePids() []int {
	zmu.Lock()
	defer zmu.Unlock()
	var pids []int
	for _, z := range zygotes {
		if z != nil {
			pids = append(pids, z.pid)
		}
	}
	return pids
}

// zygoteEnv passes ISORUN_POOL (how many prewarmed inits the zygote keeps ready, default 2; 0
// forks each init on demand) to the zygote.
//
// The zygote runs with every symbol bound at its start (LD_BIND_NOW) and without glibc's rseq
// registration: the inits it forks share its memory copy-on-write, and each lazy binding (a GOT
// write) or rseq update (a TLS write after every migration) in an init cost a page fault and a
// copy. Commands are exec'd with their own environment, not this one. _ISORUN_CONFINED makes it
// the confined kind.
func zygoteEnv(kind int) []string {
	env := []string{"_ISORUN_ZYGOTE=3", "LD_BIND_NOW=1", "GLIBC_TUNABLES=glibc.pthread.rseq=0"}
	if kind == zygoteConfined {
		env = append(env, "_ISORUN_CONFINED=1")
	}
	if n := os.Getenv("ISORUN_POOL"); n != "" {
		env = append(env, "_ISORUN_POOL="+n)
	}
	return env
}

// Shutdown stops this process's zygotes: each kills the containers it made (running, parked or
// prewarmed inits) and exits; the next Start makes a new one. Leak checks call it so that the prewarmed inits,
// which live in pid namespaces of their own until the process exits, are not counted.
func Shutdown() {
	drainWarm(true) // first: a fill under way uses the zygote
	zmu.Lock()
	zs := zygotes
	zygotes = [2]*zygote{}
	zmu.Unlock()
	pool.Lock()
	pool.gen++ // inits asked for before now are of the old zygote
	drainPoolLocked()
	pool.Unlock()
	for _, z := range zs {
		if z != nil {
			z.conn.Close()
		}
	}
	for _, z := range zs {
		if z != nil {
			<-z.exited
		}
	}
}

// zygoteProgram is what a zygote execs (zygoteExe).
type zygoteProgram struct {
	path  string   // for exec
	name  string   // for errors
	argv0 string   // what ps shows
	env   []string // added to zygoteEnv's
}

// selfZygote is this binary as the zygote: its constructor runs the C code.
var selfZygote = zygoteProgram{path: "/proc/self/exe", name: "/proc/self/exe", argv0: "isorun-zygote"}

func startZygote(kind int) (*zygote, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("isolate: start zygote: socketpair: %w", err)
	}
	child := os.NewFile(uintptr(fds[1]), "zygote")
	defer child.Close()
	parent := os.NewFile(uintptr(fds[0]), "zygote")
	c, err := net.FileConn(parent)
	parent.Close()
	if err != nil {
		child.Close()
		return nil, fmt.Errorf("isolate: start zygote: %w", err)
	}
	null, err := devNull()
	if err != nil {
		return nil, fmt.Errorf("isolate: start zygote: %w", err)
	}
	exe, err := zygoteExe()
	if err != nil {
		c.Close()
		return nil, err
	}
	z := &zygote{conn: c.(*net.UnixConn), pending: map[string]func(zreply){}, exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Locked for the zygote's whole life and never unlocked: see the comment at the top.
		runtime.LockOSThread()
		pid, err := syscall.ForkExec(exe.path, []string{exe.argv0}, &syscall.ProcAttr{
			Env:   append(zygoteEnv(kind), exe.env...),
			Files: []uintptr{null.Fd(), null.Fd(), null.Fd(), child.Fd()},
			Sys:   &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL},
		})
		if err != nil {
			started <- fmt.Errorf("isolate: start zygote: exec %s: %w", exe.name, err)
			return
		}
		z.pid = pid
		started <- nil
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if err != unix.EINTR {
				break
			}
		}
		z.fail(fmt.Errorf("isolate: zygote exited (%s)", describeStatus(ws)))
		z.conn.Close()
		close(z.exited)
	}()
	if err := <-started; err != nil {
		z.conn.Close()
		return nil, err
	}
	go z.read()
	return z, nil
}

func (z *zygote) fail(err error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.dead = true
	for id, reply := range z.pending {
		reply(zreply{pidfd: -1, ctrl: -1, err: err})
		delete(z.pending, id)
	}
}

func (z *zygote) read() {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, _, _, err := z.conn.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			z.fail(errors.New("isolate: zygote exited"))
			return
		}
		fds := parseRights(oob[:oobn])
		t := parse(buf[:n])
		verb, _ := t.next()
		id, _ := t.next()
		r := zreply{pidfd: -1, ctrl: -1}
		switch verb {
		case "pid":
			p, err := t.int()
			r.pid, r.err = int(p), err
			if len(fds) > 0 {
				r.pidfd = fds[0]
				fds = fds[1:]
			}
			if len(fds) > 0 {
				r.ctrl = fds[0]
				fds = fds[1:]
			}
		case "err":
			step, _ := t.next()
			e, _ := t.int()
			r.err = fmt.Errorf("isolate: %s: %w", step, syscall.Errno(e))
		default:
			r.err = fmt.Errorf("isolate: zygote said %q", verb)
		}
		closeFds(fds)
		z.mu.Lock()
		reply := z.pending[id]
		delete(z.pending, id)
		z.mu.Unlock()
		if reply != nil {
			reply(r)
		} else {
			r.discard()
		}
	}
}

// spawn asks the zygote for a new init with the given clone flags, whose control socket is ctrl.
// The reply arrives on the returned channel.
func (z *zygote) spawn(flags uintptr, ctrl *os.File, cgroup *os.File, warm bool) (<-chan zreply, error) {
	id := strconv.FormatUint(zseq.Add(1), 10)
	ch := make(chan zreply, 1)
	m := new(message).strs("spawn", id).num(int64(flags))
	m.fds = []int{int(ctrl.Fd())}
	if cgroup != nil {
		m.num(1)
		m.fds = append(m.fds, int(cgroup.Fd()))
	} else {
		m.num(-1)
	}
	if warm {
		m.num(1)
	} else {
		m.num(0)
	}
	err := z.request(id, m, func(r zreply) { ch <- r })
	runtime.KeepAlive(ctrl)
	runtime.KeepAlive(cgroup)
	if err != nil {
		return nil, fmt.Errorf("isolate: ask zygote for a container: %w", err)
	}
	return ch, nil
}

// park asks the zygote to fork an init with the given clone flags that prewarms and then runs
// setup at once (a parked container: warm_linux.go). reply gets its pid, pidfd and control
// socket, from the zygote's reader: it must not block.
func (z *zygote) park(flags uintptr, setup []byte, reply func(zreply)) error {
	id := strconv.FormatUint(zseq.Add(1), 10)
	m := new(message).strs("park", id).num(int64(flags))
	m.b = append(m.b, setup...)
	return z.request(id, m, reply)
}

// request sends m, whose reply will be passed to reply, unless sending fails.
func (z *zygote) request(id string, m *message, reply func(zreply)) error {
	if m.err != nil {
		return m.err
	}
	z.mu.Lock()
	if z.dead {
		z.mu.Unlock()
		return errors.New("isolate: zygote exited")
	}
	z.pending[id] = reply
	z.mu.Unlock()
	var oob []byte
	if len(m.fds) > 0 {
		oob = unix.UnixRights(m.fds...)
	}
	if _, _, err := z.conn.WriteMsgUnix(m.b, oob, nil); err != nil {
		z.mu.Lock()
		delete(z.pending, id)
		z.mu.Unlock()
		return err
	}
	return nil
}

func parseRights(oob []byte) []int {
	if len(oob) == 0 {
		return nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if f, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, f...)
		}
	}
	return fds
}

func closeFds(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func describeStatus(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return "signal: " + ws.Signal().String()
	}
	return fmt.Sprintf("status %#x", uint32(ws))
}
