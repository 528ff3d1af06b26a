package isolate

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The parent talks to a container's init, and to the zygote, in datagrams on a SOCK_SEQPACKET
// socket: NUL-terminated tokens (a verb, then its arguments), file descriptors by SCM_RIGHTS. It is
// not JSON because the init that reads it is C that runs before any runtime (init_linux.c), and
// a token list is what it can parse without a library; the same format serves the Go init.
//
// Parent -> zygote:   spawn ID CLONEFLAGS CGROUPFDINDEX WARM     fds: [ctrl, cgroup?]
//                     park ID CLONEFLAGS SETUP...                a parked container: the zygote
//                                                                makes its control socket, queues
//                                                                the setup in it, forks the init
// Zygote -> parent:   pid ID PID                                 fds: [pidfd] (park: [pidfd, ctrl])
//                     err ID STEP ERRNO
// Parent -> init:     setup OP...                                (first message; ops below)
//                     exec ID FLAGS UID GID NGROUPS GID... DIR ARGC ARG... ENVC ENV...   fds: stdio
//                                                                (FLAGS has execQuiet: no "started")
//                     kill ID SIGNAL
// Init -> parent:     ok CREATEDPATH...                          fds: [scratch?, root]
//                     err STEP ERRNO DETAIL
//                     started ID PID
//                     failed ID STAGE ERRNO WHAT
//                     exit ID WAITSTATUS
//
// Setup ops, run in order by the init:
//
//	parked                        C init only: set up ahead of its Start (warm_linux.go), named
//	                              isorun-ready until its first request (exec or kill)
//	cgroup PROCSFILE              join a cgroup v1 hierarchy: first, before anything else runs
//	userns UID GID                rootless, zygote's inits only: map root to UID/GID, setgroups
//	                              denied, before anything that needs the namespace's capabilities
//	rslave                        make every mount a slave before mounting anything
//	nodev                         unless privileged, before overlay: device nodes on the
//	                              container's writable mounts cannot be opened (the overlay root
//	                              and volumes nodev; tmpfs mounts and /dev/shm always are), and
//	                              /dev is read-only once the setup has mounted everything
//	hostname NAME
//	scratch OPTS                  a private tmpfs for upper/ and work/
//	overlay N LOWER... UPPER WORK OPTS   (UPPER empty: in the scratch tmpfs)
//	dev TARGET ROOTLESS           tmpfs with null zero full random urandom tty, pts, shm, links
//	                              (ROOTLESS "1": the host's nodes bound, no gid=5 on pts)
//	proc TARGET | sysfs TARGET    (sysfs refused in a user namespace: the host's /sys, read-only)
//	bind SOURCE TARGET FLAGS      FLAGS: r read-only, f file
//	tmpfs TARGET OPTS
//	pivot
//	mask PATH | ro PATH           after pivot
//	lo

// Flags of an exec request; keep in sync with init_linux.c.
const (
	execStdin      = 1
	execStdout     = 2
	execStderr     = 4
	execTTY        = 8
	execPrivileged = 16
	execQuiet      = 32 // no "started": the parent waits for the exit or failure (Run)
)

// Stages at which a command can fail before it runs; keep in sync with init_linux.c.
const (
	stageStdio = 1 + iota
	stageChdir
	stageCreds
	stageCaps
	stageLookup
	stageExec
	stageTTY
	stageSeccomp
)

// message builds one datagram.
type message struct {
	b   []byte
	fds []int
	err error
}

func (m *message) str(s string) *message {
	if strings.IndexByte(s, 0) >= 0 && m.err == nil {
		m.err = fmt.Errorf("%q contains a NUL byte", s)
	}
	m.b = append(m.b, s...)
	m.b = append(m.b, 0)
	return m
}

func (m *message) strs(ss ...string) *message {
	for _, s := range ss {
		m.str(s)
	}
	return m
}

func (m *message) num(n int64) *message {
	m.b = strconv.AppendInt(m.b, n, 10)
	m.b = append(m.b, 0)
	return m
}

// tokens splits a received datagram.
type tokens struct {
	t []string
	i int
}

func parse(b []byte) *tokens {
	s := string(b)
	s = strings.TrimSuffix(s, "\x00")
	if s == "" {
		return &tokens{}
	}
	return &tokens{t: strings.Split(s, "\x00")}
}

var errShort = errors.New("short message")

func (t *tokens) next() (string, error) {
	if t.i >= len(t.t) {
		return "", errShort
	}
	t.i++
	return t.t[t.i-1], nil
}

func (t *tokens) int() (int64, error) {
	s, err := t.next()
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
}

func (t *tokens) rest() []string {
	r := t.t[t.i:]
	t.i = len(t.t)
	return r
}
