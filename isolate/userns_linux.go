package isolate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Rootless containers run in a user namespace of their own, made together with the other
// namespaces by the same clone (so the mount, net, pid, uts and ipc namespaces belong to it, which
// is what lets its root mount overlay, tmpfs, proc and sysfs there). The caller is mapped to root
// inside, and nobody else: one uid and one gid mapping, setgroups denied, which is all an
// unprivileged process may write without a setuid helper (newuidmap). What changes:
//
//   - The init maps itself: with the C init forked by the zygote, the first setup op ("userns")
//     writes its uid_map and gid_map (it is the namespace's creator, with every capability in
//     it, until it execs nothing). An exec'd init (ISORUN_INIT=exec or go, or without cgo) would
//     lose those capabilities in its execve while still unmapped, so ForkExec writes its maps
//     from the parent before the exec (SysProcAttr.UidMappings) and no op is sent.
//   - The overlay is mounted with userxattr: its whiteouts and opaque directories are marked
//     with user.overlay.* (which overlay.Diff reads), since trusted.* needs CAP_SYS_ADMIN in the
//     initial namespace. redirect_dir=off is not passed: the kernel refuses it with userxattr,
//     where redirects are never created anyway (the mode is "nofollow").
//   - /dev's nodes are the host's, bind-mounted (mknod of a real device is refused in a user
//     namespace); /dev/pts has no gid=5 (no tty group is mapped).
//   - /sys is a sysfs of the container's net namespace; should the kernel refuse it (a /sys with
//     mounts hiding parts of it), the init binds the host's /sys read-only instead.
//   - /proc is mounted before the old root is detached, as always: the kernel only allows a new
//     proc in a user namespace while a fully visible one is in its mount namespace.
//   - Commands keep the caller's supplementary groups (setgroups is denied); they run as root
//     (uid 0 inside, the caller outside), with the same capability drop as root containers, which
//     confines them to the user namespace's capabilities anyway. Other uids are not mapped: a
//     command cannot switch to uid 1000, and a file owned by anyone but the caller shows as
//     nobody (65534) inside and cannot be changed (overlay's copy-up cannot keep its owner).
//   - The prewarmed pool works for them too: the zygote forks pool inits with CLONE_NEWUSER and
//     they map themselves to the zygote's own ids (the caller's) before prewarming; the pool
//     holds inits of one kind at a time, that of the last Start.

// rootlessOneID explains why a rootless command cannot run as another user.
const rootlessOneID = "a rootless container maps only uid 0 and gid 0, which are the caller outside"

// rootlessEnv asks for rootless containers even as root (to test that path): ISORUN_ROOTLESS=1.
const rootlessEnv = "ISORUN_ROOTLESS"

// Rootless says whether this process's containers run in a user namespace: when it is not root,
// or when ISORUN_ROOTLESS=1 asks for it. Config.Rootless asks for one container.
func Rootless() bool {
	return os.Geteuid() != 0 || os.Getenv(rootlessEnv) == "1"
}

// Rootless says whether the container runs in a user namespace of its own.
func (c *Container) Rootless() bool { return c.cfg.Rootless }

// cloneFlags are the namespaces of this container's init.
func (c *Container) cloneFlags() uintptr {
	if c.cfg.Rootless {
		return namespaces | unix.CLONE_NEWUSER
	}
	return namespaces
}

// mapCaller has ForkExec make the init's user namespace and write its maps before the exec: the
// caller's euid and egid as root, setgroups denied.
func mapCaller(sys *syscall.SysProcAttr) {
	sys.Cloneflags |= unix.CLONE_NEWUSER
	sys.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
	sys.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	sys.GidMappingsEnableSetgroups = false
}

// usernsOp is the setup's first op for a rootless init that maps itself (see above).
func (c *Container) usernsOp(m *message) {
	if c.cfg.Rootless && initMode(&c.cfg) == modeZygote {
		m.str("userns").num(int64(os.Geteuid())).num(int64(os.Getegid()))
	}
}

// overlayOptions are the overlay's mount options beyond its layers. index=off and metacopy=off
// keep the upper a plain, self-contained layer; redirect_dir=off makes renaming a lower directory
// copy it up instead of writing a redirect xattr that only this kernel's overlay could read back.
// Rootless, userxattr replaces redirect_dir=off (see above).
func (c *Container) overlayOptions() string {
	if c.cfg.Rootless {
		return "userxattr,index=off,metacopy=off"
	}
	return "index=off,metacopy=off,redirect_dir=off"
}

// devFlag is the dev op's ROOTLESS argument.
func (c *Container) devFlag() string {
	if c.cfg.Rootless {
		return "1"
	}
	return "0"
}

// explainRootless adds to a failed rootless start what on this machine stops user namespaces,
// when the failure looks like one of theirs (EPERM, EACCES, EINVAL, ENOSPC) and something does.
func (c *Container) explainRootless(err error) error {
	if err == nil || !c.cfg.Rootless {
		return err
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	switch errno {
	case unix.EPERM, unix.EACCES, unix.EINVAL, unix.ENOSPC:
	default:
		return err
	}
	if why := RootlessBlocker(); why != nil {
		return fmt.Errorf("%w (rootless: %v)", err, why)
	}
	return err
}

// RootlessBlocker says what stops rootless containers here, from the kernel's version and
// settings: nil when nothing known does. It names the setting:
//
//   - a kernel without user namespaces, or user.max_user_namespaces=0;
//   - not root: kernel.unprivileged_userns_clone=0 (Debian's and older Ubuntu's switch), or
//     kernel.apparmor_restrict_unprivileged_userns=1 (Ubuntu 23.10 and later: the namespace is
//     made but has no capabilities);
//   - Linux before 5.11, whose overlayfs cannot be mounted in a user namespace;
//   - a /proc with mounts over parts of it (a container runtime's masks): the kernel then refuses
//     a new proc in a user namespace ("mount_too_revealing").
func RootlessBlocker() error {
	_, err := os.Stat("/proc/self/ns/user")
	return rootlessBlocker(os.Geteuid(), err == nil, readSysctl, kernelRelease(), procSubmounts())
}

// rootlessBlocker is RootlessBlocker over its inputs, for tests. sysctl returns a setting's
// value and whether it exists.
func rootlessBlocker(euid int, hasUserns bool, sysctl func(string) (int, bool), release string, procMounts []string) error {
	if !hasUserns {
		return errors.New("this kernel has no user namespaces (CONFIG_USER_NS)")
	}
	if n, ok := sysctl("user/max_user_namespaces"); ok && n == 0 {
		return errors.New("user namespaces are disabled (sysctl user.max_user_namespaces=0)")
	}
	if euid != 0 {
		if n, ok := sysctl("kernel/unprivileged_userns_clone"); ok && n == 0 {
			return errors.New("unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone=0)")
		}
		if n, ok := sysctl("kernel/apparmor_restrict_unprivileged_userns"); ok && n != 0 {
			return errors.New("AppArmor denies unprivileged user namespaces their capabilities (sysctl kernel.apparmor_restrict_unprivileged_userns=1)")
		}
	}
	if major, minor, ok := parseRelease(release); ok && (major < 5 || major == 5 && minor < 11) {
		return fmt.Errorf("overlayfs cannot be mounted in a user namespace before Linux 5.11 (this kernel is %s)", release)
	}
	if len(procMounts) > 0 {
		return fmt.Errorf("the kernel refuses a new /proc in a user namespace while the host's /proc has mounts over parts of it (%s; a container runtime's masks)", strings.Join(procMounts, ", "))
	}
	return nil
}

func readSysctl(name string) (int, bool) {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return n, err == nil
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// parseRelease reads "6.18.4-foo" as 6, 18.
func parseRelease(r string) (major, minor int, ok bool) {
	f := strings.SplitN(r, ".", 3)
	if len(f) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(f[0])
	minor, err2 := strconv.Atoi(strings.TrimRightFunc(f[1], func(r rune) bool { return r < '0' || r > '9' }))
	return major, minor, err1 == nil && err2 == nil
}

// procSubmounts lists what is mounted below /proc that makes the kernel refuse a new proc in a
// user namespace: anything but the empty directories proc keeps for mounts (binfmt_misc's).
func procSubmounts() []string {
	mounts, _ := mountTable()
	var out []string
	for _, m := range mounts {
		if !strings.HasPrefix(m.point, "/proc/") || m.point == "/proc/sys/fs/binfmt_misc" {
			continue
		}
		out = append(out, m.point)
	}
	return out
}

// inUserns says whether this process is in a user namespace other than the initial one, whose
// uid_map maps the whole range onto itself.
func inUserns() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}

// ErrLowerHasMounts is what a rootless Start fails with (wrapped, naming the lower and the
// mounts) when an image layer has mounts below it, as the host's root always has (/proc, /sys,
// /dev). In a user namespace the kernel locks every mount it inherited to its parent, so that
// nothing they hide can be revealed, and overlayfs refuses a lower with locked mounts below it
// (it clones each lower without them: the kernel logs "overlayfs: failed to clone lowerpath"
// and the mount fails with EINVAL). So fixtures.Host() cannot be a rootless container's image.
var ErrLowerHasMounts = errors.New("overlayfs refuses, in a user namespace, a lower with mounts below it (the kernel locks them there so that what they hide stays hidden)")

// RootlessLowerBlocker says why lower cannot be a layer of a rootless container: an error
// wrapping ErrLowerHasMounts when something is mounted below it; nil when nothing known stops it.
func RootlessLowerBlocker(lower string) error {
	mounts, err := mountTable()
	if err != nil {
		return nil
	}
	return lowerBlocker(lower, mounts)
}

// lowerBlocker is RootlessLowerBlocker over a mount table read once for all the lowers.
func lowerBlocker(lower string, mounts []mountInfo) error {
	dir, err := filepath.EvalSymlinks(lower)
	if err != nil {
		return nil // Start names a missing lower itself
	}
	var below []string
	for _, m := range mounts {
		if rel, ok := underPath(m.point, dir); ok && rel != "" {
			below = append(below, m.point)
		}
	}
	if len(below) == 0 {
		return nil
	}
	slices.Sort(below)
	below = slices.Compact(below)
	more := ""
	if len(below) > 4 {
		more = fmt.Sprintf(" and %d more", len(below)-4)
		below = below[:4]
	}
	return fmt.Errorf("lower %s has mounts below it (%s%s): %w", lower, strings.Join(below, ", "), more, ErrLowerHasMounts)
}

// checkRootlessLowers fails a rootless container whose layers overlayfs would refuse, before any
// process is made, with the reason instead of the kernel's bare EINVAL.
func (c *Container) checkRootlessLowers() error {
	if !c.cfg.Rootless {
		return nil
	}
	mounts, err := mountTable()
	if err != nil {
		return nil
	}
	for _, l := range c.cfg.Lowers {
		if err := lowerBlocker(l, mounts); err != nil {
			return fmt.Errorf("isolate: start rootless container: %w", err)
		}
	}
	return nil
}
