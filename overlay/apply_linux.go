package overlay

import (
	"archive/tar"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ApplyLayer applies one OCI image-spec layer (an uncompressed tar stream; callers decompress)
// onto the directory root, which may already hold earlier layers: entries replace what is there,
// `.wh.NAME` removes NAME, `.wh..wh..opq` empties its directory of what earlier layers put there.
//
// The layer is untrusted. Every name is made relative to root and refused if it leaves it; every
// parent directory is resolved by the kernel inside root (openat2 RESOLVE_IN_ROOT), so a symlink
// in the image, absolute or full of "..", resolves against the image root as it would inside the
// container and never leads out. Symlink targets are stored verbatim and never followed; hard link
// targets must stay inside root. trusted.* and *.overlay.* xattrs are refused. A refusal is an
// error naming the entry: `apply layer: entry "../../etc/x": path escapes the root`.
//
// ApplyLayer reads r to its end (past the tar trailer), so a caller hashing r sees every byte.
func ApplyLayer(root string, r io.Reader, opt ApplyOptions) error {
	rootfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("apply layer: open root %s: %w", root, err)
	}
	a := &layerApplier{
		rootfd:  rootfd,
		opt:     opt,
		dirs:    make(map[string]layerDir),
		written: make(map[string]bool),
		dirMeta: make(map[string]layerDirMeta),
		buf:     make([]byte, 256<<10),
	}
	defer a.close()
	if a.rootReal, err = os.Readlink("/proc/self/fd/" + strconv.Itoa(rootfd)); err != nil {
		return fmt.Errorf("apply layer: resolve root %s: %w", root, err)
	}

	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("apply layer to %s: read tar: %w", root, err)
		}
		err = a.entry(hdr, tr)
		a.closeRetired()
		if err != nil {
			return fmt.Errorf("apply layer: entry %q: %w", hdr.Name, err)
		}
	}
	if err := a.finishDirs(); err != nil {
		return fmt.Errorf("apply layer to %s: %w", root, err)
	}
	if _, err := io.CopyBuffer(io.Discard, r, a.buf); err != nil {
		return fmt.Errorf("apply layer to %s: read to end: %w", root, err)
	}
	return nil
}

// layerApplier is the state of one ApplyLayer call.
type layerApplier struct {
	rootfd int
	opt    ApplyOptions

	// rootReal is the root's path as the kernel reports it, to turn resolved fds back into
	// root-relative paths.
	rootReal string
	// dirs caches resolved parent directories by entry-relative path: tar streams put siblings
	// together, and resolving every parent from the root again would cost a path walk per entry.
	// Removing a directory or symlink may change what a path resolves to, so any such removal
	// flushes the cache (forgetDirs).
	dirs map[string]layerDir
	// retired holds the descriptors forgetDirs took out of dirs, closed once the entry is done:
	// the entry being applied may still hold one (the parent of a symlink it replaces).
	retired []int
	// written holds every path this layer has created, by resolved path (true for directories,
	// including the parents it created implicitly): an opaque marker hides only what earlier
	// layers put there, and a whiteout never removes what its own layer wrote. Resolved, because
	// "link/x" written through a symlink is "target/x" to a later marker in "target".
	written map[string]bool
	// dirMeta is the mode and times of every directory this layer made or touched, applied at the
	// end: creating children changes a directory's mtime, and an unprivileged caller needs u+rwx
	// on a directory (even one the image makes read-only) until its children are in.
	dirMeta map[string]layerDirMeta

	buf []byte
}

// layerDir is a resolved directory: an O_PATH fd and its path relative to the root, symlinks
// resolved.
type layerDir struct {
	fd   int
	real string
}

type layerDirMeta struct {
	mode     uint32
	hasTimes bool
	times    [2]unix.Timespec
}

func (a *layerApplier) close() {
	a.forgetDirs()
	a.closeRetired()
	unix.Close(a.rootfd)
}

// forgetDirs empties the cache of parent directories. It does not close them yet (see retired):
// the caller, or a caller up the stack, may be using one.
func (a *layerApplier) forgetDirs() {
	for k, d := range a.dirs {
		a.retired = append(a.retired, d.fd)
		delete(a.dirs, k)
	}
}

// closeRetired closes what forgetDirs took out of the cache; call it between entries.
func (a *layerApplier) closeRetired() {
	for _, fd := range a.retired {
		unix.Close(fd)
	}
	a.retired = a.retired[:0]
}

const layerDirCacheMax = 256

// parent resolves directory dir (relative to root) inside the root. With create, missing
// directories are made (0755, like docker and containerd do for parents a layer omits). The fd
// belongs to the cache: callers must not close it.
func (a *layerApplier) parent(dir string, create bool) (layerDir, error) {
	if dir == "." || dir == "" {
		return layerDir{fd: a.rootfd, real: "."}, nil
	}
	if d, ok := a.dirs[dir]; ok {
		return d, nil
	}
	fd, err := a.openInRoot(dir, unix.O_PATH|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) && create {
		pd, perr := a.parent(path.Dir(dir), true)
		if perr != nil {
			return layerDir{}, perr
		}
		if err := unix.Mkdirat(pd.fd, path.Base(dir), a.newDirMode()); err != nil && !errors.Is(err, unix.EEXIST) {
			return layerDir{}, fmt.Errorf("create parent %q: %w", dir, err)
		}
		fd, err = a.openInRoot(dir, unix.O_PATH|unix.O_DIRECTORY)
		if err == nil {
			real := path.Join(pd.real, path.Base(dir))
			a.markWritten(real, true)
			if _, ok := a.dirMeta[real]; !ok {
				a.dirMeta[real] = layerDirMeta{mode: 0o755}
			}
		}
	}
	if err != nil {
		return layerDir{}, fmt.Errorf("open parent %q: %w", dir, err)
	}
	real, err := a.realPath(fd)
	if err != nil {
		unix.Close(fd)
		return layerDir{}, fmt.Errorf("open parent %q: %w", dir, err)
	}
	if len(a.dirs) >= layerDirCacheMax {
		a.forgetDirs()
	}
	d := layerDir{fd: fd, real: real}
	a.dirs[dir] = d
	return d, nil
}

// realPath is the root-relative path of a directory fd opened inside the root.
func (a *layerApplier) realPath(fd int) (string, error) {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", err
	}
	if p == a.rootReal {
		return ".", nil
	}
	rel, ok := strings.CutPrefix(p, a.rootReal+"/")
	if !ok || a.rootReal == "/" {
		if a.rootReal == "/" {
			return strings.TrimPrefix(p, "/"), nil
		}
		return "", fmt.Errorf("resolved to %s, outside the root", p)
	}
	return rel, nil
}

// openInRoot opens p relative to the root the way the container will see it: symlinks (absolute
// ones included) and ".." resolve inside the root and cannot leave it; /proc-style magic links
// are refused outright.
func (a *layerApplier) openInRoot(p string, flags int) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for range 16 {
		fd, err := unix.Openat2(a.rootfd, p, &how)
		// EAGAIN: the kernel saw a concurrent rename and could not prove the walk safe.
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		return fd, err
	}
	return -1, unix.EAGAIN
}

// newDirMode is the mode directories are created with; the entry's mode is set at the end.
func (a *layerApplier) newDirMode() uint32 {
	if a.opt.NoChown {
		return 0o700
	}
	return 0o755
}

// markWritten records p (and, implicitly, its parents) as this layer's.
func (a *layerApplier) markWritten(p string, isDir bool) {
	a.written[p] = isDir
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		if _, ok := a.written[d]; ok {
			break
		}
		a.written[d] = true
	}
}

func (a *layerApplier) entry(hdr *tar.Header, r io.Reader) error {
	name, err := cleanLayerName(hdr.Name)
	if err != nil {
		return err
	}
	dir, base := path.Dir(name), path.Base(name)

	if name != "." {
		isWh, opaque, hidden, err := whiteoutTarget(base)
		if err != nil {
			return err
		}
		if isWh {
			if opaque {
				return a.opaque(dir)
			}
			return a.whiteout(dir, hidden)
		}
	}

	xattrs, err := layerXattrs(hdr)
	if err != nil {
		return err
	}

	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeDir:
		return a.dir(name, hdr, xattrs)
	}
	if name == "." {
		return fmt.Errorf("a %s cannot replace the root directory", layerTypeName(hdr.Typeflag))
	}

	pd, err := a.parent(dir, true)
	if err != nil {
		return err
	}
	// From here on the entry is known by its resolved path: the same file whatever symlinked
	// parent the layer named it through.
	pfd, name := pd.fd, path.Join(pd.real, base)
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont, tar.TypeGNUSparse:
		err = a.file(pfd, name, hdr, r, xattrs)
	case tar.TypeSymlink:
		err = a.symlink(pfd, name, hdr, xattrs)
	case tar.TypeLink:
		err = a.hardlink(pfd, name, hdr)
	case tar.TypeChar, tar.TypeBlock:
		err = a.device(pfd, name, hdr, xattrs)
	case tar.TypeFifo:
		err = a.node(pfd, name, hdr, unix.S_IFIFO, 0, xattrs)
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	if err != nil {
		return err
	}
	a.markWritten(name, false)
	return nil
}

// layerXattrs returns the entry's extended attributes sorted by name, refusing the forbidden ones
// before anything is created.
func layerXattrs(hdr *tar.Header) ([][2]string, error) {
	var xs [][2]string
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattrPrefix)
		if !ok {
			continue
		}
		if why := xattrRefused(name); why != "" {
			return nil, fmt.Errorf("xattr %q: %s", name, why)
		}
		xs = append(xs, [2]string{name, v})
	}
	slices.SortFunc(xs, func(x, y [2]string) int { return strings.Compare(x[0], y[0]) })
	return xs, nil
}

// create runs mk to make name's last element in pfd. When something is already there (an earlier
// layer's, or a duplicate entry: the later one wins) it is removed and mk runs again, except that
// an existing directory is kept for a directory entry (keepDir) so its children survive.
func (a *layerApplier) create(pfd int, name string, keepDir bool, mk func() error) (existed bool, err error) {
	err = mk()
	if !errors.Is(err, unix.EEXIST) {
		return false, err
	}
	base := path.Base(name)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, fmt.Errorf("inspect existing: %w", err)
	}
	if keepDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return true, nil
	}
	if err := a.removeAt(pfd, name, st.Mode); err != nil {
		return false, fmt.Errorf("replace existing: %w", err)
	}
	return false, mk()
}

// removeAt removes name (a resolved path whose last element lives in pfd; mode from lstat) and
// everything below.
func (a *layerApplier) removeAt(pfd int, name string, mode uint32) error {
	base := path.Base(name)
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := removeTreeAt(pfd, base); err != nil {
			return err
		}
		a.forgetDirs()
		prefix := name + "/"
		for k := range a.dirMeta {
			if k == name || strings.HasPrefix(k, prefix) {
				delete(a.dirMeta, k)
			}
		}
		return nil
	case unix.S_IFLNK:
		// A parent path cached through this symlink no longer resolves to the same place.
		a.forgetDirs()
	}
	return unix.Unlinkat(pfd, base, 0)
}

// removeTreeAt removes base in dirfd and, for a directory, everything below it, without following
// symlinks.
func removeTreeAt(dirfd int, base string) error {
	err := unix.Unlinkat(dirfd, base, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("remove %s: %w", base, err)
	}
	fd, err := unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EACCES) {
		// An unprivileged caller may meet a directory the image made unreadable.
		if unix.Fchmodat(dirfd, base, 0o700, 0) == nil {
			fd, err = unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
	}
	if err != nil {
		return fmt.Errorf("open %s to remove it: %w", base, err)
	}
	d := os.NewFile(uintptr(fd), base)
	defer d.Close()
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			if err := removeTreeAt(fd, n); err != nil {
				return fmt.Errorf("%s/%w", base, err)
			}
		}
		if err == io.EOF || len(names) == 0 {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", base, err)
		}
	}
	if err := unix.Unlinkat(dirfd, base, unix.AT_REMOVEDIR); err != nil {
		return fmt.Errorf("remove %s: %w", base, err)
	}
	return nil
}

// whiteout removes hidden from dir, unless this layer itself wrote it (a whiteout only hides
// lower layers).
func (a *layerApplier) whiteout(dir, hidden string) error {
	pd, err := a.parent(dir, false)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil // nothing there to hide
	}
	if err != nil {
		return err
	}
	real := path.Join(pd.real, hidden)
	if _, ok := a.written[real]; ok {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pd.fd, hidden, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("inspect %q: %w", real, err)
	}
	if err := a.removeAt(pd.fd, real, st.Mode); err != nil {
		return fmt.Errorf("remove %q: %w", real, err)
	}
	return nil
}

// opaque empties dir of everything earlier layers put there, keeping what this layer wrote
// (the marker may come before or after its siblings in the stream). Inside a directory this layer
// wrote, the same rule applies recursively: under an opaque directory nothing of the lower layers
// shows through.
func (a *layerApplier) opaque(dir string) error {
	pd, err := a.parent(dir, true)
	if err != nil {
		return err
	}
	if pd.real != "." {
		a.markWritten(pd.real, true)
	}
	return a.opaqueWalk(pd.real)
}

// opaqueWalk works on resolved paths, which resolve to themselves.
func (a *layerApplier) opaqueWalk(dir string) error {
	fd, err := a.openInRoot(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("open %q: %w", dir, err)
	}
	d := os.NewFile(uintptr(fd), dir)
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("read %q: %w", dir, err)
	}
	slices.Sort(names)
	for _, n := range names {
		p := path.Join(dir, n)
		isDir, mine := a.written[p]
		if mine {
			if isDir {
				if err := a.opaqueWalk(p); err != nil {
					return err
				}
			}
			continue
		}
		pd, err := a.parent(dir, false)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstatat(pd.fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("inspect %q: %w", p, err)
		}
		if err := a.removeAt(pd.fd, p, st.Mode); err != nil {
			return fmt.Errorf("remove %q: %w", p, err)
		}
	}
	return nil
}

func (a *layerApplier) dir(name string, hdr *tar.Header, xattrs [][2]string) error {
	pfd, base := a.rootfd, "."
	if name != "." {
		pd, err := a.parent(path.Dir(name), true)
		if err != nil {
			return err
		}
		pfd, base, name = pd.fd, path.Base(name), path.Join(pd.real, path.Base(name))
		existed, err := a.create(pfd, name, true, func() error {
			return unix.Mkdirat(pfd, base, a.newDirMode())
		})
		if err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
		if existed && a.opt.NoChown {
			// An earlier layer may have left it read-only; its final mode comes at the end.
			if err := unix.Fchmodat(pfd, base, 0o700, 0); err != nil {
				return fmt.Errorf("chmod: %w", err)
			}
		}
		a.markWritten(name, true)
	}
	if err := a.owner(pfd, base, hdr); err != nil {
		return err
	}
	if err := a.setXattrs(pfd, base, xattrs); err != nil {
		return err
	}
	m := layerDirMeta{mode: layerMode(hdr)}
	if ts, ok := layerTimes(hdr); ok {
		m.hasTimes, m.times = true, ts
	}
	a.dirMeta[name] = m
	return nil
}

// finishDirs sets directory modes and times, children before parents: a parent made read-only
// first would stop an unprivileged caller from fixing its children.
func (a *layerApplier) finishDirs() error {
	names := make([]string, 0, len(a.dirMeta))
	for n := range a.dirMeta {
		names = append(names, n)
	}
	slices.Sort(names)
	slices.Reverse(names)
	for _, n := range names {
		m := a.dirMeta[n]
		pfd, base := a.rootfd, "."
		if n != "." {
			pd, err := a.parent(path.Dir(n), false)
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
				continue // a later entry replaced a parent
			}
			if err != nil {
				return fmt.Errorf("entry %q: %w", n, err)
			}
			pfd, base = pd.fd, path.Base(n)
			var st unix.Stat_t
			if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
				continue // replaced by a later entry
			}
		}
		// base is a directory we just lstat'ed, not a symlink: following is harmless here.
		if err := unix.Fchmodat(pfd, base, m.mode, 0); err != nil {
			return fmt.Errorf("entry %q: chmod: %w", n, err)
		}
		if m.hasTimes {
			if err := unix.UtimesNanoAt(pfd, base, m.times[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("entry %q: set times: %w", n, err)
			}
		}
	}
	return nil
}

func (a *layerApplier) file(pfd int, name string, hdr *tar.Header, r io.Reader, xattrs [][2]string) error {
	base := path.Base(name)
	var fd int
	_, err := a.create(pfd, name, false, func() (err error) {
		// O_NOFOLLOW|O_EXCL: never write through whatever (a symlink) sits at the name.
		fd, err = unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if err := a.copyData(f, r); err != nil {
		return err
	}
	// chown before chmod: chown clears setuid/setgid, chmod then sets exactly the entry's bits.
	if !a.opt.NoChown {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := unix.Fchmod(fd, layerMode(hdr)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	for _, x := range xattrs {
		if err := unix.Fsetxattr(fd, x[0], []byte(x[1]), 0); err != nil {
			return fmt.Errorf("set xattr %q: %w", x[0], err)
		}
	}
	if err := a.times(pfd, base, hdr); err != nil {
		return err
	}
	return f.Close()
}

// copyData copies an entry's data, telling a broken stream (often a corrupt compressed layer)
// from a failed write. Runs of zeros of a page or more become holes: a sparse entry (GNU or PAX
// sparse, which archive/tar expands to zeros) of a few bytes in the archive can declare
// gigabytes, and writing them out would fill the cache's disk with nothing.
func (a *layerApplier) copyData(f *os.File, r io.Reader) error {
	var pos int64
	hole := false // the data so far ends in a hole not yet written
	for {
		n, rerr := r.Read(a.buf)
		if n > 0 {
			if n >= 4096 && allZero(a.buf[:n]) {
				hole = true
			} else {
				if hole {
					if _, err := f.Seek(pos, io.SeekStart); err != nil {
						return fmt.Errorf("write: %w", err)
					}
					hole = false
				}
				if _, err := f.Write(a.buf[:n]); err != nil {
					return fmt.Errorf("write: %w", err)
				}
			}
			pos += int64(n)
		}
		if rerr == io.EOF {
			if hole {
				if err := f.Truncate(pos); err != nil {
					return fmt.Errorf("write: %w", err)
				}
			}
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read layer: %w", rerr)
		}
	}
}

// allZero says whether b holds only zero bytes.
func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.NativeEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (a *layerApplier) symlink(pfd int, name string, hdr *tar.Header, xattrs [][2]string) error {
	base := path.Base(name)
	// The target is data for the container, not a path for us: stored as is, never resolved here.
	if _, err := a.create(pfd, name, false, func() error {
		return unix.Symlinkat(hdr.Linkname, pfd, base)
	}); err != nil {
		return fmt.Errorf("symlink to %q: %w", hdr.Linkname, err)
	}
	if err := a.owner(pfd, base, hdr); err != nil {
		return err
	}
	if err := a.setXattrs(pfd, base, xattrs); err != nil {
		return err
	}
	return a.times(pfd, base, hdr)
}

func (a *layerApplier) hardlink(pfd int, name string, hdr *tar.Header) error {
	target, err := cleanLayerName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	if target == "." {
		return fmt.Errorf("hard link to %q: target is the root directory", hdr.Linkname)
	}
	if target == name {
		return nil // a link to itself: nothing to do, and replacing it would remove the target
	}
	td, err := a.parent(path.Dir(target), false)
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	tfd := td.fd
	tbase := path.Base(target)
	var st unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hard link to %q: target is a directory", hdr.Linkname)
	}
	// Flags 0: link the target entry itself; if it is a symlink the link is to the symlink.
	if _, err := a.create(pfd, name, false, func() error {
		return unix.Linkat(tfd, tbase, pfd, path.Base(name), 0)
	}); err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	return nil
}

func (a *layerApplier) device(pfd int, name string, hdr *tar.Header, xattrs [][2]string) error {
	switch a.opt.Devices {
	case DevicesSkip:
		return nil
	case DevicesPlaceholder:
		h := *hdr
		h.Typeflag, h.Size = tar.TypeReg, 0
		return a.file(pfd, name, &h, strings.NewReader(""), xattrs)
	}
	kind := uint32(unix.S_IFCHR)
	if hdr.Typeflag == tar.TypeBlock {
		kind = unix.S_IFBLK
	}
	return a.node(pfd, name, hdr, kind, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))), xattrs)
}

func (a *layerApplier) node(pfd int, name string, hdr *tar.Header, kind uint32, dev int, xattrs [][2]string) error {
	base := path.Base(name)
	if _, err := a.create(pfd, name, false, func() error {
		return unix.Mknodat(pfd, base, kind|0o600, dev)
	}); err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	if err := a.owner(pfd, base, hdr); err != nil {
		return err
	}
	// base is the node just made, not a symlink: following is harmless.
	if err := unix.Fchmodat(pfd, base, layerMode(hdr), 0); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := a.setXattrs(pfd, base, xattrs); err != nil {
		return err
	}
	return a.times(pfd, base, hdr)
}

func (a *layerApplier) owner(pfd int, base string, hdr *tar.Header) error {
	if a.opt.NoChown {
		return nil
	}
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	return nil
}

// setXattrs sets xattrs on base in pfd without following it. There is no fd-relative lsetxattr
// before Linux 6.13, so the path goes through the directory fd's /proc entry.
func (a *layerApplier) setXattrs(pfd int, base string, xattrs [][2]string) error {
	if len(xattrs) == 0 {
		return nil
	}
	p := "/proc/self/fd/" + strconv.Itoa(pfd) + "/" + base
	for _, x := range xattrs {
		if err := unix.Lsetxattr(p, x[0], []byte(x[1]), 0); err != nil {
			return fmt.Errorf("set xattr %q: %w", x[0], err)
		}
	}
	return nil
}

func (a *layerApplier) times(pfd int, base string, hdr *tar.Header) error {
	ts, ok := layerTimes(hdr)
	if !ok {
		return nil
	}
	if err := unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// layerMode is the entry's permission bits, setuid/setgid/sticky included: only these, so a bit
// the entry lacks is never kept from a parent or an earlier layer.
func layerMode(hdr *tar.Header) uint32 {
	return uint32(hdr.Mode) & 0o7777
}

func layerTimes(hdr *tar.Header) ([2]unix.Timespec, bool) {
	if hdr.ModTime.IsZero() {
		return [2]unix.Timespec{}, false
	}
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	return [2]unix.Timespec{layerTimespec(at), layerTimespec(hdr.ModTime)}, true
}

func layerTimespec(t time.Time) unix.Timespec {
	ts, err := unix.TimeToTimespec(t)
	if err != nil {
		return unix.Timespec{} // out of range for the kernel: the epoch
	}
	return ts
}

func layerTypeName(t byte) string {
	switch t {
	case tar.TypeReg, tar.TypeRegA:
		return "regular file"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "fifo"
	}
	return fmt.Sprintf("entry of type %q", t)
}
