package isolate

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/isorun/isorun/overlay"
	"golang.org/x/sys/unix"
)

// The Go init: the container side when this binary has no C init (built with CGO_ENABLED=0) or
// when ISORUN_INIT=go asks for it. The parent execs this binary per container with the new
// namespaces already made by clone, so every thread the Go runtime starts is inside them; this
// package's init function takes over before main (or TestMain) runs, so no TestMain hook is needed.
// It runs the same setup program and serves the same requests as init_linux.c, at the price of an
// exec and a Go runtime start per container (about 5x a plain fork/exec instead of about 2x).

func init() {
	v := os.Getenv("_ISORUN_INIT")
	if v == "" {
		return
	}
	_, fd, ok := strings.Cut(v, ":")
	if !ok {
		return
	}
	os.Unsetenv("_ISORUN_INIT")
	n, err := strconv.Atoi(fd)
	if err != nil {
		os.Exit(1)
	}
	// Commands must inherit neither the control socket nor the descriptors the parent process
	// leaked to us without close-on-exec (ForkExec passes every such one along): a command could
	// read the parent's requests, or use a host directory to leave the container's root. Marking
	// them close-on-exec is safe here, where the runtime's own descriptors are close-on-exec
	// already.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		os.Exit(1)
	}
	// What ps and /proc/1/comm show for pid 1, as the C init names itself (else "exe", from
	// /proc/self/exe). Package init runs on the main thread, whose name is the process's.
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte("isorun-init\x00")[0])), 0, 0, 0)
	goInit(n)
}

// ServeIfInit is what harness.Main calls first: when this process is a container's init it never
// returns. The Go init already takes over from this package's init function, so by the time any
// caller runs this, the process is not an init; it exists so that the hook is explicit.
func ServeIfInit() {}

type goInitState struct {
	ctrl    int
	root    *os.File
	scratch *os.File // the tmpfs holding upper/ and work/
	created []string
	pivoted bool
	// nodev: the nodev op ran (see proto.go); devFD is the container's /dev, made read-only at the
	// end of the setup when it did.
	nodev bool
	devFD int
	// groupsDenied: setgroups is denied in our user namespace (rootless), so commands keep the
	// groups we have.
	groupsDenied bool

	wmu  sync.Mutex
	mu   sync.Mutex
	jobs map[int]string // pid -> request id
}

type initError struct {
	step   string
	err    error
	detail string
}

func goInit(ctrl int) {
	spareThreads(4)
	s := &goInitState{ctrl: ctrl, jobs: map[int]string{}, devFD: -1}
	if err := s.setup(); err != nil {
		var ie *initError
		if !errors.As(err, &ie) {
			ie = &initError{step: "setup", err: err}
		}
		errno := syscall.EIO
		errors.As(ie.err, &errno)
		detail := ie.detail
		if _, bare := ie.err.(syscall.Errno); detail == "" && !bare {
			// The errno alone would lose what the wrapping says (which option, which path).
			detail = ie.err.Error()
		}
		s.reply(new(message).strs("err", ie.step).num(int64(errno)).str(detail))
		os.Exit(1)
	}
	s.serve()
}

// spareThreads has the runtime start n threads and leaves them idle, for it to reuse. Under a
// pids limit a fork bomb in the container can take every free pid, and the Go runtime aborts when
// it needs a thread it cannot create (a blocked recvmsg on the serving thread while the reaper
// runs, say): threads made before anything runs in the container keep it from needing more.
// Each goroutine holds its thread locked until all are, so none can share one.
func spareThreads(n int) {
	var locked, release sync.WaitGroup
	locked.Add(n)
	release.Add(1)
	for range n {
		go func() {
			runtime.LockOSThread()
			locked.Done()
			release.Wait()
			runtime.UnlockOSThread()
		}()
	}
	locked.Wait()
	release.Done()
}

func fail(step string, err error) error { return &initError{step: step, err: err} }

func (e *initError) Error() string { return e.step + ": " + e.err.Error() }

func (s *goInitState) reply(m *message) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var oob []byte
	if len(m.fds) > 0 {
		oob = unix.UnixRights(m.fds...)
	}
	return unix.Sendmsg(s.ctrl, m.b, oob, nil, unix.MSG_NOSIGNAL)
}

func (s *goInitState) recv() (*tokens, []int, error) {
	buf := make([]byte, 1<<20)
	oob := make([]byte, unix.CmsgSpace(64*4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(s.ctrl, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if n == 0 {
			return nil, nil, errors.New("eof")
		}
		return parse(buf[:n]), parseRights(oob[:oobn]), nil
	}
}

func (s *goInitState) setup() error {
	t, fds, err := s.recv()
	if err != nil {
		os.Exit(1)
	}
	closeFds(fds)
	if v, _ := t.next(); v != "setup" {
		return fail("setup", syscall.EPROTO)
	}
	for {
		op, err := t.next()
		if err != nil {
			break
		}
		if err := s.op(op, t); err != nil {
			return err
		}
	}
	if !s.pivoted {
		return fail("setup", syscall.EPROTO)
	}
	if s.devFD >= 0 {
		// See setup in init_linux.c: read-only once populated, not recursive.
		if s.nodev {
			if err := unix.MountSetattr(s.devFD, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
				return fail("make /dev read-only", err)
			}
		}
		unix.Close(s.devFD)
		s.devFD = -1
	}
	if null, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0); err == nil {
		for fd := 0; fd < 3; fd++ {
			unix.Dup3(null, fd, 0)
		}
		unix.Close(null)
	}
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	if b, err := os.ReadFile("/proc/self/setgroups"); err == nil && strings.HasPrefix(string(b), "deny") {
		s.groupsDenied = true
	}
	m := new(message).str("ok").strs(s.created...)
	if s.scratch != nil {
		m.fds = append(m.fds, int(s.scratch.Fd()))
	}
	m.fds = append(m.fds, int(s.root.Fd()))
	if err := s.reply(m); err != nil {
		os.Exit(1)
	}
	if s.scratch != nil {
		s.scratch.Close()
	}
	return nil
}

func (s *goInitState) op(op string, t *tokens) error {
	arg := func() string { v, _ := t.next(); return v }
	switch op {
	case "rslave":
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
			return fail("make / rslave", err)
		}
	case "userns":
		uid, gid := arg(), arg()
		for _, w := range [][2]string{{"uid_map", "0 " + uid + " 1\n"}, {"setgroups", "deny"}, {"gid_map", "0 " + gid + " 1\n"}} {
			if err := os.WriteFile("/proc/self/"+w[0], []byte(w[1]), 0); err != nil {
				return fail("write /proc/self/"+w[0], err)
			}
		}
	case "cgroup":
		p := arg()
		if err := os.WriteFile(p, []byte("0"), 0); err != nil {
			return fail("join cgroup "+p, err)
		}
	case "nodev":
		s.nodev = true
	case "hostname":
		h := arg()
		if err := unix.Sethostname([]byte(h)); err != nil {
			return fail("sethostname", err)
		}
	case "scratch":
		// A detached tmpfs, as overlay.NewScratch makes, but with the parent's options
		// (mode=0755 and Config.ScratchSize), as op_scratch in init_linux.c.
		opts := arg()
		fd, err := makeFS("tmpfs", opts, 0)
		if err != nil {
			return fail("create the upper layer", err)
		}
		s.scratch = os.NewFile(uintptr(fd), "scratch")
		for _, d := range []string{"upper", "work"} {
			if err := unix.Mkdirat(fd, d, 0o755); err != nil {
				return fail("create upper and work", err)
			}
		}
	case "overlay":
		n, err := t.int()
		if err != nil || n < 1 {
			return fail("overlay", syscall.EPROTO)
		}
		cfg := overlay.Config{}
		for i := int64(0); i < n; i++ {
			l := arg()
			// See op_overlay in init_linux.c: name a missing lower or a file.
			d, err := unix.Open(l, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fail("open lower "+l, err)
			}
			unix.Close(d)
			cfg.Lowers = append(cfg.Lowers, l)
		}
		cfg.Upper, cfg.Work = arg(), arg()
		opts := arg()
		cfg.UserXattr = strings.Contains(","+opts+",", ",userxattr,")
		if cfg.Upper == "" {
			if s.scratch == nil {
				return fail("overlay", syscall.EPROTO)
			}
			cfg.Upper = fmt.Sprintf("/proc/self/fd/%d/upper", s.scratch.Fd())
			cfg.Work = fmt.Sprintf("/proc/self/fd/%d/work", s.scratch.Fd())
		}
		root, err := overlay.Open(cfg)
		if err != nil {
			return fail("mount overlay", err)
		}
		s.root = root
		if s.nodev {
			if err := unix.MountSetattr(int(root.Fd()), "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NODEV}); err != nil {
				return fail("make the overlay nodev", err)
			}
		}
		if err := unix.MoveMount(int(root.Fd()), "", unix.AT_FDCWD, "/", unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fail("attach overlay", err)
		}
	case "dev":
		return s.dev(arg(), arg() == "1")
	case "proc":
		dst := arg()
		m, err := makeFS("proc", "", unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
		if err != nil {
			return fail("mount proc on "+dst, err)
		}
		return s.attach(m, dst, false, "proc")
	case "sysfs":
		dst := arg()
		m, err := makeFS("sysfs", "", unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC|unix.MOUNT_ATTR_RDONLY)
		if (err == unix.EPERM || err == unix.EACCES) && inUserns() {
			// See op_sysfs in init_linux.c: the host's /sys, read-only, when the kernel refuses
			// a sysfs of our own in a user namespace.
			m, err = bindReadOnly("/sys")
		}
		if err != nil {
			return fail("mount sysfs on "+dst, err)
		}
		return s.attach(m, dst, false, "sysfs")
	case "bind":
		src, dst, flags := arg(), arg(), arg()
		m, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			return fail("bind "+src+" on "+dst, err)
		}
		// See op_bind in init_linux.c: flags are added, never cleared.
		var attr uint64
		what := "make volume " + dst + " nodev"
		if strings.Contains(flags, "r") {
			attr |= unix.MOUNT_ATTR_RDONLY
			what = "make volume " + dst + " read-only"
		}
		if s.nodev {
			attr |= unix.MOUNT_ATTR_NODEV
		}
		if attr != 0 {
			if err := unix.MountSetattr(m, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: attr}); err != nil {
				unix.Close(m)
				return fail(what, err)
			}
		}
		return s.attach(m, dst, strings.Contains(flags, "f"), src)
	case "tmpfs":
		dst, opts := arg(), arg()
		m, err := makeFS("tmpfs", opts, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
		if err != nil {
			return fail("mount tmpfs on "+dst, err)
		}
		return s.attach(m, dst, false, "tmpfs")
	case "pivot":
		return s.pivot()
	case "mask":
		p := arg()
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if err == unix.ENOENT {
				return nil
			}
			return fail("mask "+p, err)
		}
		var err error
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0")
		} else {
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil && err != unix.ENOENT {
			return fail("mask "+p, err)
		}
	case "ro":
		p := arg()
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			if err == unix.ENOENT {
				return nil
			}
			return fail("make "+p+" read-only", err)
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_REC, ""); err != nil {
			return fail("make "+p+" read-only", err)
		}
	case "lo":
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fail("bring up lo", err)
		}
		defer unix.Close(fd)
		ifr, err := unix.NewIfreq("lo")
		if err != nil {
			return fail("bring up lo", err)
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			return fail("bring up lo", err)
		}
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_RUNNING)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			return fail("bring up lo", err)
		}
	default:
		return fail("setup", fmt.Errorf("%w: unknown op %q", syscall.EPROTO, op))
	}
	return nil
}

// bindReadOnly makes a detached read-only copy of the mount tree at src.
func bindReadOnly(src string) (int, error) {
	m, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return -1, err
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
	if err := unix.MountSetattr(m, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		unix.Close(m)
		return -1, err
	}
	return m, nil
}

// makeFS creates a detached mount of a new filesystem; opts are comma-separated key=value pairs
// (a key alone is a flag).
func makeFS(typ, opts string, attrs int) (int, error) {
	fs, err := unix.Fsopen(typ, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, err
	}
	defer unix.Close(fs)
	for _, kv := range strings.Split(opts, ",") {
		if kv == "" {
			continue
		}
		if k, v, ok := strings.Cut(kv, "="); ok {
			err = unix.FsconfigSetString(fs, k, v)
		} else {
			err = unix.FsconfigSetFlag(fs, k)
		}
		if err != nil {
			return -1, fmt.Errorf("option %s: %w", kv, err)
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, err
	}
	return unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, attrs)
}

func (s *goInitState) openInRoot(p string, flags uint64) (int, error) {
	return openat2Retry(int(s.root.Fd()), p, &unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
}

// target opens a mount point inside the container's root, creating what is missing; see
// open_target in init_linux.c for why resolution stays in the root.
func (s *goInitState) target(p string, file bool) (int, error) {
	if fd, err := s.openInRoot(p, unix.O_PATH); err == nil || err != unix.ENOENT {
		return fd, err
	}
	parts := strings.Split(strings.Trim(p, "/"), "/")
	cur := ""
	for i, part := range parts {
		parent := cur
		if parent == "" {
			parent = "/"
		}
		cur += "/" + part
		fd, err := s.openInRoot(cur, unix.O_PATH)
		if err == nil {
			unix.Close(fd)
			continue
		}
		if err != unix.ENOENT {
			return -1, err
		}
		dir, err := s.openInRoot(parent, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return -1, err
		}
		if i == len(parts)-1 && file {
			var f int
			f, err = unix.Openat(dir, part, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o644)
			if err == nil {
				unix.Close(f)
			}
		} else {
			err = unix.Mkdirat(dir, part, 0o755)
		}
		if err == nil {
			// Where it really is: the image's symlinks may have led elsewhere than cur (see
			// note_created in init_linux.c).
			real := cur
			if d, lerr := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", dir)); lerr == nil && path.IsAbs(d) {
				real = path.Join(d, part)
			}
			s.created = append(s.created, real)
		}
		unix.Close(dir)
		if err != nil && err != unix.EEXIST {
			return -1, err
		}
	}
	return s.openInRoot(p, unix.O_PATH)
}

func (s *goInitState) attach(m int, dst string, file bool, what string) error {
	defer unix.Close(m)
	t, err := s.target(dst, file)
	if err != nil {
		return fail("open mount point "+dst, err)
	}
	defer unix.Close(t)
	// See attach in init_linux.c: a symlink can lead a target to the root itself.
	var ts, rs unix.Stat_t
	if unix.Fstat(t, &ts) == nil && unix.Fstat(int(s.root.Fd()), &rs) == nil && ts.Dev == rs.Dev && ts.Ino == rs.Ino {
		return &initError{step: "mount " + what + " on " + dst, err: unix.EINVAL, detail: "the mount point resolves to the container's root"}
	}
	if err := unix.MoveMount(m, "", t, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fail("mount "+what+" on "+dst, err)
	}
	return nil
}

func (s *goInitState) dev(dst string, rootless bool) error {
	dev, err := makeFS("tmpfs", "mode=0755,size=65536k", unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return fail("mount tmpfs on "+dst, err)
	}
	if s.devFD >= 0 {
		unix.Close(s.devFD)
	}
	s.devFD = dev // closed at the end of the setup
	nodes := []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}
	for _, n := range nodes {
		if rootless {
			f, err := unix.Openat(dev, n.name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o666)
			if err != nil {
				return fail("create /dev/"+n.name, err)
			}
			unix.Close(f)
			t, err := unix.OpenTree(unix.AT_FDCWD, "/dev/"+n.name, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
			if err != nil {
				return fail("bind /dev/"+n.name, err)
			}
			err = unix.MoveMount(t, "", dev, n.name, unix.MOVE_MOUNT_F_EMPTY_PATH)
			unix.Close(t)
			if err != nil {
				return fail("bind /dev/"+n.name, err)
			}
			continue
		}
		if err := unix.Mknodat(dev, n.name, unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fail("mknod /dev/"+n.name, err)
		}
		if err := unix.Fchmodat(dev, n.name, 0o666, 0); err != nil {
			return fail("mknod /dev/"+n.name, err)
		}
	}
	for _, l := range [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"}, {"/proc/kcore", "core"}} {
		if err := unix.Symlinkat(l[0], dev, l[1]); err != nil {
			return fail("symlink /dev/"+l[1], err)
		}
	}
	if err := unix.Mkdirat(dev, "pts", 0o755); err != nil {
		return fail("create /dev/pts", err)
	}
	if err := unix.Mkdirat(dev, "shm", 0o1777); err != nil {
		return fail("create /dev/shm", err)
	}
	if err := unix.Fchmodat(dev, "shm", 0o1777, 0); err != nil {
		return fail("create /dev/shm", err)
	}
	t, err := s.target(dst, false)
	if err != nil {
		return fail("open mount point "+dst, err)
	}
	err = unix.MoveMount(dev, "", t, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
	unix.Close(t)
	if err != nil {
		return fail("mount tmpfs on "+dst, err)
	}
	ptsOpts := "newinstance,ptmxmode=0666,mode=0620,gid=5"
	if rootless {
		ptsOpts = "newinstance,ptmxmode=0666,mode=0620"
	}
	pts, err := makeFS("devpts", ptsOpts, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return fail("mount devpts on "+dst+"/pts", err)
	}
	if err := s.attach(pts, path.Join(dst, "pts"), false, "devpts"); err != nil {
		return err
	}
	shm, err := makeFS("tmpfs", "mode=1777,size=65536k", unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return fail("mount tmpfs on "+dst+"/shm", err)
	}
	return s.attach(shm, path.Join(dst, "shm"), false, "shm")
}

func (s *goInitState) pivot() error {
	old, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail("open old root", err)
	}
	defer unix.Close(old)
	if err := unix.Fchdir(int(s.root.Fd())); err != nil {
		return fail("chdir into the new root", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fail("pivot_root", err)
	}
	if err := unix.Fchdir(old); err != nil {
		return fail("chdir into the old root", err)
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fail("make the old root slave", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fail("detach the old root", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fail("chdir /", err)
	}
	s.pivoted = true
	return nil
}

// serve runs exec and kill requests until the control socket closes. Commands are forked from
// one goroutine locked to its thread: capabilities, the bounding set and no_new_privs are
// per-thread in Linux, so dropping them there (once) makes every command inherit the drop, which
// Go's ForkExec cannot do between fork and exec.
func (s *goInitState) serve() {
	runtime.LockOSThread()
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD)
	go s.reap(sigs)
	dropped := false
	for {
		t, fds, err := s.recv()
		if err != nil {
			break
		}
		switch verb, _ := t.next(); verb {
		case "exec":
			s.exec(t, fds, &dropped)
		case "kill":
			id, _ := t.next()
			sig, _ := t.int()
			s.mu.Lock()
			for pid, j := range s.jobs {
				if j == id {
					if unix.Kill(-pid, syscall.Signal(sig)) != nil {
						unix.Kill(pid, syscall.Signal(sig))
					}
				}
			}
			s.mu.Unlock()
		}
		closeFds(fds)
	}
	unix.Kill(-1, unix.SIGKILL)
	os.Exit(0)
}

func (s *goInitState) reap(sigs <-chan os.Signal) {
	for range sigs {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
			// ForkExec and the registration of its pid happen under s.mu, so a status that
			// arrives first waits here for them.
			s.mu.Lock()
			id, ok := s.jobs[pid]
			delete(s.jobs, pid)
			s.mu.Unlock()
			if ok {
				if s.reply(new(message).strs("exit", id).num(int64(ws))) != nil {
					unix.Kill(-1, unix.SIGKILL)
					os.Exit(0)
				}
			}
		}
	}
}

// defaultCaps is Docker's default capability set, as in init_linux.c.
var defaultCaps = []uint{unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID, unix.CAP_KILL,
	unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETPCAP, unix.CAP_NET_BIND_SERVICE, unix.CAP_NET_RAW,
	unix.CAP_SYS_CHROOT, unix.CAP_MKNOD, unix.CAP_AUDIT_WRITE, unix.CAP_SETFCAP}

// dropCaps confines this thread (and what it forks) to defaultCaps with no_new_privs; the
// seccomp filter (installKeyringFilter) comes after it.
func dropCaps() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	keep := map[uint]bool{}
	for _, c := range defaultCaps {
		keep[c] = true
	}
	for c := uint(0); c <= 63; c++ {
		if keep[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err == unix.EINVAL {
			break
		} else if err != nil {
			return err
		}
	}
	var data [2]unix.CapUserData
	for _, c := range defaultCaps {
		data[c/32].Effective |= 1 << (c % 32)
		data[c/32].Permitted |= 1 << (c % 32)
		data[c/32].Inheritable |= 1 << (c % 32)
	}
	return unix.Capset(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &data[0])
}

func (s *goInitState) exec(t *tokens, fds []int, dropped *bool) {
	id, _ := t.next()
	failed := func(stage int, err error, what string) {
		errno := syscall.EIO
		errors.As(err, &errno)
		s.reply(new(message).strs("failed", id).num(int64(stage)).num(int64(errno)).str(what))
	}
	flags, _ := t.int()
	uid, _ := t.int()
	gid, _ := t.int()
	ng, _ := t.int()
	groups := make([]uint32, 0, ng)
	for i := int64(0); i < ng; i++ {
		g, _ := t.int()
		groups = append(groups, uint32(g))
	}
	dir, _ := t.next()
	argc, err := t.int()
	if err != nil || argc < 1 {
		failed(0, syscall.EPROTO, "bad exec request")
		return
	}
	argv := make([]string, argc)
	for i := range argv {
		argv[i], _ = t.next()
	}
	envc, _ := t.int()
	env := make([]string, 0, envc)
	pathVar := DefaultPath
	for i := int64(0); i < envc; i++ {
		e, _ := t.next()
		env = append(env, e)
		if p, ok := strings.CutPrefix(e, "PATH="); ok {
			pathVar = p
		}
	}
	if flags&execPrivileged == 0 && !*dropped {
		if err := dropCaps(); err != nil {
			failed(stageCaps, err, "")
			return
		}
		// Like the capabilities, the filter is the thread's, and what it forks inherits it; it
		// comes last, as in the C init, and needs the no_new_privs dropCaps set.
		if err := installKeyringFilter(); err != nil {
			what := ""
			if err == unix.ENOSYS {
				what = "no filter for this architecture"
			}
			failed(stageSeccomp, err, what)
			return
		}
		*dropped = true
	}
	// Unlike the C init, ForkExec cannot say which step failed: check the ones a user gets wrong
	// before forking.
	if dir == "" {
		dir = "/"
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		if err == nil {
			err = syscall.ENOTDIR
		}
		failed(stageChdir, err, dir)
		return
	}
	prog, err := lookPath(argv[0], pathVar, dir)
	if err != nil {
		what := argv[0]
		if err == syscall.EACCES {
			what = prog
		}
		stage := stageLookup
		if strings.Contains(argv[0], "/") {
			stage = stageExec
		}
		failed(stage, err, what)
		return
	}
	files := make([]uintptr, 3)
	k := 0
	var nulls []int
	for i := 0; i < 3; i++ {
		if flags&(1<<i) != 0 && k < len(fds) {
			files[i] = uintptr(fds[k])
			k++
			continue
		}
		null, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			failed(stageStdio, err, "/dev/null")
			closeFds(nulls)
			return
		}
		nulls = append(nulls, null)
		files[i] = uintptr(null)
	}
	defer closeFds(nulls)
	attr := &syscall.ProcAttr{Dir: dir, Env: env, Files: files, Sys: &syscall.SysProcAttr{
		Setsid:     true,
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups, NoSetGroups: s.groupsDenied},
	}}
	if flags&execTTY != 0 {
		// ForkExec would report a stdin that is no terminal as a failed exec: check first.
		if _, err := unix.IoctlGetTermios(int(files[0]), unix.TCGETS); err != nil {
			failed(stageTTY, err, "")
			return
		}
		attr.Sys.Setctty = true
		attr.Sys.Ctty = 0
	}
	// "started" must reach the parent before the command's "exit", which the reaper sends once it
	// holds s.mu: so register and announce the command under s.mu. (A command that exits at once
	// would otherwise be reported exited before started, and the parent's Wait would wait forever.)
	s.mu.Lock()
	pid, err := syscall.ForkExec(prog, argv, attr)
	if err == nil {
		s.jobs[pid] = id
		if flags&execQuiet == 0 {
			s.reply(new(message).strs("started", id).num(int64(pid)))
		}
	}
	s.mu.Unlock()
	if err != nil {
		// ForkExec's child changes credentials, then chdirs, then execs, and reports only an
		// errno: tell a directory the user may not enter from a program it may not run.
		if stage, cerr := canEnter(dir, uint32(uid), uint32(gid), groups, s.groupsDenied); cerr != nil {
			failed(stage, cerr, dir)
			return
		}
		failed(stageExec, err, prog)
	}
}

// canEnter says whether uid/gid/groups may chdir into dir, or else at which stage they fail:
// stageCreds when the credentials themselves cannot be taken (an unmapped uid in a user
// namespace), stageChdir when they may not enter. It checks on a thread of its own whose
// credentials it changes (raw syscalls change only the calling thread), and which the runtime
// then discards because the goroutine exits locked to it.
func canEnter(dir string, uid, gid uint32, groups []uint32, groupsDenied bool) (stage int, _ error) {
	type result struct {
		stage int
		err   error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		var gp unsafe.Pointer
		if len(groups) > 0 {
			gp = unsafe.Pointer(&groups[0])
		}
		if groupsDenied {
			// The command keeps our groups, as the thread does.
		} else if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(gp), 0); e != 0 {
			res <- result{stageCreds, e}
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
			res <- result{stageCreds, e}
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
			res <- result{stageCreds, e}
			return
		}
		// access(2) checks with the real ids, which are now the command's.
		res <- result{stageChdir, unix.Access(dir, unix.X_OK)}
	}()
	r := <-res
	return r.stage, r.err
}

// lookPath finds name as execvp would over the command's PATH (not ours).
func lookPath(name, pathVar, dir string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	eacces := ""
	for _, d := range strings.Split(pathVar, ":") {
		if d == "" {
			d = "."
		}
		p := path.Join(d, name)
		if !path.IsAbs(p) {
			p = path.Join(dir, p)
		}
		st, err := os.Stat(p)
		if err != nil || st.IsDir() {
			continue
		}
		if st.Mode()&0o111 == 0 {
			eacces = p
			continue
		}
		return p, nil
	}
	if eacces != "" {
		return eacces, syscall.EACCES
	}
	return "", syscall.ENOENT
}
