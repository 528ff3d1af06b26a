package overlay

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// OCI whiteout names (image-spec layer.md): ".wh.NAME" deletes NAME from the
// layers below.
const ociWhiteoutPrefix = ".wh."

// WriteLayer writes c as an OCI image layer (an uncompressed tar) with the
// content and metadata of upper, the overlay's upperdir:
//   - Added and Modified paths as entries with their content, mode, owner,
//     mtime, symlink target, device numbers and xattrs (PAX SCHILY.xattr).
//     trusted.* xattrs (overlay's own among them) are left out: they are
//     root-only kernel state, and images may not set them (ApplyLayer
//     refuses them);
//   - Deleted paths as ".wh.NAME" entries. A directory the container emptied
//     (`rm -rf d; mkdir d`) gets one whiteout per deleted child, which is what
//     Diff reports and needs no opaque marker (".wh..wh..opq");
//   - every parent directory before its children, with the upper's
//     metadata, so an applier never has to invent one;
//   - files that are hard links of each other as one file and TypeLink
//     entries. A link to a file the container did not change is written too
//     (both names), or applying the layer would split the link.
//
// Names are relative ("etc/passwd", directories "etc/"), in path order, and
// the output depends only on upper and c. Sockets cannot be stored in a tar
// and are left out, as docker does.
func WriteLayer(w io.Writer, upper string, c Changes) error {
	return WriteLayerAs(w, upper, c, Owner{})
}

// WriteLayerAs is WriteLayer recording the files of root, the host ids of root (o.UID and
// o.GID), as owned by uid and gid 0. A rootless container's root is its caller: what the
// container and its image wrote is the caller's on the host, and root's inside, which is what a
// layer records (an image that a rootless container committed then runs with the same owners as
// root).
func WriteLayerAs(w io.Writer, upper string, c Changes, root Owner) error {
	if err := writeLayer(w, upper, c, root); err != nil {
		return fmt.Errorf("overlay: write layer from %s: %w", upper, err)
	}
	return nil
}

// layerItem is one tar entry to write: a path of the upper, or a whiteout.
type layerItem struct {
	name     string // relative, no trailing slash
	whiteout bool
}

func writeLayer(w io.Writer, upper string, c Changes, root Owner) error {
	upper = filepath.Clean(upper)
	items := make(map[string]layerItem)
	var files []string // regular files to check for hard links
	for _, ch := range c {
		rel, err := layerName(ch.Path)
		if err != nil {
			return err
		}
		switch ch.Kind {
		case Added, Modified:
			items[rel] = layerItem{name: rel}
			files = append(files, rel)
		case Deleted:
			wh := path.Join(path.Dir(rel), ociWhiteoutPrefix+path.Base(rel))
			items[wh] = layerItem{name: wh, whiteout: true}
		default:
			return fmt.Errorf("%s: invalid kind %d", ch.Path, int(ch.Kind))
		}
	}

	// inodes with more than one name among the files; each group is written
	// once with content, then as links to its first name.
	linkOf, err := hardLinks(upper, files, items)
	if err != nil {
		return err
	}
	for name := range items {
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if _, ok := items[d]; ok {
				break
			}
			items[d] = layerItem{name: d}
		}
	}
	names := make([]string, 0, len(items))
	for name := range items {
		names = append(names, name)
	}
	slices.SortFunc(names, comparePaths)

	tw := tar.NewWriter(w)
	for _, name := range names {
		it := items[name]
		if it.whiteout {
			hdr := &tar.Header{Name: name, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
			if err := tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			continue
		}
		if err := writeItem(tw, upper, name, linkOf[name], root); err != nil {
			return err
		}
	}
	return tw.Close()
}

// layerName turns a change path ("/etc/passwd") into a tar name
// ("etc/passwd"), refusing anything that is not a clean absolute path below
// the root.
func layerName(p string) (string, error) {
	if !strings.HasPrefix(p, "/") || p == "/" || path.Clean(p) != p {
		return "", fmt.Errorf("change path %q: not a clean absolute path below /", p)
	}
	return p[1:], nil
}

// comparePaths orders paths component by component, so a directory comes
// before everything in it ("a/b" before "a b"), as tar readers expect.
func comparePaths(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return -1
		}
		if cb == '/' {
			return 1
		}
		return int(ca) - int(cb)
	}
	return len(a) - len(b)
}

// hardLinks finds, for the regular files among names that have more than one
// link, all their names in upper (adding those not yet in items) and returns
// for every name after the first of a group the group's first name.
func hardLinks(upper string, names []string, items map[string]layerItem) (map[string]string, error) {
	type key struct{ dev, ino uint64 }
	want := make(map[key]bool)
	for _, n := range names {
		var st unix.Stat_t
		p := upper + "/" + n
		if err := unix.Lstat(p, &st); err != nil {
			return nil, &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink > 1 {
			want[key{st.Dev, st.Ino}] = true
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	groups := make(map[key][]string)
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		if k := (key{st.Dev, st.Ino}); want[k] {
			groups[k] = append(groups[k], filepath.ToSlash(p[len(upper)+1:]))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	linkOf := make(map[string]string)
	for _, g := range groups {
		slices.SortFunc(g, comparePaths)
		for i, n := range g {
			if _, ok := items[n]; !ok {
				items[n] = layerItem{name: n}
			}
			if i > 0 {
				linkOf[n] = g[0]
			}
		}
	}
	return linkOf, nil
}

// writeItem writes the upper's entry name; linkTo, when set, names an
// earlier entry of the same inode.
func writeItem(tw *tar.Writer, upper, name, linkTo string, root Owner) error {
	p := upper + "/" + name
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, 0),
	}
	if hdr.Uid == root.UID {
		hdr.Uid = 0
	}
	if hdr.Gid == root.GID {
		hdr.Gid = 0
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case unix.S_IFREG:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
		if linkTo != "" {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = linkTo
			hdr.Size = 0
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
	case unix.S_IFCHR, unix.S_IFBLK:
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			return fmt.Errorf("%s: is an overlay whiteout, not an added or changed file", "/"+name)
		}
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case unix.S_IFSOCK:
		return nil
	default:
		return fmt.Errorf("%s: unknown file type %#o", p, st.Mode&unix.S_IFMT)
	}
	xa, err := lxattrs(p)
	if err != nil {
		return err
	}
	for k, v := range userXattrs(xa) {
		if strings.HasPrefix(k, "trusted.") {
			continue
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = make(map[string]string)
		}
		hdr.PAXRecords["SCHILY.xattr."+k] = v
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("file shrank while writing: %w", err)
		}
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}
