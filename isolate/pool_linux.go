package isolate

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// The parent keeps a few inits ready: forked by the zygote, their namespaces made, their "/"
// made rslave, loopback up, a /dev and a tmpfs for the upper layer built — everything that does
// not depend on the container's Config (prewarm in init_linux.c). Start takes one and sends it
// only its own setup, and asks the zygote for a replacement, which is made while the new
// container runs. On a 2-cpu VM this halves the cost of Start.
//
// A ready init holds a copy of the host's mounts from when it was forked, and it resolves lowers
// and volume sources in it. So the pool is dropped whenever the host's mount table changes: the
// kernel flags /proc/self/mountinfo, which a goroutine watches.

// readyInit is an init waiting for its setup.
type readyInit struct {
	conn  *net.UnixConn
	pid   int
	pidfd int
	gen   uint64 // the mount generation it was asked for in
}

func (r *readyInit) discard() {
	unix.PidfdSendSignal(r.pidfd, unix.SIGKILL, nil, 0)
	unix.Close(r.pidfd)
	r.conn.Close()
}

var pool struct {
	sync.Mutex
	ready    []*readyInit
	filling  int
	gen      uint64 // bumped on every change of the host's mount table
	userns   bool   // the kind of init it holds: rootless (a user namespace of its own) or not
	watching bool
}

// poolSize is ISORUN_POOL (default 2; 0 turns the pool, and parked containers, off), read once.
var poolSize = sync.OnceValue(func() int {
	if v, err := strconv.Atoi(os.Getenv("ISORUN_POOL")); err == nil && v >= 0 {
		return min(v, 16)
	}
	return 2
})

// takeReady returns a ready init, rootless (userns) or not, or nil when there is none; either way
// it has the pool refilled. Its inits are the confined zygote's: a privileged container forks
// its own. The pool holds one kind at a time, that of the last request: a process is rootless
// or not, and one that mixes (tests) only loses the pool's saving.
func takeReady(userns bool) *readyInit {
	pool.Lock()
	defer pool.Unlock()
	if poolSize() == 0 {
		return nil
	}
	if pool.userns != userns {
		pool.userns = userns
		pool.gen++ // what is being made now is of the other kind
		drainPoolLocked()
	}
	if !pool.watching {
		pool.watching = true
		go watchMounts()
	}
	var r *readyInit
	for len(pool.ready) > 0 && r == nil {
		r = pool.ready[len(pool.ready)-1]
		pool.ready = pool.ready[:len(pool.ready)-1]
		if r.gen != pool.gen {
			r.discard()
			r = nil
		}
	}
	refillLocked()
	return r
}

func refillLocked() {
	for need := poolSize() - len(pool.ready) - pool.filling; need > 0; need-- {
		pool.filling++
		gen := pool.gen
		flags := uintptr(namespaces)
		if pool.userns {
			flags |= unix.CLONE_NEWUSER
		}
		go func() {
			r, err := newInit(context.Background(), zygoteConfined, flags, true, nil)
			pool.Lock()
			defer pool.Unlock()
			pool.filling--
			if err != nil {
				return // the next Start forks its own, and reports what is wrong
			}
			r.gen = gen
			if gen != pool.gen || len(pool.ready) >= poolSize() {
				r.discard()
				return
			}
			pool.ready = append(pool.ready, r)
		}()
	}
}

// drainPool discards every ready init (Shutdown, a mount change).
func drainPoolLocked() {
	for _, r := range pool.ready {
		r.discard()
	}
	pool.ready = nil
}

// watchMounts drops the pool whenever the host's mount table changes. The file is opened raw:
// an os.File of it would be registered with the runtime's epoll, whose poll of the file takes the
// change notice (mountinfo reports a change once per open file) before ours does.
func watchMounts() {
	fd, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
			return
		}
		if fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0 {
			// Polling re-arms it.
			pool.Lock()
			pool.gen++
			drainPoolLocked()
			pool.Unlock()
			drainWarm(false)
		}
	}
}

// newInit has the zygote of a kind fork an init with the given namespaces (into the cgroup v2
// directory cgroup, when not nil) and returns it, waiting for its setup. A warm init prewarms
// first (see prewarm in init_linux.c).
func newInit(ctx context.Context, kind int, flags uintptr, warm bool, cgroup *os.File) (*readyInit, error) {
	z, err := getZygote(kind)
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("isolate: start container: socketpair: %w", err)
	}
	child := os.NewFile(uintptr(fds[1]), "ctrl")
	defer child.Close()
	pf := os.NewFile(uintptr(fds[0]), "ctrl")
	fc, err := net.FileConn(pf)
	pf.Close()
	if err != nil {
		return nil, fmt.Errorf("isolate: start container: %w", err)
	}
	conn := fc.(*net.UnixConn)
	ch, err := z.spawn(flags, child, cgroup, warm)
	if err != nil {
		conn.Close()
		return nil, err
	}
	child.Close()
	select {
	case r := <-ch:
		if r.err != nil {
			conn.Close()
			return nil, r.err
		}
		if r.pidfd < 0 {
			conn.Close()
			return nil, fmt.Errorf("isolate: no pidfd from the zygote")
		}
		return &readyInit{conn: conn, pid: r.pid, pidfd: r.pidfd}, nil
	case <-ctx.Done():
		// The reply still comes; its pidfd then kills the init.
		go func() {
			if r := <-ch; r.err == nil {
				r.discard()
			}
		}()
		conn.Close()
		return nil, ctx.Err()
	}
}
