package overlay

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// ovCopyTree copies src to dst (which must not exist) keeping type, mode,
// owner, content, symlink targets, device numbers, xattrs and hard links,
// so dst is a faithful stand-in for the lower view.
func ovCopyTree(t testing.TB, src, dst string) {
	t.Helper()
	links := make(map[[2]uint64]string)
	var dirs []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := dst + p[len(src):]
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, p)
		case unix.S_IFREG:
			k := [2]uint64{st.Dev, st.Ino}
			if first, ok := links[k]; ok && st.Nlink > 1 {
				return os.Link(first, target)
			}
			links[k] = target
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(target, b, 0o600); err != nil {
				return err
			}
		case unix.S_IFLNK:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		case unix.S_IFSOCK:
			return nil
		default:
			if err := unix.Mknod(target, st.Mode&unix.S_IFMT|0o600, int(st.Rdev)); err != nil {
				return err
			}
		}
		return ovCopyMeta(p, target, &st)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func ovCopyMeta(src, dst string, st *unix.Stat_t) error {
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	xa, err := lxattrs(src)
	if err != nil {
		return err
	}
	for k, v := range userXattrs(xa) {
		if err := unix.Lsetxattr(dst, k, []byte(v), 0); err != nil {
			return err
		}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return nil
	}
	// After chown, which clears setuid.
	return unix.Chmod(dst, st.Mode&0o7777)
}

// The round trip: a copy of the lower view with the written layer applied
// must equal the merged view, for every operation case.
func TestWriteLayerRoundTrip(t *testing.T) {
	ovRequireRoot(t)
	run := func(t *testing.T, c ovCase, lowers []string) {
		o := ovMount(t, lowers...)
		base := filepath.Join(t.TempDir(), "base")
		ovCopyTree(t, o.Merged, base)
		c.run(t, o.Merged)
		want := ovSnapshot(t, o.Merged)
		changes, err := Diff(o.Upper, o.Lowers)
		if err != nil {
			t.Fatal(err)
		}
		var layer bytes.Buffer
		if err := WriteLayer(&layer, o.Upper, changes); err != nil {
			t.Fatal(err)
		}
		if err := ApplyLayer(base, bytes.NewReader(layer.Bytes()), ApplyOptions{}); err != nil {
			t.Fatalf("%v\nlayer:\n%s", err, ovListLayer(t, layer.Bytes()))
		}
		got := ovSnapshot(t, base)
		if diff := ovCompareTrees(got, want); diff != "" {
			t.Errorf("applied layer differs from the merged view:\n%s\nlayer:\n%s", diff, ovListLayer(t, layer.Bytes()))
		}
	}
	for _, c := range ovCases {
		if c.noLayer {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			lower := t.TempDir()
			ovBaseLower(t, lower)
			run(t, c, []string{lower})
		})
	}
	for _, c := range ovStackCases {
		t.Run("stack/"+c.name, func(t *testing.T) {
			run(t, c, ovStackLowers(t))
		})
	}
}

// ovCompareTrees lists every difference between two snapshots, hard link
// structure included; "" when equal.
func ovCompareTrees(got, want map[string]ovNode) string {
	var out []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			out = append(out, "missing "+p)
		case !g.same(w):
			out = append(out, fmt.Sprintf("differs %s:\n\tgot  %+v\n\twant %+v", p, g, w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			out = append(out, "extra "+p)
		}
	}
	if g, w := ovLinkGroups(got), ovLinkGroups(want); !slices.Equal(g, w) {
		out = append(out, fmt.Sprintf("hard links: got %q, want %q", g, w))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// ovListLayer renders a tar's headers one a line: type, name, link, mode,
// owner, xattrs.
func ovListLayer(t testing.TB, b []byte) string {
	t.Helper()
	var lines []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		line := fmt.Sprintf("%c %q", hdr.Typeflag, hdr.Name)
		if hdr.Linkname != "" {
			line += " -> " + hdr.Linkname
		}
		line += fmt.Sprintf(" %04o %d:%d", hdr.Mode, hdr.Uid, hdr.Gid)
		var xs []string
		for k, v := range hdr.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				xs = append(xs, x+"="+v)
			}
		}
		slices.Sort(xs)
		if len(xs) > 0 {
			line += " " + strings.Join(xs, ",")
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

func TestWriteLayerEntries(t *testing.T) {
	ovRequireRoot(t)
	lower := t.TempDir()
	ovBaseLower(t, lower)
	o := ovMount(t, lower)
	ovSh(t, o.Merged, `rm -rf d && mkdir d && echo n > d/new
		ln etc/passwd etc/passwd2
		rm etc/conf
		mkdir -p n/a && echo f > n/a/f && chown 7:8 n/a/f && chmod 4711 n/a/f
		mkfifo p
		ln -sfn bin/tool link`)
	for _, x := range [][3]string{{"xa", "user.color", "red"}, {"n/a", "user.k", "v"}, {"xa", "trusted.t", "v"}} {
		if err := unix.Lsetxattr(o.Merged+"/"+x[0], x[1], []byte(x[2]), 0); err != nil {
			t.Fatal(err)
		}
	}
	// A socket cannot go in a tar.
	if err := unix.Mknod(o.Merged+"/sock", unix.S_IFSOCK|0o644, 0); err != nil {
		t.Fatal(err)
	}
	changes, err := Diff(o.Upper, o.Lowers)
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := WriteLayer(&a, o.Upper, changes); err != nil {
		t.Fatal(err)
	}
	if err := WriteLayer(&b, o.Upper, changes); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two writes of the same changes differ")
	}
	got := ovListLayer(t, a.Bytes())
	// Parents first, with the upper's metadata; whiteouts per deleted child
	// (no opaque marker); a hard link to an unchanged file carries both
	// names; trusted.* xattrs stay out.
	want := strings.Join([]string{
		`5 "d/" 0755 0:0`,
		`0 "d/.wh.sub" 0000 0:0`,
		`0 "d/.wh.x" 0000 0:0`,
		`0 "d/new" 0644 0:0`,
		`5 "etc/" 0755 0:0`,
		`0 "etc/.wh.conf" 0000 0:0`,
		`0 "etc/passwd" 0644 0:0`,
		`1 "etc/passwd2" -> etc/passwd 0644 0:0`,
		`2 "link" -> bin/tool 0777 0:0`,
		`5 "n/" 0755 0:0`,
		`5 "n/a/" 0755 0:0 user.k=v`,
		`0 "n/a/f" 4711 7:8`,
		`6 "p" 0644 0:0`,
		`0 "xa" 0644 0:0 user.color=red`,
	}, "\n")
	if got != want {
		t.Errorf("layer entries:\n--- got ---\n%s\n--- want ---\n%s", got, want)
	}
}

func TestWriteLayerErrors(t *testing.T) {
	ovRequireRoot(t)
	upper := t.TempDir()
	ovBuild(t, upper).File("f", "x", 0o644).Whiteout("gone")
	for _, c := range []struct {
		name    string
		changes Changes
		want    string
	}{
		{"relative path", Changes{{Added, "f"}}, `"f"`},
		{"unclean path", Changes{{Added, "/a/../f"}}, `"/a/../f"`},
		{"root", Changes{{Modified, "/"}}, `"/"`},
		{"missing in upper", Changes{{Added, "/nope"}}, "nope"},
		{"a whiteout as an addition", Changes{{Added, "/gone"}}, "/gone"},
		{"invalid kind", Changes{{Kind(0), "/f"}}, "invalid kind"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := WriteLayer(io.Discard, upper, c.changes)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "overlay: write layer from ") {
				t.Errorf("err = %v, want one mentioning %q", err, c.want)
			}
		})
	}
	if err := WriteLayer(io.Discard, upper, nil); err != nil {
		t.Errorf("no changes: %v", err)
	}
	var b bytes.Buffer
	if err := WriteLayer(&b, upper, nil); err != nil || ovListLayer(t, b.Bytes()) != "" {
		t.Errorf("no changes wrote %q, %v", ovListLayer(t, b.Bytes()), err)
	}
}

func TestComparePaths(t *testing.T) {
	in := []string{"a b", "a/b", "a", "a.b", "b", "a/b/c", "a/.wh.b", "a-b"}
	slices.SortFunc(in, comparePaths)
	want := []string{"a", "a/.wh.b", "a/b", "a/b/c", "a b", "a-b", "a.b", "b"}
	if !slices.Equal(in, want) {
		t.Errorf("got %q, want %q", in, want)
	}
}

// TestWriteLayerAsRoot: WriteLayerAs records the given host ids of root as 0 and leaves other
// owners as they are.
func TestWriteLayerAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown to other users")
	}
	upper := t.TempDir()
	for _, f := range []struct {
		name     string
		uid, gid int
	}{{"mine", 4242, 4343}, {"other", 1, 2}, {"half", 4242, 2}} {
		p := filepath.Join(upper, f.name)
		if err := os.WriteFile(p, []byte(f.name), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, f.uid, f.gid); err != nil {
			t.Fatal(err)
		}
	}
	c := Changes{{Kind: Added, Path: "/half"}, {Kind: Added, Path: "/mine"}, {Kind: Added, Path: "/other"}}
	var buf bytes.Buffer
	if err := WriteLayerAs(&buf, upper, c, Owner{UID: 4242, GID: 4343}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[hdr.Name] = fmt.Sprintf("%d:%d", hdr.Uid, hdr.Gid)
	}
	want := map[string]string{"half": "0:2", "mine": "0:0", "other": "1:2"}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: owner %q, want %q (all: %v)", name, got[name], w, got)
		}
	}
}
