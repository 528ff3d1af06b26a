package harness

import (
	"time"

	"github.com/isorun/isorun/isolate"
)

// Option configures a container; pass them to Container.
type Option func(*config)

type config struct {
	mounts     []isolate.Mount
	env        []string
	hostname   string
	dir        string
	user       string
	timeout    time.Duration
	privileged bool
	keep       bool
	rootless   bool
	resources  *isolate.Resources // nil: no cgroup
}

// WithVolume mounts the host directory (or file) hostDir at containerDir, read-only if asked.
// A missing host directory is created; writes to a read-write volume land on the host and stay
// after the container. A volume's content is never part of Diff or Commit.
func WithVolume(hostDir, containerDir string, readOnly bool) Option {
	return func(c *config) {
		c.mounts = append(c.mounts, isolate.Mount{Type: "bind", Source: hostDir, Target: containerDir, ReadOnly: readOnly})
	}
}

// WithTmpfs mounts an empty tmpfs at dir (e.g. "/run"); options are tmpfs mount options such as
// "size=64m,mode=1777". Like a volume, its content is not part of Diff or Commit.
func WithTmpfs(dir string, options ...string) Option {
	return func(c *config) {
		opts := ""
		for i, o := range options {
			if i > 0 {
				opts += ","
			}
			opts += o
		}
		c.mounts = append(c.mounts, isolate.Mount{Type: "tmpfs", Target: dir, Options: opts})
	}
}

// WithEnv adds KEY=VALUE pairs to the environment of every command, over the image's.
func WithEnv(kv ...string) Option {
	return func(c *config) { c.env = append(c.env, kv...) }
}

// WithHostname sets the container's hostname (default: its ID).
func WithHostname(name string) Option {
	return func(c *config) { c.hostname = name }
}

// WithWorkdir sets the working directory of commands (default: the image's, then "/").
func WithWorkdir(dir string) Option {
	return func(c *config) { c.dir = dir }
}

// WithUser runs commands as user, written as docker's --user: "1000", "1000:1000", "user",
// "user:group" (names are looked up in the container's /etc/passwd and /etc/group).
func WithUser(user string) Option {
	return func(c *config) { c.user = user }
}

// WithTimeout kills the whole container after d; the test then fails, naming the container.
func WithTimeout(d time.Duration) Option {
	return func(c *config) { c.timeout = d }
}

// WithPrivileged gives commands every capability, no no_new_privs and no seccomp filter, and
// device nodes that open: the image's root and volumes are not mounted nodev and /dev stays
// writable. The default keeps Docker's default capability set, refuses the keyring system
// calls and opens no device node but /dev's own (see SECURITY.md).
func WithPrivileged() Option {
	return func(c *config) { c.privileged = true }
}

// WithKeep keeps the container's upper layer and command log on disk after the test, as the
// ISORUN_KEEP=1 environment variable does for every container; the test log says where.
func WithKeep() Option {
	return func(c *config) { c.keep = true }
}

// WithMemory limits the memory the container's processes use together to bytes (page cache and
// the container's writes, which live in memory, included; no swap on top). Past it the kernel's
// OOM killer kills the biggest of them: Result.OOMKilled and ExitError.OOMKilled say so. See
// ParseMemory for "64m"-style sizes.
func WithMemory(bytes int64) Option {
	return func(c *config) { c.res().Memory = bytes }
}

// WithPids limits the number of processes (threads included, the container's init too) the
// container may have at once; a fork past it fails (Result.PidsLimited). A fork bomb stays in.
func WithPids(n int64) Option {
	return func(c *config) { c.res().Pids = n }
}

// WithCPU limits the container to cpus CPUs' worth of time (0.5: half of one CPU; 2: two).
func WithCPU(cpus float64) Option {
	return func(c *config) { c.res().CPU = cpus }
}

// WithAccounting gives the container a cgroup without limits, for Stats alone (every limit
// option implies it).
func WithAccounting() Option {
	return func(c *config) { c.res() }
}

func (c *config) res() *isolate.Resources {
	if c.resources == nil {
		c.resources = &isolate.Resources{}
	}
	return c.resources
}
