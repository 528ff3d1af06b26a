package overlay

import (
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// ovBaseLower is the image the operation cases start from.
func ovBaseLower(t testing.TB, root string) {
	ovBuild(t, root).
		Dir("etc", 0o755).
		File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644).
		File("etc/conf", "a=1\n", 0o644).
		File("bin/tool", "#!/bin/sh\necho tool\n", 0o755).
		File("d/x", "x\n", 0o644).
		File("d/sub/y", "y\n", 0o644).
		File("d/sub/z/deep", "deep\n", 0o644).
		Symlink("link", "etc/passwd").
		File("hl1", "hard\n", 0o644).
		Link("hl2", "hl1").
		File("own", "owned\n", 0o640).Chown("own", 1000, 1000).
		File("xa", "xattrs\n", 0o644).Xattr("xa", "user.color", "blue").
		Char("cdev", 1, 3).
		Fifo("fifo").
		Dir("empty", 0o755)
}

// ovCase is one operation done through the merged directory and the exact
// changes it must produce.
type ovCase struct {
	name string
	sh   string                            // run by sh -e in the merged dir, or
	op   func(t testing.TB, merged string) // done in Go
	want string                            // one "K /path" a line
	// wantChanges is used instead of want for paths the text form cannot
	// hold on one line.
	wantChanges Changes
	noLayer     bool // WriteLayer cannot carry it (sockets)
}

func ovWeirdName() string { return "we ird,na:me\\x\nline two" }

var ovCases = []ovCase{
	{name: "create", sh: "echo new > new", want: "A /new"},
	{name: "create in existing deep dir", sh: "echo n > d/sub/z/new", want: "A /d/sub/z/new"},
	{name: "overwrite same size", sh: "printf 'b=2\\n' > etc/conf", want: "C /etc/conf"},
	{name: "overwrite identical", sh: "printf 'a=1\\n' > etc/conf"},
	{name: "append", sh: "echo more >> etc/conf", want: "C /etc/conf"},
	{name: "truncate", sh: ": > etc/conf", want: "C /etc/conf"},
	{name: "chmod", sh: "chmod 600 etc/conf", want: "C /etc/conf"},
	{name: "chmod and back", sh: "chmod 600 etc/conf && chmod 644 etc/conf"},
	{name: "setuid bit", sh: "chmod 4755 bin/tool", want: "C /bin/tool"},
	{name: "chown", sh: "chown 1000:1000 etc/conf", want: "C /etc/conf"},
	{name: "chgrp only", sh: "chown 0:1000 etc/conf", want: "C /etc/conf"},
	{name: "chown to same owner", sh: "chown 1000:1000 own"},
	{name: "chmod dir", sh: "chmod 700 d", want: "C /d"},
	{name: "touch only", sh: "touch etc/conf"},
	{name: "touch dir only", sh: "touch d d/sub"},
	{name: "touch and restore content", sh: "echo x >> etc/conf && printf 'a=1\\n' > etc/conf"},
	{name: "delete file", sh: "rm etc/conf", want: "D /etc/conf"},
	{name: "delete dir tree", sh: "rm -rf d", want: "D /d"},
	{name: "delete empty dir", sh: "rmdir empty", want: "D /empty"},
	{name: "delete symlink fifo device", sh: "rm link fifo cdev", want: "D /cdev\nD /fifo\nD /link"},
	{name: "rm -rf d && mkdir d", sh: "rm -rf d && mkdir d", want: "D /d/sub\nD /d/x"},
	{name: "rm -rf d && mkdir d && touch d/new", sh: "rm -rf d && mkdir d && touch d/new",
		want: "A /d/new\nD /d/sub\nD /d/x"},
	{name: "rm -rf d && mkdir d && same d/x again", sh: "rm -rf d && mkdir d && printf 'x\\n' > d/x",
		want: "D /d/sub"},
	{name: "rm -rf d && mkdir d with another mode", sh: "rm -rf d && mkdir -m 700 d",
		want: "C /d\nD /d/sub\nD /d/x"},
	{name: "rm -rf d && mkdir -p d/sub", sh: "rm -rf d && mkdir -p d/sub",
		want: "D /d/sub/y\nD /d/sub/z\nD /d/x"},
	{name: "rm -rf d && mkdir d && mkdir d/new && touch d/new/f", sh: "rm -rf d && mkdir -p d/new && touch d/new/f",
		want: "A /d/new\nA /d/new/f\nD /d/sub\nD /d/x"},
	{name: "rename file", sh: "mv etc/conf etc/conf2", want: "A /etc/conf2\nD /etc/conf"},
	{name: "rename dir", sh: "mv d e",
		want: "A /e\nA /e/sub\nA /e/sub/y\nA /e/sub/z\nA /e/sub/z/deep\nA /e/x\nD /d"},
	{name: "rename new file", sh: "echo n > n1 && mv n1 n2", want: "A /n2"},
	{name: "replace file by dir", sh: "rm etc/conf && mkdir etc/conf && touch etc/conf/f",
		want: "C /etc/conf\nA /etc/conf/f"},
	{name: "replace dir by file", sh: "rm -rf d && echo f > d", want: "C /d"},
	{name: "replace file by symlink", sh: "rm etc/conf && ln -s passwd etc/conf", want: "C /etc/conf"},
	{name: "symlink retarget", sh: "ln -sfn bin/tool link", want: "C /link"},
	{name: "symlink recreated same target", sh: "rm link && ln -s etc/passwd link"},
	{name: "hardlink", sh: "ln etc/passwd etc/passwd2", want: "A /etc/passwd2"},
	{name: "modify one of a lower hardlink pair", sh: "echo more >> hl1", want: "C /hl1"},
	{name: "fifo", sh: "mkfifo p", want: "A /p"},
	{name: "device", sh: "mknod c2 c 1 5", want: "A /c2"},
	{name: "device numbers changed", sh: "rm cdev && mknod cdev c 1 5", want: "C /cdev"},
	{name: "device recreated same", sh: "rm cdev && mknod -m 666 cdev c 1 3"},
	{name: "setxattr", op: ovSetxattr("etc/passwd", "user.k", "v"), want: "C /etc/passwd"},
	{name: "setxattr on dir", op: ovSetxattr("d", "user.k", "v"), want: "C /d"},
	{name: "xattr value changed", op: ovSetxattr("xa", "user.color", "red"), want: "C /xa"},
	{name: "xattr same value", op: ovSetxattr("xa", "user.color", "blue")},
	{name: "removexattr", op: func(t testing.TB, m string) {
		if err := unix.Removexattr(m+"/xa", "user.color"); err != nil {
			t.Fatal(err)
		}
	}, want: "C /xa"},
	{name: "deep new tree", sh: "mkdir -p n/a/b/c && echo f > n/a/b/c/f",
		want: "A /n\nA /n/a\nA /n/a/b\nA /n/a/b/c\nA /n/a/b/c/f"},
	{name: "create then delete", sh: "echo t > tmp1 && rm tmp1"},
	{name: "delete then recreate identical", sh: "rm etc/conf && printf 'a=1\\n' > etc/conf && chmod 644 etc/conf"},
	{name: "delete lower file, create and delete again", sh: "rm etc/conf && echo n > etc/conf && rm etc/conf",
		want: "D /etc/conf"},
	{name: "path with spaces commas colons backslashes newlines", op: func(t testing.TB, m string) {
		if err := os.Mkdir(m+"/"+ovWeirdName(), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(m+"/"+ovWeirdName()+"/f, g", []byte("w"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(m+"/etc/a b,c", []byte("w"), 0o644); err != nil {
			t.Fatal(err)
		}
	}, wantChanges: Changes{
		{Added, "/etc/a b,c"},
		{Added, "/" + ovWeirdName()},
		{Added, "/" + ovWeirdName() + "/f, g"},
	}},
	{name: "socket", op: func(t testing.TB, m string) {
		l, err := net.Listen("unix", m+"/sock")
		if err != nil {
			t.Fatal(err)
		}
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
	}, want: "A /sock", noLayer: true},
}

func ovSetxattr(name, key, value string) func(testing.TB, string) {
	return func(t testing.TB, m string) {
		if err := unix.Lsetxattr(m+"/"+name, key, []byte(value), 0); err != nil {
			t.Fatal(err)
		}
	}
}

func (c ovCase) run(t testing.TB, merged string) {
	t.Helper()
	if c.sh != "" {
		ovSh(t, merged, c.sh)
	}
	if c.op != nil {
		c.op(t, merged)
	}
}

func (c ovCase) wanted(t testing.TB) Changes {
	if c.wantChanges != nil {
		return c.wantChanges
	}
	return ovParse(t, c.want)
}

func TestDiffOperations(t *testing.T) {
	ovRequireRoot(t)
	for _, c := range ovCases {
		t.Run(c.name, func(t *testing.T) {
			lower := t.TempDir()
			ovBaseLower(t, lower)
			ovCheckCase(t, c, []string{lower})
		})
	}
}

// ovCheckCase does c's operation on a fresh overlay of lowers and checks
// Diff while mounted and after unmounting, against c's expectation and
// against a naive diff of the full trees.
func ovCheckCase(t *testing.T, c ovCase, lowers []string) {
	t.Helper()
	o := ovMount(t, lowers...)
	before := ovSnapshot(t, o.Merged)
	c.run(t, o.Merged)
	after := ovSnapshot(t, o.Merged)
	want := c.wanted(t)
	ovEqualChanges(t, "naive diff of the trees vs expected (the test itself is wrong)", ovNaiveDiff(before, after), want)

	got, err := Diff(o.Upper, o.Lowers)
	if err != nil {
		t.Fatal(err)
	}
	ovEqualChanges(t, "Diff while mounted", got, want)

	o.Unmount(t)
	got, err = Diff(o.Upper, o.Lowers)
	if err != nil {
		t.Fatal(err)
	}
	ovEqualChanges(t, "Diff after unmount", got, want)
}

// ovStackLowers builds a lower stack that holds its own whiteouts and opaque
// directories, as image layers do, and returns it top first.
func ovStackLowers(t testing.TB) []string {
	bottom, middle, top := t.TempDir(), t.TempDir(), t.TempDir()
	ovBuild(t, bottom).
		File("a", "a\n", 0o644).
		File("gone", "gone\n", 0o644).
		File("o/old1", "1\n", 0o644).
		File("o/old2", "2\n", 0o644).
		File("keep/k1", "k1\n", 0o644).
		File("wd/f", "f\n", 0o644).
		File("f/child/c", "c\n", 0o644).
		File("xw/xf", "x\n", 0o644).
		File("xw/other", "o\n", 0o644).
		File("deep/hidden/h", "h\n", 0o644)
	// middle hides deep/hidden with a whiteout; top does not mention it.
	ovBuild(t, middle).
		Dir("deep", 0o755).
		Whiteout("deep/hidden").
		File("deep/mid", "m\n", 0o644)
	ovBuild(t, top).
		Whiteout("gone").
		Dir("o", 0o755).Xattr("o", "trusted.overlay.opaque", "y").
		File("o/new1", "n\n", 0o644).
		File("keep/k2", "k2\n", 0o644).
		File("wd", "now a file\n", 0o644).
		File("f", "file over a dir\n", 0o644).
		// the xattr form of a whiteout, in a directory marked to hold them
		Dir("xw", 0o755).Xattr("xw", "trusted.overlay.opaque", "x").
		File("xw/xf", "", 0o644).Xattr("xw/xf", "trusted.overlay.whiteout", "")
	return []string{top, middle, bottom}
}

func TestDiffLowerStack(t *testing.T) {
	ovRequireRoot(t)
	for _, c := range ovStackCases {
		t.Run(c.name, func(t *testing.T) {
			ovCheckCase(t, c, ovStackLowers(t))
		})
	}
}

var ovStackCases = []ovCase{
	{name: "create a name a higher layer whited out", sh: "echo g > gone", want: "A /gone"},
	{name: "create a name hidden by an opaque dir", sh: "echo 1 > o/old1", want: "A /o/old1"},
	{name: "create a name hidden by an xattr whiteout", sh: "echo x > xw/xf", want: "A /xw/xf"},
	{name: "rm -rf opaque dir && mkdir", sh: "rm -rf o && mkdir o", want: "D /o/new1"},
	{name: "rm -rf merged dir && mkdir", sh: "rm -rf keep && mkdir keep", want: "D /keep/k1\nD /keep/k2"},
	{name: "delete beside an xattr whiteout", sh: "rm xw/other", want: "D /xw/other"},
	{name: "delete from the bottom layer", sh: "rm keep/k1", want: "D /keep/k1"},
	{name: "delete opaque dir", sh: "rm -rf o", want: "D /o"},
	{name: "file over a dir replaced by a dir", sh: "rm f && mkdir f", want: "C /f"},
	{name: "file over a dir replaced by dir and its old child", sh: "rm f && mkdir -p f/child",
		want: "A /f/child\nC /f"},
	{name: "recreate a dir whited out in the middle", sh: "mkdir deep/hidden", want: "A /deep/hidden"},
	{name: "rm -rf dir merged over a whiteout && mkdir", sh: "rm -rf deep && mkdir deep", want: "D /deep/mid"},
	{name: "touch in every layer", sh: "touch a o/new1 keep/k1 keep/k2 wd deep/mid"},
}

func TestDiffRefusesRedirectAndMetacopy(t *testing.T) {
	ovRequireRoot(t)
	for _, key := range []string{"trusted.overlay.redirect", "user.overlay.redirect", "trusted.overlay.metacopy"} {
		t.Run(key, func(t *testing.T) {
			lower := t.TempDir()
			ovBaseLower(t, lower)
			o := ovMount(t, lower)
			ovSh(t, o.Merged, "mkdir -p n/sub && echo f > n/sub/f")
			o.Unmount(t)
			// What the kernel would write with redirect_dir=on or metacopy=on.
			if err := unix.Lsetxattr(o.Upper+"/n/sub", key, []byte("/d"), 0); err != nil {
				t.Fatal(err)
			}
			_, err := Diff(o.Upper, o.Lowers)
			if err == nil {
				t.Fatal("Diff accepted an upper with " + key)
			}
			want := "redirect_dir=off"
			if strings.HasSuffix(key, "metacopy") {
				want = "metacopy=off"
			}
			for _, s := range []string{"/n/sub", want, o.Upper} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

// An upper written with userxattr (rootless) marks opaque directories with
// user.overlay.opaque; Diff reads that form too.
func TestDiffUserXattrUpper(t *testing.T) {
	ovRequireRoot(t)
	lower, upper := t.TempDir(), t.TempDir()
	ovBaseLower(t, lower)
	ovBuild(t, upper).
		Dir("d", 0o755).Xattr("d", "user.overlay.opaque", "y").
		File("d/new", "", 0o644).
		Whiteout("etc/conf").
		Dir("etc", 0o755).Xattr("etc", "user.overlay.impure", "y").
		Whiteout("never-existed")
	got, err := Diff(upper, []string{lower})
	if err != nil {
		t.Fatal(err)
	}
	ovEqualChanges(t, "Diff", got, ovParse(t, "A /d/new\nD /d/sub\nD /d/x\nD /etc/conf"))
}

// Uppers built by hand, for states the kernel on this machine does not let a
// test reach through the merged dir: 6.18 refuses to rmdir a directory whose
// lower holds xattr whiteouts (ENOTEMPTY), so an opaque directory over one is
// made directly.
func TestDiffHandBuiltUpperOverStack(t *testing.T) {
	ovRequireRoot(t)
	lowers := ovStackLowers(t)
	upper := t.TempDir()
	ovBuild(t, upper).
		Dir("xw", 0o755).Xattr("xw", "trusted.overlay.opaque", "y").
		Dir("deep", 0o755).Xattr("deep", "trusted.overlay.opaque", "y").
		File("deep/hidden/new", "", 0o644)
	got, err := Diff(upper, lowers)
	if err != nil {
		t.Fatal(err)
	}
	ovEqualChanges(t, "Diff", got, ovParse(t, "A /deep/hidden\nA /deep/hidden/new\nD /deep/mid\nD /xw/other"))
}

func TestDiffErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/file", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, upper string
		lowers      []string
		want        string
	}{
		{"missing upper", dir + "/nope", nil, "nope"},
		{"upper is a file", dir + "/file", nil, "not a directory"},
		{"missing lower", dir, []string{dir + "/nolower"}, "nolower"},
		{"missing lower under an empty upper", t.TempDir(), []string{dir + "/nolower"}, "nolower"},
		{"lower is a file under an empty upper", t.TempDir(), []string{dir + "/file"}, "not a directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Diff(c.upper, c.lowers)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "overlay: diff ") {
				t.Errorf("Diff(%q, %q) = %v, want an error mentioning %q", c.upper, c.lowers, err, c.want)
			}
		})
	}
}

// The rootless option set (userxattr, no redirect_dir) end to end: the
// kernel writes user.overlay.* and Diff reads it.
func TestDiffUserXattrMount(t *testing.T) {
	ovRequireRoot(t)
	lower, dir := t.TempDir(), t.TempDir()
	ovBaseLower(t, lower)
	ovBuild(t, dir).Dir("upper", 0o755).Dir("work", 0o755).Dir("merged", 0o755)
	cfg := Config{Lowers: []string{lower}, Upper: dir + "/upper", Work: dir + "/work", UserXattr: true}
	if err := Mount(dir+"/merged", cfg); err != nil {
		t.Fatal(err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			Unmount(dir + "/merged")
		}
	})
	ovSh(t, dir+"/merged", "rm -rf d && mkdir d && touch d/new && rm etc/conf && chmod 600 etc/passwd && mv bin b2")
	if err := Unmount(dir + "/merged"); err != nil {
		t.Fatal(err)
	}
	mounted = false
	if v, ok, err := lgetxattr(dir+"/upper/d", "user.overlay.opaque"); err != nil || !ok || v != "y" {
		t.Fatalf("user.overlay.opaque on the upper's d = %q, %v, %v: not the upper this test means to read", v, ok, err)
	}
	got, err := Diff(cfg.Upper, cfg.Lowers)
	if err != nil {
		t.Fatal(err)
	}
	ovEqualChanges(t, "Diff", got, ovParse(t, `A /b2
A /b2/tool
D /bin
A /d/new
D /d/sub
D /d/x
D /etc/conf
C /etc/passwd`))
}
