package overlay

import (
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Test helpers of the mount and diff tests carry an "ov" prefix: the package's
// tests are written by several people and share one namespace.

func ovRequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("overlay mounts, trusted.* xattrs and mknod need root (CI runs as root)")
	}
}

// ovBuilder makes a directory tree for a lower, failing the test on error.
type ovBuilder struct {
	t    testing.TB
	root string
}

func ovBuild(t testing.TB, root string) *ovBuilder { return &ovBuilder{t: t, root: root} }

func (b *ovBuilder) p(name string) string { return filepath.Join(b.root, name) }

func (b *ovBuilder) check(err error) {
	b.t.Helper()
	if err != nil {
		b.t.Fatal(err)
	}
}

func (b *ovBuilder) Dir(name string, mode os.FileMode) *ovBuilder {
	b.t.Helper()
	b.check(os.MkdirAll(b.p(name), 0o755))
	b.check(os.Chmod(b.p(name), mode))
	return b
}

func (b *ovBuilder) parent(name string) {
	b.t.Helper()
	b.check(os.MkdirAll(filepath.Dir(b.p(name)), 0o755))
}

func (b *ovBuilder) File(name, data string, mode os.FileMode) *ovBuilder {
	b.t.Helper()
	b.parent(name)
	b.check(os.WriteFile(b.p(name), []byte(data), mode))
	b.check(os.Chmod(b.p(name), mode))
	return b
}

func (b *ovBuilder) Symlink(name, target string) *ovBuilder {
	b.t.Helper()
	b.parent(name)
	b.check(os.Symlink(target, b.p(name)))
	return b
}

func (b *ovBuilder) Link(name, existing string) *ovBuilder {
	b.t.Helper()
	b.parent(name)
	b.check(os.Link(b.p(existing), b.p(name)))
	return b
}

func (b *ovBuilder) Fifo(name string) *ovBuilder {
	b.t.Helper()
	b.parent(name)
	b.check(unix.Mkfifo(b.p(name), 0o644))
	return b
}

func (b *ovBuilder) Char(name string, major, minor uint32) *ovBuilder {
	b.t.Helper()
	b.parent(name)
	b.check(unix.Mknod(b.p(name), unix.S_IFCHR|0o666, int(unix.Mkdev(major, minor))))
	b.check(os.Chmod(b.p(name), 0o666))
	return b
}

// Whiteout makes the kernel's whiteout, a character device 0/0.
func (b *ovBuilder) Whiteout(name string) *ovBuilder { return b.Char(name, 0, 0) }

func (b *ovBuilder) Xattr(name, key, value string) *ovBuilder {
	b.t.Helper()
	b.check(unix.Lsetxattr(b.p(name), key, []byte(value), 0))
	return b
}

func (b *ovBuilder) Chown(name string, uid, gid int) *ovBuilder {
	b.t.Helper()
	b.check(os.Lchown(b.p(name), uid, gid))
	return b
}

// ovOverlay is a mounted overlay on disk directories of a t.TempDir.
type ovOverlay struct {
	Lowers              []string
	Upper, Work, Merged string
	mounted             bool
}

// ovMount mounts lowers (top first) with a fresh upper and work at a fresh
// target, and unmounts it when the test ends if the test has not.
func ovMount(t testing.TB, lowers ...string) *ovOverlay {
	t.Helper()
	dir := t.TempDir()
	o := &ovOverlay{Lowers: lowers, Upper: dir + "/upper", Work: dir + "/work", Merged: dir + "/merged"}
	for _, d := range []string{o.Upper, o.Work, o.Merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := Mount(o.Merged, Config{Lowers: lowers, Upper: o.Upper, Work: o.Work}); err != nil {
		t.Fatal(err)
	}
	o.mounted = true
	t.Cleanup(func() {
		if o.mounted {
			if err := Unmount(o.Merged); err != nil {
				t.Error(err)
			}
		}
	})
	return o
}

func (o *ovOverlay) Unmount(t testing.TB) {
	t.Helper()
	if err := Unmount(o.Merged); err != nil {
		t.Fatal(err)
	}
	o.mounted = false
}

// ovSh runs a shell script in dir, failing the test with its output.
func ovSh(t testing.TB, dir, script string) {
	t.Helper()
	cmd := exec.Command("sh", "-ec", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sh -ec %q in %s: %v\n%s", script, dir, err, out)
	}
}

// ovNode is what a path looks like to a user of the merged view: everything
// Diff promises to compare, and nothing it promises to ignore.
type ovNode struct {
	Type     uint32
	Perm     uint32
	Uid, Gid uint32
	Data     string // regular files
	Target   string // symlinks
	Rdev     uint64 // devices
	Xattrs   map[string]string
	inode    [2]uint64
}

func (n ovNode) isDir() bool { return n.Type == unix.S_IFDIR }

// same compares what Diff compares: type, permission bits, owner, xattrs and,
// per type, content, target or device numbers.
func (n ovNode) same(m ovNode) bool {
	return n.Type == m.Type && n.Perm == m.Perm && n.Uid == m.Uid && n.Gid == m.Gid &&
		n.Data == m.Data && n.Target == m.Target && n.Rdev == m.Rdev && maps.Equal(n.Xattrs, m.Xattrs)
}

// ovNodeOf reads the node at p, whose lstat is st: its type, mode, owner, content or target,
// device number and user-visible xattrs.
func ovNodeOf(p string, st *unix.Stat_t) (ovNode, error) {
	n := ovNode{Type: st.Mode & unix.S_IFMT, Perm: st.Mode & 0o7777, Uid: st.Uid, Gid: st.Gid,
		inode: [2]uint64{st.Dev, st.Ino}}
	switch n.Type {
	case unix.S_IFREG:
		b, err := os.ReadFile(p)
		if err != nil {
			return n, err
		}
		n.Data = string(b)
	case unix.S_IFLNK:
		t, err := os.Readlink(p)
		if err != nil {
			return n, err
		}
		n.Target = t
	case unix.S_IFCHR, unix.S_IFBLK:
		n.Rdev = st.Rdev
	}
	xa, err := lxattrs(p)
	if err != nil {
		return n, fmt.Errorf("xattrs of %s: %w", p, err)
	}
	n.Xattrs = userXattrs(xa)
	return n, nil
}

// ovSnapshot reads a tree into path ("/x/y") -> node, without "/" itself.
func ovSnapshot(t testing.TB, root string) map[string]ovNode {
	t.Helper()
	snap := make(map[string]ovNode)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		n, err := ovNodeOf(p, &st)
		if err != nil {
			return err
		}
		snap["/"+filepath.ToSlash(p[len(root)+1:])] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// ovNaiveDiff is the specification Diff is checked against: compare two full
// snapshots, the lower view before and the merged view after. A deleted path
// is listed only when its parent is still a directory, so a deleted
// directory, or one replaced by a file, is listed once.
func ovNaiveDiff(before, after map[string]ovNode) Changes {
	var c Changes
	for p, a := range after {
		b, ok := before[p]
		switch {
		case !ok:
			c = append(c, Change{Added, p})
		case !a.same(b):
			c = append(c, Change{Modified, p})
		}
	}
	for p := range before {
		if _, ok := after[p]; ok {
			continue
		}
		parent := path.Dir(p)
		if pa, ok := after[parent]; parent == "/" || ok && pa.isDir() {
			c = append(c, Change{Deleted, p})
		}
	}
	slices.SortFunc(c, func(a, b Change) int { return strings.Compare(a.Path, b.Path) })
	return c
}

// ovLinkGroups returns the sets of paths that share an inode (hard links),
// as sorted, joined strings, for comparing link structure across trees.
func ovLinkGroups(snap map[string]ovNode) []string {
	byInode := make(map[[2]uint64][]string)
	for p, n := range snap {
		if n.Type == unix.S_IFREG {
			byInode[n.inode] = append(byInode[n.inode], p)
		}
	}
	var groups []string
	for _, ps := range byInode {
		if len(ps) > 1 {
			slices.Sort(ps)
			groups = append(groups, strings.Join(ps, " = "))
		}
	}
	slices.Sort(groups)
	return groups
}

// ovEqualChanges fails with both diffs in full when they differ.
func ovEqualChanges(t testing.TB, what string, got, want Changes) {
	t.Helper()
	if got.String() != want.String() {
		t.Errorf("%s:\n--- got ---\n%s--- want ---\n%s", what, got, want)
	}
}

// ovParse reads the text form, one change a line, for writing expectations
// compactly; "" is no changes.
func ovParse(t testing.TB, s string) Changes {
	t.Helper()
	var c Changes
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var k Kind
		if len(line) < 3 || line[1] != ' ' {
			t.Fatalf("bad change line %q", line)
		}
		if err := k.UnmarshalText([]byte(line[:1])); err != nil {
			t.Fatal(err)
		}
		c = append(c, Change{k, line[2:]})
	}
	return c
}

// ovMountinfo returns this process's mount table, for checking that
// nothing was left mounted.
func ovMountinfo(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
