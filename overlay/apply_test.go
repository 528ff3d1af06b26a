//go:build linux

package overlay

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Helpers here are prefixed "al" (apply layer): package overlay's tests share one namespace.

type alEntry struct {
	hdr  tar.Header
	body string
}

var alTime = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

func alFile(name, body string, mode int64) alEntry {
	return alEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: alTime}, body: body}
}

func alDir(name string, mode int64) alEntry {
	return alEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: alTime}}
}

func alSymlink(name, target string) alEntry {
	return alEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: alTime}}
}

func alHardlink(name, target string) alEntry {
	return alEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: alTime}}
}

func alLayer(t testing.TB, entries ...alEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Format == tar.FormatUnknown && len(h.PAXRecords) > 0 {
			h.Format = tar.FormatPAX
		}
		require.NoError(t, tw.WriteHeader(&h))
		_, err := io.WriteString(tw, e.body)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

func alApply(t testing.TB, root string, opt ApplyOptions, entries ...alEntry) error {
	t.Helper()
	return ApplyLayer(root, bytes.NewReader(alLayer(t, entries...)), opt)
}

func alRequireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown, mknod and trusted xattrs")
	}
}

// alTree lists everything under dir as "path type mode [target|content]" lines, for whole-tree
// comparisons that report every difference at once.
func alTree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		line := rel + " " + info.Mode().String()
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case info.Mode().IsRegular():
			data, _ := os.ReadFile(p)
			line += " " + string(data)
		}
		out = append(out, line)
		return nil
	})
	require.NoError(t, err)
	sort.Strings(out)
	return out
}

func TestCleanLayerName(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		escapes        bool
	}{
		{name: "plain", in: "etc/passwd", want: "etc/passwd"},
		{name: "dot slash", in: "./etc/passwd", want: "etc/passwd"},
		{name: "absolute means image root", in: "/etc/passwd", want: "etc/passwd"},
		{name: "many slashes", in: "///etc//passwd", want: "etc/passwd"},
		{name: "dir trailing slash", in: "usr/lib/", want: "usr/lib"},
		{name: "inner dotdot stays", in: "a/b/../c", want: "a/c"},
		{name: "root", in: "./", want: "."},
		{name: "root abs", in: "/", want: "."},
		{name: "dotdot", in: "../x", escapes: true},
		{name: "deep dotdot", in: "../../etc/x", escapes: true},
		{name: "hidden dotdot", in: "a/../../x", escapes: true},
		{name: "abs dotdot", in: "/../x", escapes: true},
		{name: "only dotdot", in: "..", escapes: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cleanLayerName(tc.in)
			if tc.escapes {
				require.ErrorIs(t, err, errLayerEscape)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestWhiteoutTarget(t *testing.T) {
	for _, tc := range []struct {
		name, base   string
		isWh, opaque bool
		hidden       string
		wantErr      bool
	}{
		{name: "ordinary", base: "passwd"},
		{name: "dot wh inside name", base: "a.wh.b"},
		{name: "whiteout", base: ".wh.passwd", isWh: true, hidden: "passwd"},
		{name: "whiteout of dotfile", base: ".wh..bashrc", isWh: true, hidden: ".bashrc"},
		{name: "opaque", base: ".wh..wh..opq", isWh: true, opaque: true},
		{name: "empty", base: ".wh.", isWh: true, wantErr: true},
		{name: "dot", base: ".wh..", isWh: true, wantErr: true},
		{name: "dotdot", base: ".wh...", isWh: true, wantErr: true},
		{name: "aufs meta", base: ".wh..wh.plnk", isWh: true, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isWh, opaque, hidden, err := whiteoutTarget(tc.base)
			assert.Equal(t, tc.isWh, isWh)
			if tc.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.opaque, opaque)
			assert.Equal(t, tc.hidden, hidden)
		})
	}
}

func TestApplyLayerEntries(t *testing.T) {
	alRequireRoot(t)
	root := t.TempDir()
	fifo := alEntry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o640, ModTime: alTime}}
	dev := alEntry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: alTime}}
	suid := alFile("bin/su", "su", 0o4755)
	suid.hdr.Uid, suid.hdr.Gid = 0, 0
	owned := alFile("home/u/f", "data", 0o2640)
	owned.hdr.Uid, owned.hdr.Gid = 1000, 1001
	xattr := alFile("x", "x", 0o644)
	xattr.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.note": "hello", "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}

	require.NoError(t, alApply(t, root, ApplyOptions{},
		alDir("./", 0o755),
		alDir("bin/", 0o755),
		suid,
		alFile("bin/busybox", "bb", 0o755),
		alHardlink("bin/sh", "bin/busybox"),
		alHardlink("bin/ash", "/bin/busybox"), // absolute link target: the image root
		alSymlink("bin/ls", "busybox"),
		alSymlink("etc/abs", "/etc/passwd"), // parent "etc" implicit
		alDir("home/", 0o755),
		alDir("home/u/", 0o700),
		owned,
		fifo,
		dev,
		xattr,
	))

	assert.Equal(t, []string{
		"bin drwxr-xr-x",
		"bin/ash -rwxr-xr-x bb",
		"bin/busybox -rwxr-xr-x bb",
		"bin/ls Lrwxrwxrwx -> busybox",
		"bin/sh -rwxr-xr-x bb",
		"bin/su urwxr-xr-x su",
		"dev drwxr-xr-x",
		"dev/null Dcrw-rw-rw-",
		"etc drwxr-xr-x",
		"etc/abs Lrwxrwxrwx -> /etc/passwd",
		"home drwxr-xr-x",
		"home/u drwx------",
		"home/u/f grw-r----- data",
		"run drwxr-xr-x",
		"run/fifo prw-r-----",
		"x -rw-r--r-- x",
	}, alTree(t, root))

	var st, st2 unix.Stat_t
	require.NoError(t, unix.Lstat(filepath.Join(root, "bin/sh"), &st))
	require.NoError(t, unix.Lstat(filepath.Join(root, "bin/busybox"), &st2))
	assert.Equal(t, st2.Ino, st.Ino, "hard link shares the inode")
	require.NoError(t, unix.Lstat(filepath.Join(root, "bin/ash"), &st))
	assert.Equal(t, st2.Ino, st.Ino, "absolute hard link target resolves in the root")

	require.NoError(t, unix.Lstat(filepath.Join(root, "home/u/f"), &st))
	assert.Equal(t, uint32(1000), st.Uid)
	assert.Equal(t, uint32(1001), st.Gid)
	assert.Equal(t, uint32(0o2640), st.Mode&0o7777, "setgid kept after chown")
	require.NoError(t, unix.Lstat(filepath.Join(root, "dev/null"), &st))
	assert.Equal(t, unix.Mkdev(1, 3), st.Rdev)

	// Times: files, symlinks and directories carry the entry's mtime (directories despite the
	// children created in them afterwards).
	for _, p := range []string{".", "bin", "bin/busybox", "bin/ls", "home/u", "home/u/f"} {
		info, err := os.Lstat(filepath.Join(root, p))
		require.NoError(t, err)
		assert.True(t, info.ModTime().Equal(alTime), "%s mtime %v", p, info.ModTime())
	}
	// Implicit parents get 0755 and the time of their creation, not an entry's.
	info, err := os.Lstat(filepath.Join(root, "etc"))
	require.NoError(t, err)
	assert.False(t, info.ModTime().Equal(alTime))

	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(filepath.Join(root, "x"), "user.note", buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf[:n]))
	n, err = unix.Lgetxattr(filepath.Join(root, "x"), "security.capability", buf)
	require.NoError(t, err, "security.capability survives (set after chown)")
	assert.Equal(t, 20, n)
}

// A set-id bit comes only from the entry: not from a setgid parent, not from an earlier layer's
// file at the same path.
func TestApplyLayerSetIDOnlyFromEntry(t *testing.T) {
	alRequireRoot(t)
	root := t.TempDir()
	require.NoError(t, alApply(t, root, ApplyOptions{},
		alDir("shared/", 0o2775),
		alDir("shared/sub/", 0o755),
		alFile("shared/f", "1", 0o4755),
	))
	require.NoError(t, alApply(t, root, ApplyOptions{},
		alFile("shared/f", "2", 0o755),
	))
	for p, want := range map[string]uint32{"shared": 0o2775, "shared/sub": 0o755, "shared/f": 0o755} {
		var st unix.Stat_t
		require.NoError(t, unix.Lstat(filepath.Join(root, p), &st))
		assert.Equal(t, want, st.Mode&0o7777, p)
	}
}

func TestApplyLayerWhiteouts(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, alApply(t, root, ApplyOptions{NoChown: os.Geteuid() != 0},
		alFile("keep", "k", 0o644),
		alFile("gone", "g", 0o644),
		alDir("gonedir/", 0o755),
		alFile("gonedir/a", "a", 0o644),
		alDir("opq/", 0o755),
		alFile("opq/old", "o", 0o644),
		alDir("opq/sub/", 0o755),
		alFile("opq/sub/old", "o", 0o644),
		alDir("opq2/", 0o755),
		alFile("opq2/old", "o", 0o644),
		alFile("samelayer", "s", 0o644),
	))
	require.NoError(t, alApply(t, root, ApplyOptions{NoChown: os.Geteuid() != 0},
		alFile(".wh.gone", "", 0o644),
		alFile(".wh.gonedir", "", 0o644),
		alFile(".wh.never-existed", "", 0o644),
		alFile("nodir/.wh.x", "", 0o644), // a whiteout in a missing directory hides nothing
		// marker first, then this layer's content
		alDir("opq/", 0o755),
		alFile("opq/.wh..wh..opq", "", 0o644),
		alFile("opq/new", "n", 0o644),
		alDir("opq/sub/", 0o755),
		alFile("opq/sub/new", "n", 0o644),
		// content first, then the marker: what this layer wrote stays
		alDir("opq2/", 0o755),
		alFile("opq2/new", "n", 0o644),
		alFile("opq2/.wh..wh..opq", "", 0o644),
		// a whiteout never removes its own layer's file
		alFile("fresh", "f", 0o644),
		alFile(".wh.fresh", "", 0o644),
		alFile(".wh.samelayer", "", 0o644),
		alFile("samelayer", "again", 0o644),
	))
	assert.Equal(t, []string{
		"fresh -rw-r--r-- f",
		"keep -rw-r--r-- k",
		"opq drwxr-xr-x",
		"opq/new -rw-r--r-- n",
		"opq/sub drwxr-xr-x",
		"opq/sub/new -rw-r--r-- n",
		"opq2 drwxr-xr-x",
		"opq2/new -rw-r--r-- n",
		"samelayer -rw-r--r-- again",
	}, alTree(t, root))
}

func TestApplyLayerDuplicates(t *testing.T) {
	root := t.TempDir()
	opt := ApplyOptions{NoChown: os.Geteuid() != 0}
	require.NoError(t, alApply(t, root, opt,
		alFile("f", "first", 0o644),
		alFile("f", "second", 0o600),
		alDir("d2f/", 0o755),
		alFile("d2f/child", "c", 0o644),
		alFile("d2f", "now a file", 0o644),
		alFile("f2d", "file", 0o644),
		alDir("f2d/", 0o750),
		alFile("f2d/c", "c", 0o644),
		alDir("keep/", 0o755),
		alFile("keep/a", "a", 0o644),
		alDir("keep/", 0o700), // a directory again: merged, the later mode wins
		alDir("target/", 0o755),
		alSymlink("s2d", "target"),
		alDir("s2d/", 0o755), // replaces the symlink itself; nothing lands in target/
		alFile("s2d/in", "in", 0o644),
	))
	assert.Equal(t, []string{
		"d2f -rw-r--r-- now a file",
		"f -rw------- second",
		"f2d drwxr-x---",
		"f2d/c -rw-r--r-- c",
		"keep drwx------",
		"keep/a -rw-r--r-- a",
		"s2d drwxr-xr-x",
		"s2d/in -rw-r--r-- in",
		"target drwxr-xr-x",
	}, alTree(t, root))
}

// Layers written against a symlinked parent land where the container would see them: inside.
func TestApplyLayerThroughSymlinkStaysInside(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	require.NoError(t, os.Mkdir(root, 0o755))
	outside := filepath.Join(base, "etc")
	require.NoError(t, os.Mkdir(outside, 0o755))
	opt := ApplyOptions{NoChown: os.Geteuid() != 0}
	require.NoError(t, alApply(t, root, opt,
		alDir("usr/lib/", 0o755),
		alSymlink("lib", "/usr/lib"), // absolute: the image's /usr/lib
		alFile("lib/libc.so", "c", 0o644),
		alSymlink("up", "../../.."),
		alFile("up/etc/passwd", "root", 0o644),
	))
	assert.Equal(t, []string{
		"etc drwxr-xr-x",
		"etc/passwd -rw-r--r-- root",
		"lib Lrwxrwxrwx -> /usr/lib",
		"up Lrwxrwxrwx -> ../../..",
		"usr drwxr-xr-x",
		"usr/lib drwxr-xr-x",
		"usr/lib/libc.so -rw-r--r-- c",
	}, alTree(t, root))
	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

// TestApplyLayerHostile is the attack corpus: each case is one trick; nothing may appear or change
// outside the root, and a refusal names the entry.
func TestApplyLayerHostile(t *testing.T) {
	withXattr := func(e alEntry, k, v string) alEntry {
		e.hdr.PAXRecords = map[string]string{"SCHILY.xattr." + k: v}
		return e
	}
	for _, tc := range []struct {
		name string
		// earlier, when set, is applied first as a layer of its own.
		earlier, entries []alEntry
		// wantErr, when set, is the substring the error must hold (with the entry name).
		wantErr string
		// inside lists paths (relative to root) that must exist afterwards, absent those that
		// must not.
		inside, absent []string
	}{
		{name: "dotdot name", entries: []alEntry{alFile("../../canary/x", "pwn", 0o644)},
			wantErr: `entry "../../canary/x": path escapes the root`},
		{name: "dotdot in the middle", entries: []alEntry{alFile("a/../../canary/x", "pwn", 0o644)},
			wantErr: `entry "a/../../canary/x": path escapes the root`},
		{name: "absolute name", entries: []alEntry{alFile("/canary/x", "in", 0o644)},
			inside: []string{"canary/x"}},
		{name: "absolute dotdot", entries: []alEntry{alFile("/../canary/x", "pwn", 0o644)},
			wantErr: `entry "/../canary/x": path escapes the root`},
		{name: "symlink dir then file through it", entries: []alEntry{
			alDir("canary/", 0o755), alSymlink("esc", "../canary"), alFile("esc/x", "in", 0o644)},
			inside: []string{"canary/x"}},
		{name: "absolute symlink then file through it", entries: []alEntry{
			alDir("canary/", 0o755), alSymlink("esc", "/../../canary"), alFile("esc/x", "in", 0o644)},
			inside: []string{"canary/x"}},
		{name: "symlink to a dir missing in the image", entries: []alEntry{
			alSymlink("esc", "../canary"), alFile("esc/x", "pwn", 0o644)},
			wantErr: `entry "esc/x": open parent "esc": no such file or directory`},
		{name: "symlink then file with the same name", entries: []alEntry{
			alSymlink("f", "../canary/x"), alFile("f", "in", 0o644)},
			inside: []string{"f"}},
		{name: "symlink chain", entries: []alEntry{
			alDir("canary/", 0o755), alSymlink("a", "b"), alSymlink("b", "../../canary"),
			alDir("a/sub/", 0o755), alFile("a/sub/x", "in", 0o644)},
			inside: []string{"canary/sub/x"}},
		{name: "symlink loop", entries: []alEntry{
			alSymlink("l1", "l2"), alSymlink("l2", "l1"), alFile("l1/x", "x", 0o644)},
			wantErr: `entry "l1/x": open parent "l1": too many levels of symbolic links`},
		{name: "hardlink dotdot", entries: []alEntry{alHardlink("h", "../canary/secret")},
			wantErr: `entry "h": hard link to "../canary/secret": path escapes the root`},
		{name: "hardlink absolute outside", entries: []alEntry{alHardlink("h", "/canary/secret")},
			wantErr: `entry "h": hard link to "/canary/secret": open parent "canary": no such file or directory`},
		{name: "hardlink through symlink", entries: []alEntry{
			alDir("canary/", 0o755), alSymlink("esc", "../canary"), alHardlink("h", "esc/secret")},
			wantErr: `entry "h": hard link to "esc/secret": no such file or directory`},
		{name: "hardlink to a directory", entries: []alEntry{alDir("d/", 0o755), alHardlink("h", "d")},
			wantErr: `entry "h": hard link to "d": target is a directory`},
		{name: "hardlink to the root", entries: []alEntry{alHardlink("h", "./")},
			wantErr: `entry "h": hard link to "./": target is the root directory`},
		{name: "whiteout through symlink",
			earlier: []alEntry{alDir("canary/", 0o755), alFile("canary/secret", "mine", 0o644)},
			entries: []alEntry{alSymlink("esc", "../canary"), alFile("esc/.wh.secret", "", 0o644)},
			absent:  []string{"canary/secret"}},
		{name: "whiteout through a dangling symlink", entries: []alEntry{
			alSymlink("esc", "../canary"), alFile("esc/.wh.secret", "", 0o644)}},
		{name: "whiteout dotdot", entries: []alEntry{alFile(".wh..", "", 0o644)},
			wantErr: `entry ".wh..": invalid whiteout name`},
		{name: "whiteout dotdot name", entries: []alEntry{alFile("../.wh.canary", "", 0o644)},
			wantErr: `entry "../.wh.canary": path escapes the root`},
		{name: "whiteout empty", entries: []alEntry{alFile("d/.wh.", "", 0o644)},
			wantErr: `entry "d/.wh.": invalid whiteout name`},
		{name: "aufs meta name", entries: []alEntry{alFile(".wh..wh.plnk", "", 0o644)},
			wantErr: `entry ".wh..wh.plnk": unknown whiteout meta name`},
		{name: "opaque through symlink",
			earlier: []alEntry{alDir("canary/", 0o755), alFile("canary/old", "old", 0o644)},
			entries: []alEntry{alSymlink("esc", "../canary"), alFile("canary/new", "new", 0o644),
				alFile("esc/.wh..wh..opq", "", 0o644)},
			inside: []string{"canary/new"}, absent: []string{"canary/old"}},
		{name: "opaque through a dangling symlink", entries: []alEntry{
			alSymlink("esc", "../canary"), alFile("esc/.wh..wh..opq", "", 0o644)},
			wantErr: `entry "esc/.wh..wh..opq": open parent "esc": no such file or directory`},
		{name: "trusted xattr", entries: []alEntry{withXattr(alDir("d/", 0o755), "trusted.overlay.opaque", "y")},
			wantErr: `entry "d/": xattr "trusted.overlay.opaque": trusted.* xattrs are refused`},
		{name: "trusted other xattr", entries: []alEntry{withXattr(alFile("f", "", 0o644), "trusted.foo", "1")},
			wantErr: `entry "f": xattr "trusted.foo": trusted.* xattrs are refused`},
		{name: "user overlay xattr", entries: []alEntry{withXattr(alDir("d/", 0o755), "user.overlay.redirect", "/etc")},
			wantErr: `entry "d/": xattr "user.overlay.redirect": overlay xattrs are refused`},
		{name: "file replaces root", entries: []alEntry{alFile(".", "x", 0o644)},
			wantErr: `entry ".": a regular file cannot replace the root directory`},
		{name: "symlink replaces root", entries: []alEntry{alSymlink("/", "/canary")},
			wantErr: `entry "/": a symlink cannot replace the root directory`},
		{name: "file under a file", entries: []alEntry{alFile("f", "", 0o644), alFile("f/x", "", 0o644)},
			wantErr: `entry "f/x": open parent "f": not a directory`},
		{name: "proc magic link", entries: []alEntry{alSymlink("p", "/proc/self/root"), alFile("p/x", "", 0o644)},
			wantErr: `entry "p/x": open parent "p": no such file or directory`},
		{name: "proc magic link in image", entries: []alEntry{
			alDir("proc/self/root/", 0o755), alSymlink("p", "/proc/self/root"), alFile("p/x", "", 0o644)},
			inside: []string{"proc/self/root/x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			root := filepath.Join(base, "a", "b", "root")
			require.NoError(t, os.MkdirAll(root, 0o755))
			for _, d := range []string{base, filepath.Join(base, "a"), filepath.Join(base, "a", "b")} {
				require.NoError(t, os.MkdirAll(filepath.Join(d, "canary"), 0o755))
				require.NoError(t, os.WriteFile(filepath.Join(d, "canary", "secret"), []byte("s"), 0o600))
			}
			before := alOutside(t, base, root)
			if tc.earlier != nil {
				require.NoError(t, alApply(t, root, ApplyOptions{NoChown: os.Geteuid() != 0}, tc.earlier...))
			}

			err := alApply(t, root, ApplyOptions{NoChown: os.Geteuid() != 0}, tc.entries...)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "apply layer: "+tc.wantErr)
			} else {
				require.NoError(t, err)
			}
			for _, p := range tc.inside {
				_, err := os.Lstat(filepath.Join(root, p))
				assert.NoError(t, err, "expected %s inside the root", p)
			}
			for _, p := range tc.absent {
				_, err := os.Lstat(filepath.Join(root, p))
				assert.ErrorIs(t, err, fs.ErrNotExist, "expected %s gone", p)
			}
			assert.Equal(t, before, alOutside(t, base, root), "nothing outside the root may change")
		})
	}
}

// alOutside snapshots everything under base except root, with contents and times.
func alOutside(t testing.TB, base, root string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		line := p + " " + info.Mode().String() + " " + info.ModTime().String()
		if info.Mode().IsRegular() {
			data, _ := os.ReadFile(p)
			line += " " + string(data)
		}
		out = append(out, line)
		return nil
	}))
	return out
}

func TestApplyLayerDeviceModes(t *testing.T) {
	dev := alEntry{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Devmajor: 8, ModTime: alTime}}
	t.Run("skip", func(t *testing.T) {
		root := t.TempDir()
		require.NoError(t, alApply(t, root, ApplyOptions{NoChown: true, Devices: DevicesSkip}, dev))
		assert.Equal(t, []string{"dev drwxr-xr-x"}, alTree(t, root))
	})
	t.Run("placeholder", func(t *testing.T) {
		root := t.TempDir()
		require.NoError(t, alApply(t, root, ApplyOptions{NoChown: true, Devices: DevicesPlaceholder}, dev))
		assert.Equal(t, []string{"dev drwxr-xr-x", "dev/sda -rw-rw---- "}, alTree(t, root))
	})
}

// An unprivileged caller can still fill directories the image makes read-only.
func TestApplyLayerReadOnlyDirsNoChown(t *testing.T) {
	root := t.TempDir()
	opt := ApplyOptions{NoChown: true}
	require.NoError(t, alApply(t, root, opt, alDir("ro/", 0o555), alFile("ro/a", "a", 0o444)))
	require.NoError(t, alApply(t, root, opt, alDir("ro/", 0o555), alFile("ro/b", "b", 0o444), alFile(".wh.gone", "", 0)))
	assert.Equal(t, []string{"ro dr-xr-xr-x", "ro/a -r--r--r-- a", "ro/b -r--r--r-- b"}, alTree(t, root))
	require.NoError(t, alApply(t, root, opt, alFile(".wh.ro", "", 0)))
	assert.Empty(t, alTree(t, root))
}

func TestApplyLayerErrors(t *testing.T) {
	root := t.TempDir()
	err := ApplyLayer(root, strings.NewReader(strings.Repeat("not a tar ", 100)), ApplyOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "apply layer to "+root+": read tar:")

	err = ApplyLayer(filepath.Join(root, "missing"), bytes.NewReader(alLayer(t)), ApplyOptions{})
	require.ErrorIs(t, err, syscall.ENOENT)
	assert.Contains(t, err.Error(), "apply layer: open root "+filepath.Join(root, "missing"))

	// An empty stream and an empty archive are empty layers.
	require.NoError(t, ApplyLayer(root, strings.NewReader(""), ApplyOptions{}))
	require.NoError(t, ApplyLayer(root, bytes.NewReader(alLayer(t)), ApplyOptions{}))
}

// ApplyLayer consumes the whole stream, so a caller hashing it hashes every byte.
func TestApplyLayerReadsToEnd(t *testing.T) {
	data := append(alLayer(t, alFile("f", "x", 0o644)), make([]byte, 4096)...)
	r := bytes.NewReader(data)
	require.NoError(t, ApplyLayer(t.TempDir(), r, ApplyOptions{NoChown: os.Geteuid() != 0}))
	assert.Zero(t, r.Len())
}

// A whiteout of a symlink in a subdirectory: removing the link drops the cached parent
// descriptors, and must not use one of them after (isorun run --commit of `rm /bin/vi`).
func TestApplyLayerWhiteoutOfSymlinkInSubdir(t *testing.T) {
	root := t.TempDir()
	opt := ApplyOptions{NoChown: os.Geteuid() != 0}
	require.NoError(t, alApply(t, root, opt,
		alDir("bin/", 0o755),
		alFile("bin/busybox", "bb", 0o755),
		alSymlink("bin/vi", "busybox"),
	))
	require.NoError(t, alApply(t, root, opt, alDir("bin/", 0o755), alFile("bin/.wh.vi", "", 0o644)))
	assert.Equal(t, []string{"bin drwxr-xr-x", "bin/busybox -rwxr-xr-x bb"}, alTree(t, root))
}

// An entry that replaces what an earlier layer has in a subdirectory: removing a symlink or a
// directory flushes the cached parent descriptors, and the entry's own parent must survive that
// until the new entry is made (isorun run --commit of `ln -sf /etc/new /bin/ls`).
func TestApplyLayerReplaceInSubdir(t *testing.T) {
	opt := ApplyOptions{NoChown: os.Geteuid() != 0}
	base := []alEntry{
		alDir("d/", 0o755),
		alFile("d/f", "f", 0o644),
		alSymlink("d/link", "f"),
		alDir("d/sub/", 0o755),
		alFile("d/sub/x", "x", 0o644),
	}
	tests := []struct {
		name  string
		entry alEntry
		want  string // d/NAME's line in the tree
	}{
		{"symlink by symlink", alSymlink("d/link", "sub"), "d/link Lrwxrwxrwx -> sub"},
		{"symlink by file", alFile("d/link", "now a file", 0o600), "d/link -rw------- now a file"},
		{"symlink by directory", alDir("d/link/", 0o700), "d/link drwx------"},
		{"symlink by hard link", alHardlink("d/link", "d/f"), "d/link -rw-r--r-- f"},
		{"directory by file", alFile("d/sub", "now a file", 0o600), "d/sub -rw------- now a file"},
		{"directory by symlink", alSymlink("d/sub", "f"), "d/sub Lrwxrwxrwx -> f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			require.NoError(t, alApply(t, root, opt, base...))
			require.NoError(t, alApply(t, root, opt, alDir("d/", 0o755), tt.entry))
			assert.Contains(t, alTree(t, root), tt.want)
		})
	}
}
