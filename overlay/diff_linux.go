package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Diff returns how the merged view of an overlay differs from its lowers:
// the changes a container made, sorted by path. upper is the overlay's
// upperdir, lowers its lowerdirs top first; the lowers may hold whiteouts and
// opaque directories of their own (a stack of image layers). It works while
// the overlay is mounted (the container should be quiescent) and after.
//
// The cost follows the upper, not the image: Diff walks the upper and looks
// into the lowers only at the paths the upper names, plus one directory
// listing per opaque directory that hides a lower one.
//
// What counts (the lower view L against the merged view M):
//   - a path in M and not in L is Added, and so is everything below it;
//   - a path in L and not in M is Deleted, once: a deleted directory's
//     children are not listed, nor are those of a directory replaced by a
//     file;
//   - a path in both is Modified when its type, permission bits (with
//     setuid, setgid, sticky), owner, xattrs, content, symlink target or
//     device number differ. Times, link counts and directory sizes do not
//     count, so a copy-up that changed nothing (touch, chmod and back) is
//     not reported;
//   - "/" itself is never reported.
//
// An upper made with redirect_dir or metacopy on cannot be read this way (a
// renamed directory or a file's data would live in the lowers under another
// name); Diff fails naming the path rather than guess. Open never enables
// them.
func Diff(upper string, lowers []string) (Changes, error) {
	d := &differ{upper: upper}
	if err := d.run(lowers); err != nil {
		return nil, fmt.Errorf("overlay: diff %s: %w", upper, err)
	}
	slices.SortFunc(d.out, func(a, b Change) int { return strings.Compare(a.Path, b.Path) })
	return d.out, nil
}

// stackDir is one directory of one lower layer that takes part in a merged
// directory.
type stackDir struct {
	path string
	// xwhiteouts: the directory is marked (overlay.opaque=x) as holding
	// whiteouts in their xattr form, zero-size files with overlay.whiteout,
	// which the kernel checks only in directories so marked.
	xwhiteouts bool
}

// lowerEntry is what the lower view L holds at one path.
type lowerEntry struct {
	exists bool
	path   string // in the topmost layer that has it
	st     unix.Stat_t
	// stack is, for a directory, the directory in every layer that merges
	// into it, top first, ending at the first opaque one.
	stack []stackDir
}

func (e lowerEntry) isDir() bool { return e.exists && e.st.Mode&unix.S_IFMT == unix.S_IFDIR }

type differ struct {
	upper string
	out   Changes
}

func (d *differ) add(k Kind, p string) { d.out = append(d.out, Change{Kind: k, Path: p}) }

func (d *differ) run(lowers []string) error {
	var st unix.Stat_t
	if err := unix.Lstat(d.upper, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: d.upper, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("upper %s is not a directory", d.upper)
	}
	for _, l := range lowers {
		if err := unix.Lstat(l, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: l, Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("lower %s is not a directory", l)
		}
	}
	names, err := readNames(d.upper)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		// Nothing was written: no change, whatever the roots' markers say
		// (the root's entries are all upper entries, and opaque roots hide
		// nothing). The common case of a command that changed nothing.
		return nil
	}
	roots := make([]stackDir, len(lowers))
	for i, l := range lowers {
		o, _, err := lgetOvlXattr(l, "opaque")
		if err != nil {
			return err
		}
		roots[i] = stackDir{path: l, xwhiteouts: o == "x"}
	}
	o, _, err := lgetOvlXattr(d.upper, "opaque")
	if err != nil {
		return err
	}
	// The roots are merged whatever their opaque marker says: overlayfs
	// never hides a lower root.
	return d.dirNames("", d.upper, names, o == "x", roots, false)
}

// dir compares the upper directory upath, at rel ("" for the root) in the
// merged view, with lower, its directory stack in L (nil when L has no
// directory there). hides says M shows only the upper's entries here: the
// directory or one above it is opaque, so L's entries are all gone unless
// the upper has them again.
//
// An upper entry is always compared with what L has at its path, opaque or
// not: `rm -rf d; mkdir d; echo same > d/f` leaves d/f as it was.
func (d *differ) dir(rel, upath string, xwhiteouts bool, lower []stackDir, hides bool) error {
	names, err := readNames(upath)
	if err != nil {
		return err
	}
	return d.dirNames(rel, upath, names, xwhiteouts, lower, hides)
}

// dirNames is dir with upath's entries, sorted, already read.
func (d *differ) dirNames(rel, upath string, names []string, xwhiteouts bool, lower []stackDir, hides bool) error {
	inUpper := make(map[string]bool, len(names))
	for _, name := range names {
		up := upath + "/" + name
		r := rel + "/" + name
		var st unix.Stat_t
		if err := unix.Lstat(up, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: up, Err: err}
		}
		xa, err := lxattrs(up)
		if err != nil {
			return err
		}
		if _, ok := ovlXattr(xa, "redirect"); ok {
			return fmt.Errorf("%s has an overlay redirect xattr (a directory renamed with redirect_dir=on): diff needs redirect_dir=off", r)
		}
		if _, ok := ovlXattr(xa, "metacopy"); ok {
			return fmt.Errorf("%s is a metacopy (its data is still in a lower): diff needs metacopy=off", r)
		}
		lw, err := lookup(lower, name)
		if err != nil {
			return err
		}
		if isWhiteout(&st, xa, xwhiteouts) {
			// A whiteout over nothing in L is noise, not a deletion (an
			// upper kept over other lowers, or a hand-made one). Under an
			// opaque directory the listing below reports real deletions.
			if lw.exists && !hides {
				d.add(Deleted, r)
			}
			continue
		}
		inUpper[name] = true
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if !lw.exists {
				d.add(Added, r)
			} else if ch, err := changed(up, &st, xa, lw); err != nil {
				return err
			} else if ch {
				d.add(Modified, r)
			}
			continue
		}
		mark, _ := ovlXattr(xa, "opaque")
		var below []stackDir
		switch {
		case !lw.exists:
			d.add(Added, r)
		case !lw.isDir():
			d.add(Modified, r)
		default:
			ch, err := changed(up, &st, xa, lw)
			if err != nil {
				return err
			}
			if ch {
				d.add(Modified, r)
			}
			below = lw.stack
		}
		if err := d.dir(r, up, mark == "x", below, hides || mark == "y"); err != nil {
			return err
		}
	}
	if hides && lower != nil {
		present, err := lowerNames(lower)
		if err != nil {
			return err
		}
		for _, name := range present {
			if !inUpper[name] {
				d.add(Deleted, rel+"/"+name)
			}
		}
	}
	return nil
}

// readNames lists a directory, sorted so the walk is deterministic.
func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// isWhiteout reports whether an entry hides the same name below it: a
// character device 0/0, or (in a directory marked for it) a zero-size
// regular file with overlay.whiteout.
func isWhiteout(st *unix.Stat_t, xa map[string]string, xwhiteouts bool) bool {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		return st.Rdev == 0
	case unix.S_IFREG:
		if xwhiteouts && st.Size == 0 {
			_, ok := ovlXattr(xa, "whiteout")
			return ok
		}
	}
	return false
}

// isLowerWhiteout is isWhiteout for an entry in a lower layer, reading the
// xattr only when it can matter.
func isLowerWhiteout(path string, st *unix.Stat_t, xwhiteouts bool) (bool, error) {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		return st.Rdev == 0, nil
	case unix.S_IFREG:
		if xwhiteouts && st.Size == 0 {
			_, ok, err := lgetOvlXattr(path, "whiteout")
			return ok, err
		}
	}
	return false, nil
}

// lookup resolves name in the lower view under the directory stack lower,
// the way overlayfs does: the topmost layer that has the name decides; a
// whiteout there means absent; a directory merges with the same directory in
// the layers below until one is opaque or has a non-directory or whiteout
// in its place.
func lookup(lower []stackDir, name string) (lowerEntry, error) {
	for i, ld := range lower {
		p := ld.path + "/" + name
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); errors.Is(err, unix.ENOENT) {
			continue
		} else if err != nil {
			return lowerEntry{}, &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		wh, err := isLowerWhiteout(p, &st, ld.xwhiteouts)
		if err != nil || wh {
			return lowerEntry{}, err
		}
		e := lowerEntry{exists: true, path: p, st: st}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return e, nil
		}
		mark, _, err := lgetOvlXattr(p, "opaque")
		if err != nil {
			return lowerEntry{}, err
		}
		e.stack = append(e.stack, stackDir{path: p, xwhiteouts: mark == "x"})
		if mark == "y" {
			return e, nil
		}
		for _, below := range lower[i+1:] {
			q := below.path + "/" + name
			var bst unix.Stat_t
			if err := unix.Lstat(q, &bst); errors.Is(err, unix.ENOENT) {
				continue
			} else if err != nil {
				return lowerEntry{}, &fs.PathError{Op: "lstat", Path: q, Err: err}
			}
			if bst.Mode&unix.S_IFMT != unix.S_IFDIR {
				break // a file or whiteout here hides this layer and those below
			}
			mark, _, err := lgetOvlXattr(q, "opaque")
			if err != nil {
				return lowerEntry{}, err
			}
			e.stack = append(e.stack, stackDir{path: q, xwhiteouts: mark == "x"})
			if mark == "y" {
				break
			}
		}
		return e, nil
	}
	return lowerEntry{}, nil
}

// lowerNames lists the merged lower directory: every name of every layer in
// stack that is not whited out by a higher one, sorted.
func lowerNames(stack []stackDir) ([]string, error) {
	present := make(map[string]bool)
	for _, ld := range stack {
		ents, err := os.ReadDir(ld.path)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			name := e.Name()
			if _, seen := present[name]; seen {
				continue
			}
			wh := false
			if t := e.Type(); t&fs.ModeCharDevice != 0 || (t.IsRegular() && ld.xwhiteouts) {
				p := ld.path + "/" + name
				var st unix.Stat_t
				if err := unix.Lstat(p, &st); err != nil {
					return nil, &fs.PathError{Op: "lstat", Path: p, Err: err}
				}
				if wh, err = isLowerWhiteout(p, &st, ld.xwhiteouts); err != nil {
					return nil, err
				}
			}
			present[name] = !wh
		}
	}
	var names []string
	for name, ok := range present {
		if ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// changed compares an upper entry with the lower entry it hides.
func changed(up string, st *unix.Stat_t, xa map[string]string, lw lowerEntry) (bool, error) {
	l := &lw.st
	if st.Mode&unix.S_IFMT != l.Mode&unix.S_IFMT || st.Mode&0o7777 != l.Mode&0o7777 ||
		st.Uid != l.Uid || st.Gid != l.Gid {
		return true, nil
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if st.Size != l.Size {
			return true, nil
		}
	case unix.S_IFLNK:
		a, err := os.Readlink(up)
		if err != nil {
			return false, err
		}
		b, err := os.Readlink(lw.path)
		if err != nil {
			return false, err
		}
		if a != b {
			return true, nil
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if st.Rdev != l.Rdev {
			return true, nil
		}
	}
	lxa, err := lxattrs(lw.path)
	if err != nil {
		return false, err
	}
	if !maps.Equal(userXattrs(xa), userXattrs(lxa)) {
		return true, nil
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size > 0 {
		same, err := sameContent(up, lw.path)
		return !same, err
	}
	return false, nil
}

// sameContent compares two files of equal size byte for byte. Only files the
// container touched get here, so the cost follows the upper.
func sameContent(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba := make([]byte, 64<<10)
	bb := make([]byte, 64<<10)
	for {
		na, erra := io.ReadFull(fa, ba)
		nb, errb := io.ReadFull(fb, bb)
		if !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if erra == io.EOF || erra == io.ErrUnexpectedEOF {
			return errb == io.EOF || errb == io.ErrUnexpectedEOF, nil
		}
		if erra != nil {
			return false, erra
		}
		if errb != nil {
			if errb == io.EOF || errb == io.ErrUnexpectedEOF {
				return false, nil
			}
			return false, errb
		}
	}
}
