package overlay

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// fsconfigStringMax is the longest string value fsconfig(2) takes: the
// kernel copies it with strndup_user(value, 256), so 255 bytes and the NUL.
// A longer path fails with EINVAL (checked on 6.18), which is why long layer
// paths are passed as /proc/self/fd/N instead.
const fsconfigStringMax = 255

// openOptions are knobs for tests; Open uses the zero value.
type openOptions struct {
	// noLowerdirPlus takes the path of kernels before 6.8 (one escaped
	// lowerdir= string) even where "lowerdir+" works, so that path is tested
	// on every kernel.
	noLowerdirPlus bool
	// stringMax overrides fsconfigStringMax, to test the limits with short
	// paths.
	stringMax int
}

// Open creates the overlay as a detached mount (fsopen, fsconfig, fsmount)
// and returns an O_PATH descriptor of its root. The mount is in no mount
// table until it is attached with move_mount, and it goes away when the
// descriptor and everything using the mount are gone: a killed process leaves
// nothing to clean up. Close the file when done with it.
func Open(cfg Config) (*os.File, error) { return open(cfg, openOptions{}) }

func open(cfg Config, o openOptions) (*os.File, error) {
	if o.stringMax == 0 {
		o.stringMax = fsconfigStringMax
	}
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("overlay: mount %s: %w", cfg.describe(), err)
	}
	f, err := create(cfg, o, !o.noLowerdirPlus && hasLowerdirPlus())
	if err != nil {
		return nil, fmt.Errorf("overlay: mount %s: %w", cfg.describe(), err)
	}
	return f, nil
}

func (c Config) check() error {
	switch {
	case len(c.Lowers) == 0:
		return errors.New("no lowers")
	case (c.Upper == "") != (c.Work == ""):
		return errors.New("upper and work must be given together")
	case c.Upper == "" && len(c.Lowers) < 2:
		// The kernel refuses this with a bare EINVAL and a line in dmesg.
		return errors.New("a read-only overlay (no upper) needs at least two lowers")
	}
	for _, l := range c.Lowers {
		if l == "" {
			return errors.New("empty lower path")
		}
	}
	return nil
}

func (c Config) describe() string {
	var b strings.Builder
	b.WriteString("lowers ")
	b.WriteString(strings.Join(c.Lowers, ":"))
	if c.Upper != "" {
		b.WriteString(" upper ")
		b.WriteString(c.Upper)
		b.WriteString(" work ")
		b.WriteString(c.Work)
	}
	return b.String()
}

// fdNames opens directories O_PATH so the kernel can be given the short name
// /proc/self/fd/N instead of a path that does not fit an option. The
// descriptors must stay open until FSCONFIG_CMD_CREATE has resolved them.
type fdNames struct{ fds []int }

func (n *fdNames) name(path string) (string, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &fs.PathError{Op: "open", Path: path, Err: err}
	}
	n.fds = append(n.fds, fd)
	return "/proc/self/fd/" + strconv.Itoa(fd), nil
}

func (n *fdNames) close() {
	for _, fd := range n.fds {
		unix.Close(fd)
	}
	n.fds = nil
}

func create(cfg Config, o openOptions, plus bool) (_ *os.File, err error) {
	var names fdNames
	defer names.close()

	// An option value the kernel would refuse is passed as a descriptor
	// name instead: too long for fsconfig, or holding a comma where the
	// kernel may be one whose overlayfs still uses the legacy fs_context
	// (before 6.5), which refuses commas in values, escaped or not. escaped
	// says whether the kernel unescapes the value.
	value := func(p string, escaped bool) (string, error) {
		v := p
		if escaped {
			v = escapeLayer(p)
		}
		if len(v) <= o.stringMax && (plus || !strings.Contains(p, ",")) {
			return v, nil
		}
		return names.name(p)
	}

	type option struct{ key, value string }
	var opts []option
	if plus {
		// "lowerdir+" takes one path per call, verbatim: no escaping and no
		// page limit on the whole stack.
		for _, l := range cfg.Lowers {
			v, err := value(l, false)
			if err != nil {
				return nil, err
			}
			opts = append(opts, option{"lowerdir+", v})
		}
	} else {
		lowerdir, err := joinLowers(cfg.Lowers, o.stringMax, &names)
		if err != nil {
			return nil, err
		}
		opts = append(opts, option{"lowerdir", lowerdir})
	}
	if cfg.Upper != "" {
		// The kernel unescapes upperdir= and workdir= even through fsconfig.
		up, err := value(cfg.Upper, true)
		if err != nil {
			return nil, err
		}
		work, err := value(cfg.Work, true)
		if err != nil {
			return nil, err
		}
		opts = append(opts, option{"upperdir", up}, option{"workdir", work})
	}
	// index=off: the index ties the upper to these exact lower inodes and
	// makes reusing an upper (or a lower) in another mount fail; we never
	// export over NFS, so it buys nothing.
	// metacopy=off: a metadata-only copy-up would leave upper files without
	// their data, so the upper alone could not be diffed or committed.
	opts = append(opts, option{"index", "off"}, option{"metacopy", "off"})
	if !cfg.UserXattr {
		// redirect_dir=off: renaming a lower directory then fails with EXDEV
		// and tools copy it, so the upper states every change by name; a
		// redirect would hide a rename inside an xattr Diff cannot follow
		// without the lower's history. The kernel refuses it with userxattr,
		// where redirects are never created anyway.
		opts = append(opts, option{"redirect_dir", "off"})
	}

	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	for _, opt := range opts {
		if err := unix.FsconfigSetString(fsfd, opt.key, opt.value); err != nil {
			return nil, fmt.Errorf("fsconfig %s=%s: %w%s", opt.key, opt.value, err, fsLog(fsfd))
		}
	}
	if cfg.UserXattr {
		if err := unix.FsconfigSetFlag(fsfd, "userxattr"); err != nil {
			return nil, fmt.Errorf("fsconfig userxattr: %w%s", err, fsLog(fsfd))
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		// overlayfs explains most refusals only in the kernel log (dmesg).
		return nil, fmt.Errorf("create: %w%s", err, fsLog(fsfd))
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fsmount: %w%s", err, fsLog(fsfd))
	}
	return os.NewFile(uintptr(mfd), "overlay:"+cfg.describe()), nil
}

// joinLowers builds the lowerdir= value for kernels without "lowerdir+":
// escaped paths joined by ':', a path with a comma named /proc/self/fd/N
// (legacy fs_context kernels refuse commas in values). When that is longer
// than one fsconfig string, every lower is named /proc/self/fd/N; when even
// that does not fit, it fails with ErrTooManyLowers rather than let the
// kernel cut the list.
func joinLowers(lowers []string, max int, names *fdNames) (string, error) {
	byFd := make(map[int]string) // index of a lower -> its descriptor name
	fdName := func(i int) (string, error) {
		if n, ok := byFd[i]; ok {
			return n, nil
		}
		n, err := names.name(lowers[i])
		byFd[i] = n
		return n, err
	}
	parts := make([]string, len(lowers))
	for i, l := range lowers {
		parts[i] = escapeLayer(l)
		if strings.Contains(l, ",") {
			n, err := fdName(i)
			if err != nil {
				return "", err
			}
			parts[i] = n
		}
	}
	s := strings.Join(parts, ":")
	if len(s) <= max {
		return s, nil
	}
	full := len(s)
	for i := range lowers {
		n, err := fdName(i)
		if err != nil {
			return "", err
		}
		parts[i] = n
	}
	s = strings.Join(parts, ":")
	if len(s) <= max {
		return s, nil
	}
	return "", fmt.Errorf("%d lowers need %d bytes of lowerdir (%d as /proc/self/fd names) but one fsconfig option holds %d, and this kernel has no lowerdir+ (linux 6.8): %w",
		len(lowers), full, len(s), max, ErrTooManyLowers)
}

var lowerdirPlus struct {
	once sync.Once
	ok   bool
}

// hasLowerdirPlus reports whether overlayfs takes "lowerdir+" (linux 6.8).
// Kernels 6.5-6.7 refuse the key in fsconfig. Before 6.5 overlayfs uses the
// legacy fs_context, which accepts any key and fails only at create time, so
// a key no kernel knows tells those apart: a native context refuses it.
func hasLowerdirPlus() bool {
	lowerdirPlus.once.Do(func() {
		fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
		if err != nil {
			return
		}
		defer unix.Close(fd)
		if unix.FsconfigSetString(fd, "lowerdir+", "/") != nil {
			return
		}
		lowerdirPlus.ok = unix.FsconfigSetString(fd, "isorun-probe", "x") != nil
	})
	return lowerdirPlus.ok
}

// fsLog returns what the kernel logged into the fs context, if anything,
// formatted to append to an error.
func fsLog(fd int) string {
	var msgs []string
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return " (kernel: " + strings.Join(msgs, "; ") + ")"
}

// Mount creates the overlay like Open and attaches it at target, for callers
// that want a visible mount. Unmount it with Unmount.
func Mount(target string, cfg Config) error {
	f, err := Open(cfg)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.MoveMount(int(f.Fd()), "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("overlay: move_mount %s onto %s: %w", cfg.describe(), target, err)
	}
	return nil
}

// Unmount detaches the mount at target. It does not follow a symlink at
// target and does not detach lazily: a busy mount is an error to report, not
// to hide.
func Unmount(target string) error {
	if err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW); err != nil {
		return fmt.Errorf("overlay: unmount %s: %w", target, err)
	}
	return nil
}

// Remove deletes dir (an upper, work or state directory) and everything in
// it. It refuses, wrapping EBUSY, while anything is mounted at or below dir:
// removing through a live overlay or bind mount would delete the data behind
// it, such as a volume's host directory. It makes directories the kernel left
// without permissions (work/work is mode 000) removable first, so it also
// works without CAP_DAC_OVERRIDE.
func Remove(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("overlay: remove %s: %w", dir, err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("overlay: remove %s: %w", dir, err)
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("overlay: remove %s: %w", dir, err)
	}
	for _, mp := range mountPoints(string(info)) {
		for _, d := range []string{abs, resolved} {
			if within(mp, d) {
				return fmt.Errorf("overlay: remove %s: %s is mounted: %w", dir, mp, unix.EBUSY)
			}
		}
	}
	if err := makeRemovable(resolved); err != nil {
		return fmt.Errorf("overlay: remove %s: %w", dir, err)
	}
	if err := os.RemoveAll(abs); err != nil {
		return fmt.Errorf("overlay: remove %s: %w", dir, err)
	}
	return nil
}

// makeRemovable gives every directory under root owner rwx, so RemoveAll can
// list and empty it. A directory on another device is a mount that appeared
// after the mountinfo check: stop rather than cross it.
func makeRemovable(root string) error {
	var rst unix.Stat_t
	if err := unix.Lstat(root, &rst); err != nil {
		return &fs.PathError{Op: "lstat", Path: root, Err: err}
	}
	if rst.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		if st.Dev != rst.Dev {
			return fmt.Errorf("%s is on another filesystem (a mount?): %w", p, unix.EBUSY)
		}
		if st.Mode&0o700 != 0o700 {
			if err := unix.Chmod(p, (st.Mode|0o700)&0o7777); err != nil {
				return &fs.PathError{Op: "chmod", Path: p, Err: err}
			}
		}
		return nil
	})
}
