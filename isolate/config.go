package isolate

import (
	"fmt"
	"path"
	"strings"
)

// Config describes a container. The zero value of every field but Lowers is a sensible default.
type Config struct {
	// Lowers are the image's layers, top first (overlay's lowerdir order). Required.
	Lowers []string
	// Upper and Work hold the container's writes. When both are empty (the default) they live in a
	// tmpfs private to the container, which is fastest and leaves nothing on disk; set them (on one
	// filesystem, not overlayfs) to keep the writes after the container ends.
	Upper, Work string
	// ScratchSize limits that tmpfs, in bytes; 0 means the kernel's default (half of RAM).
	ScratchSize int64
	// Hostname defaults to the container's ID.
	Hostname string
	// Mounts are attached in order after /dev, /proc and /sys, before the container starts.
	Mounts []Mount
	// Privileged keeps every capability for commands, does not set no_new_privs, installs no
	// seccomp filter, and leaves device nodes usable: the overlay root and volumes are not
	// nodev, /dev stays writable (see Confinement in the package documentation).
	Privileged bool
	// Env is the default environment of commands (a command's own Env replaces it). PATH and
	// HOME (the user's, from the image's /etc/passwd) are added when missing.
	Env []string
	// Dir is the default working directory of commands ("/" when empty).
	Dir string
	// Resources, when set, gives the container a cgroup with these limits (and the accounting
	// of Container.Stats); nil makes no cgroup at all.
	Resources *Resources
	// ImageID names the contents of Lowers (an image digest, as the harness passes) and promises
	// that they stay so for the life of the process. With it, Start may hand out a container it
	// set up in the background after an earlier Start with the same Config (same ImageID,
	// Lowers, Hostname, ScratchSize, Privileged and Rootless), which costs a message instead of
	// the setup; see "Prewarmed containers" in the package documentation. It is ignored for
	// containers with Mounts, Resources or their own Upper, with the Go init, and when
	// ISORUN_POOL=0. Empty (the default): every container is set up by its own Start.
	ImageID string
	// Rootless runs the container in a user namespace of its own, the caller mapped to root in
	// it (see userns_linux.go). It is always so when the process is not root, or when
	// ISORUN_ROOTLESS=1 (see Rootless); root sets it to try the rootless path.
	Rootless bool

	// initMode overrides ISORUN_INIT for this container (see initMode); tests only.
	initMode string
}

// Mount is a volume or a tmpfs inside the container.
type Mount struct {
	// Type is "bind" (Source is a host path) or "tmpfs".
	Type string
	// Source is the host path of a bind mount. A missing directory is created.
	Source string
	// Target is the absolute path inside the container; missing directories are created.
	Target string
	// ReadOnly mounts it read-only.
	ReadOnly bool
	// Options are a tmpfs's mount options ("size=64m,mode=1777").
	Options string
}

// maskedPaths are hidden from the container, as runc and Docker do: they leak host information or
// control the host kernel. Files get /dev/null bound over them, directories an empty read-only tmpfs.
var maskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
	"/sys/firmware", "/sys/devices/virtual/powercap",
}

// readonlyPaths can be read but not written: writing them would change the host kernel.
var readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}

// cleanTarget checks that a mount target is an absolute path inside the container and returns it
// cleaned.
func cleanTarget(t string) (string, error) {
	if !path.IsAbs(t) {
		return "", fmt.Errorf("mount target %q: not an absolute path", t)
	}
	c := path.Clean(t)
	if c == "/" {
		return "", fmt.Errorf("mount target %q: cannot mount over the root", t)
	}
	for _, reserved := range []string{"/proc", "/sys"} {
		if c == reserved || strings.HasPrefix(c, reserved+"/") {
			return "", fmt.Errorf("mount target %q: %s belongs to the container's kernel view", t, reserved)
		}
	}
	if c == "/dev" {
		return "", fmt.Errorf("mount target %q: /dev is the container's own", t)
	}
	return c, nil
}
