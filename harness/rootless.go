package harness

import (
	"fmt"
	"sync"

	"github.com/isorun/isorun/isolate"
)

// Rootless says whether this process's containers run rootless: in a user namespace of their
// own, the caller mapped to root inside. They do when the process is not root, or when
// ISORUN_ROOTLESS=1 asks for it; WithRootless asks for one container. What differs:
//
//   - Only root exists inside: commands run as uid 0 (which is the caller outside), WithUser with
//     any other user fails saying so, and so does an image whose config names another user.
//   - Files of the image owned by anyone but the caller show as nobody (65534) inside and cannot
//     be changed (the copy-up cannot keep their owner). Images extracted as a user are all the
//     user's (their owners cannot be set), so inside they are all root's: an image's uid 1000
//     shows as 0.
//   - Device nodes of an image extracted as a user are empty placeholder files; /dev is the
//     host's null, zero, full, random, urandom and tty, bind-mounted.
//   - Commands keep the caller's supplementary groups (setgroups is denied in the namespace).
//   - /sys is the host's, read-only, where the kernel refuses a sysfs of the container's own.
//   - fixtures.Host() cannot be the image: overlayfs refuses, in a user namespace, a lower with
//     mounts below it (the kernel locks them so that what they hide stays hidden), and the
//     host's root always has some (/proc, /dev, ...). Container fails saying so
//     (isolate.ErrLowerHasMounts); so does any image directory with mounts below it.
//   - Resource limits (WithMemory, WithPids, WithCPU, WithAccounting) need a cgroup the user may
//     write (a delegated one, as systemd gives a user session on cgroup v2); without one they
//     fail saying so (isolate.ResourcesBlocker says it beforehand).
//   - Layers and archives record what the container saw: WriteLayer, and an image exported by
//     a user (isorun run --commit), write the user's files as root's (0:0).
//   - Commit works the same, but a layer committed from a rootless container marks its opaque
//     directories for rootless containers only (user.overlay.*), and one committed as root for
//     root containers only (trusted.overlay.*): starting the other kind on it fails, saying so.
//
// What the kernel must allow: user namespaces (user.max_user_namespaces > 0, and for a user,
// neither kernel.unprivileged_userns_clone=0 nor kernel.apparmor_restrict_unprivileged_userns=1),
// overlayfs in them (Linux 5.11), and a /proc with nothing mounted over it. Where something
// stops them, Container skips naming it (fails with ISORUN_REQUIRE=1).
func Rootless() bool { return isolate.Rootless() }

// blocker is why containers cannot run in this process, nil when they can: rootless ones
// (Rootless, or asked by WithRootless) need what the kernel may refuse.
func blocker(rootless bool) error {
	if !rootless && !isolate.Rootless() {
		return nil
	}
	if err := rootlessBlocked(); err != nil {
		return fmt.Errorf("rootless containers cannot run here: %w", err)
	}
	return nil
}

// rootlessBlocked is isolate.RootlessBlocker, asked once per process: the kernel settings it
// reads do not change under a test run, and every Container would read them again.
var rootlessBlocked = sync.OnceValue(isolate.RootlessBlocker)

// WithRootless runs the container rootless even when the process is root (as every container
// is when it is not); see Rootless.
func WithRootless() Option {
	return func(c *config) { c.rootless = true }
}

// Rootless says whether the container runs rootless (see the package function Rootless).
func (e *Engine) Rootless() bool { return e.c.Rootless() }

// Rootless says whether the container runs rootless (see the package function Rootless).
func (s *Sandbox) Rootless() bool { return s.c.Rootless() }

// checkRootlessUser refuses a user other than root in a rootless container, where it cannot be.
func (e *Engine) checkRootlessUser(user string) error {
	if !e.c.Rootless() || e.uid == 0 && e.gid == 0 {
		return nil
	}
	return fmt.Errorf("user %q (uid %d, gid %d): a rootless container maps only root (uid 0 inside is you outside); run as root for other users", user, e.uid, e.gid)
}
