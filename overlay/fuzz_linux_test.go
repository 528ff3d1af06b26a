package overlay

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Fuzz helpers are prefixed "fz". The fuzzers take one []byte each and decode it as a small
// program (fzProgram) rather than as raw tar or raw trees: raw tar headers carry checksums, so
// random mutations of them are almost all rejected at the first header and never reach the
// code under test. Seeds are in testdata/fuzz/<FuzzName>; a crasher the fuzzer finds is kept
// there as a seed.

// fzProgram reads bytes as a stream of small choices; reading past the end gives zeros, so
// every input is a valid (if short) program.
type fzProgram struct{ b []byte }

func (p *fzProgram) more() bool { return len(p.b) > 0 }

func (p *fzProgram) byte() byte {
	if len(p.b) == 0 {
		return 0
	}
	c := p.b[0]
	p.b = p.b[1:]
	return c
}

// str reads a length byte (at most max) and that many bytes.
func (p *fzProgram) str(max int) string {
	n := int(p.byte()) % (max + 1)
	if n > len(p.b) {
		n = len(p.b)
	}
	s := string(p.b[:n])
	p.b = p.b[n:]
	return s
}

// fzWords are path elements: few, so that entries collide on the same paths, and hostile ones
// among them.
var fzWords = []string{"a", "b", "c", "d", "..", ".", "", ".wh.a", ".wh.b", ".wh..wh..opq", ".wh..wh.x", ".wh.", "etc", "outside", "l"}

// name reads a path of up to four elements, or (rarely) a raw string.
func (p *fzProgram) name() string {
	c := p.byte()
	if c >= 240 {
		return p.str(24)
	}
	var parts []string
	if c&1 != 0 {
		parts = append(parts, "") // a leading "/"
	}
	for range 1 + int(c>>1)%4 {
		parts = append(parts, fzWords[int(p.byte())%len(fzWords)])
	}
	return strings.Join(parts, "/")
}

// FuzzApplyLayer applies a layer built from the input (or, for inputs whose first byte is odd,
// the input itself as a tar) and checks that nothing outside the root changed, whatever the
// layer held and whether it was refused or not.
func FuzzApplyLayer(f *testing.F) {
	f.Add([]byte{0, 1, 2, 0, 10, 'h', 'i'})
	f.Add(append([]byte{1}, fzSeedTar(f)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		var layer []byte
		if data[0]&1 != 0 {
			layer = data[1:]
			if n := fzDeclared(layer); n > 64<<20 {
				// Sparse entries expand to their declared size (as holes since the fix
				// this fuzzer prompted), at ~0.1 s/GB: time linear in what the archive
				// declares, not a finding.
				t.Skipf("the layer declares %d bytes", n)
			}
		} else {
			layer = fzLayer(t, &fzProgram{b: data[1:]})
		}
		base := fzScratch(t)
		root := filepath.Join(base, "root")
		outside := filepath.Join(base, "outside")
		for _, d := range []string{root, outside} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("host"), 0o600); err != nil {
			t.Fatal(err)
		}
		before := fzOutside(t, base, root)
		opt := ApplyOptions{}
		if os.Geteuid() != 0 {
			opt = ApplyOptions{NoChown: true, Devices: DevicesPlaceholder}
		}
		defer fzWatchdog("ApplyLayer")()
		err := ApplyLayer(root, bytes.NewReader(layer), opt)
		if after := fzOutside(t, base, root); after != before {
			t.Fatalf("ApplyLayer (err %v) changed what is outside the root:\nbefore:\n%s\nafter:\n%s", err, before, after)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "apply layer") {
			t.Errorf("error %q does not say what failed", err)
		}
		// Whatever was applied lies inside the root and can be removed.
		if err := Remove(root); err != nil {
			t.Fatalf("remove the applied root: %v", err)
		}
	})
}

// fzScratch is a fresh directory for one fuzz input, on a detached tmpfs that this process
// keeps for all its inputs (nothing is mounted anywhere; it goes with the process), removed
// when the input is done. Not t.TempDir: removing thousands of small trees file by file is slow
// on a disk (on an ext4 mounted with discard, every freed file waits for the device); and not a
// tmpfs per input either, whose unmount waits for an RCU grace period. Either way the fuzzer
// spent its time there instead of in the code under test.
func fzScratch(t *testing.T) string {
	s, err := fzTmpfs()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(s.Upper(), "in-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

var fzTmpfs = sync.OnceValues(NewScratch)

// fzWatchdog turns a hang into a crash, which the fuzzer records as a failing input (it has no
// time limit of its own): past 20 s it panics with every goroutine's stack. Call the function
// it returns when done.
func fzWatchdog(what string) (stop func()) {
	t := time.AfterFunc(20*time.Second, func() {
		buf := make([]byte, 1<<20)
		panic(fmt.Sprintf("%s hung for 20s:\n%s", what, buf[:runtime.Stack(buf, true)]))
	})
	return func() { t.Stop() }
}

// fzDeclared is the total size a tar's entries declare, as far as it reads.
func fzDeclared(layer []byte) int64 {
	var n int64
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err != nil {
			return n
		}
		n += h.Size
	}
}

// fzLayer writes the tar that program p describes: entries of every type, with names, link
// targets, modes, owners and xattrs chosen by p.
func fzLayer(t *testing.T, p *fzProgram) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; p.more() && i < 32; i++ {
		op := p.byte()
		h := &tar.Header{Name: p.name(), Mode: int64(p.byte())<<4 | int64(p.byte())&0o7777, ModTime: alTime}
		h.Mode &= 0o7777
		if op&0x80 != 0 {
			h.Uid, h.Gid = int(p.byte()), int(p.byte())
		}
		var body string
		switch op & 7 {
		case 0:
			h.Typeflag = tar.TypeReg
			body = p.str(64)
		case 1:
			h.Typeflag = tar.TypeDir
		case 2:
			h.Typeflag = tar.TypeSymlink
			h.Linkname = p.name()
		case 3:
			h.Typeflag = tar.TypeLink
			h.Linkname = p.name()
		case 4:
			h.Typeflag = tar.TypeChar
			h.Devmajor, h.Devminor = int64(p.byte()%2), int64(p.byte()%4) // 0/0 is a whiteout
		case 5:
			h.Typeflag = tar.TypeBlock
			h.Devmajor, h.Devminor = 7, int64(p.byte())
		case 6:
			h.Typeflag = tar.TypeFifo
		case 7:
			h.Typeflag = tar.TypeReg
			body = p.str(8)
			keys := []string{"user.x", "trusted.overlay.opaque", "user.overlay.whiteout", "security.capability", "trusted.x"}
			h.PAXRecords = map[string]string{paxXattrPrefix + keys[int(p.byte())%len(keys)]: p.str(4)}
			h.Format = tar.FormatPAX
		}
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			continue // a name the tar writer cannot hold: not ApplyLayer's problem
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fzSeedTar is a plain layer: a directory, a file, a symlink, a hard link, a whiteout.
func fzSeedTar(t testing.TB) []byte {
	return alLayer(t,
		alDir("etc", 0o755), alFile("etc/f", "x", 0o644), alSymlink("l", "../outside"),
		alHardlink("h", "etc/f"), alFile(".wh.gone", "", 0o644))
}

// fzOutside describes everything under base but root: names, types, modes, owners, link counts,
// sizes, contents and symlink targets (not times: a directory of root's is base's child).
func fzOutside(t *testing.T, base, root string) string {
	var b strings.Builder
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %o %d:%d n%d s%d", p, st.Mode, st.Uid, st.Gid, st.Nlink, st.Size)
		if d.Type().IsRegular() {
			data, _ := os.ReadFile(p)
			fmt.Fprintf(&b, " %q", data)
		} else if d.Type()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			fmt.Fprintf(&b, " -> %q", target)
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// FuzzDiff checks Diff against its specification on random trees and random changes: it builds
// two lower layers (with whiteouts and opaque directories of their own), mounts an overlay of
// them, makes the changes the input describes through the merged view, and compares Diff,
// while mounted and after, with ovNaiveDiff of full snapshots of the view before and after.
// Needs root (whiteouts are device nodes; trusted.* xattrs).
func FuzzDiff(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 2, 0, 0, 0, 3, 1})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Fuzz(func(t *testing.T, data []byte) {
		ovRequireRoot(t)
		defer fzWatchdog("FuzzDiff")()
		p := &fzProgram{b: data}
		dir := fzScratch(t)
		top, bottom := filepath.Join(dir, "top"), filepath.Join(dir, "bottom")
		upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
		for _, d := range []string{top, bottom, upper, work} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		// The lowers: up to 12 operations each, then the changes until the input ends.
		for _, l := range []string{bottom, top} {
			for n := int(p.byte()) % 13; n > 0; n-- {
				fzDo(p, l, true)
			}
		}
		lowers := []string{top, bottom}
		root, err := Open(Config{Lowers: lowers, Upper: upper, Work: work})
		if err != nil {
			// A lower tree the kernel refuses (say, a whiteout at a lower's root name) is
			// not what this fuzzer is about.
			t.Skipf("mount: %v", err)
		}
		merged := "/proc/self/fd/" + fmt.Sprint(root.Fd())
		before := fzSnapshot(t, merged)
		for i := 0; p.more() && i < 24; i++ {
			fzDo(p, merged, false)
		}
		after := fzSnapshot(t, merged)
		want := ovNaiveDiff(before, after)
		got, err := Diff(upper, lowers)
		if err != nil {
			root.Close()
			t.Fatalf("Diff while mounted: %v", err)
		}
		ovEqualChanges(t, "Diff while mounted vs the naive diff", got, want)
		root.Close()
		got, err = Diff(upper, lowers)
		if err != nil {
			t.Fatalf("Diff after: %v", err)
		}
		ovEqualChanges(t, "Diff after unmount vs the naive diff", got, want)
	})
}

// fzPath is a path of one to three elements of a, b, c under root.
func fzPath(p *fzProgram, root string) string {
	c := p.byte()
	parts := []string{root}
	for range 1 + int(c)%3 {
		parts = append(parts, string(rune('a'+int(p.byte())%3)))
	}
	return path.Join(parts...)
}

// fzDo does one operation under root; lower says root is a lower layer being built, where
// whiteouts and opaque markers may be written by hand. Errors are expected (a parent is
// missing, a file is in the way) and ignored: the trees are compared, not the operations.
func fzDo(p *fzProgram, root string, lower bool) {
	op := p.byte()
	x := fzPath(p, root)
	switch op % 14 {
	case 0:
		os.MkdirAll(x, 0o755)
	case 1:
		os.MkdirAll(path.Dir(x), 0o755)
		fzWrite(x, os.O_CREATE, p.str(6))
	case 2:
		os.Remove(x)
	case 3:
		fzRemoveAll(x)
	case 4:
		unix.Chmod(x, uint32(p.byte())|uint32(p.byte()&0o17)<<8) // setuid, setgid and sticky too
	case 5:
		os.Lchown(x, int(p.byte()%3), int(p.byte()%3))
	case 6:
		os.Symlink(p.str(4), x)
	case 7:
		os.Rename(x, fzPath(p, root))
	case 8:
		os.Link(x, fzPath(p, root))
	case 9:
		unix.Lsetxattr(x, "user.k", []byte(p.str(3)), 0)
	case 10:
		unix.Lremovexattr(x, "user.k")
	case 11:
		fzWrite(x, 0, p.str(6))
	case 12:
		if lower {
			unix.Mknod(x, unix.S_IFCHR, 0) // a whiteout in a lower layer
		} else {
			unix.Mkfifo(x, 0o644)
		}
	case 13:
		if lower {
			unix.Lsetxattr(x, "trusted.overlay.opaque", []byte("y"), 0)
		} else {
			os.Chtimes(x, alTime, alTime) // a copy-up that changes nothing Diff counts
		}
	}
}

// fzWrite writes data to the file at x, truncating it; O_NONBLOCK because x may be a fifo,
// whose open for writing would otherwise wait for a reader forever.
// fzRemoveAll is os.RemoveAll where x's parent is a directory. os.RemoveAll opens the parent
// without O_DIRECTORY once x is not removable, and when that parent is a FIFO the open blocks
// forever: a hang of the fuzzer's own, which the fuzzer found (testdata/fuzz/FuzzDiff/873343bbb6fe430d).
func fzRemoveAll(x string) {
	if fi, err := os.Lstat(path.Dir(x)); err == nil && fi.IsDir() {
		os.RemoveAll(x)
	}
}

func fzWrite(x string, flag int, data string) {
	if f, err := os.OpenFile(x, os.O_WRONLY|os.O_TRUNC|unix.O_NONBLOCK|flag, 0o644); err == nil {
		f.WriteString(data)
		f.Close()
	}
}

// fzSnapshot is ovSnapshot for a root that is a /proc/self/fd/N magic link (a detached mount),
// which filepath.WalkDir would take for a symlink and not enter.
func fzSnapshot(t *testing.T, root string) map[string]ovNode {
	snap := make(map[string]ovNode)
	err := fs.WalkDir(os.DirFS(root), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil || rel == "." {
			return err
		}
		p := root + "/" + rel
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err == unix.ENOENT {
			// Listed but not there: a hand-made whiteout in a directory of one layer only,
			// which overlayfs lists (it passes such a directory's listing through) but hides
			// on lookup. No user of the view can open it: not part of the view.
			return nil
		} else if err != nil {
			return fmt.Errorf("lstat %s: %w", p, err)
		}
		n, err := ovNodeOf(p, &st)
		if err != nil {
			return err
		}
		snap["/"+rel] = n
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	return snap
}
