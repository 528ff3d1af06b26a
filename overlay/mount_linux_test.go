package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// ovFdPath names a path inside a detached mount through its descriptor.
func ovFdPath(f *os.File, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) + "/" + name
}

func ovReadAt(t testing.TB, f *os.File, name string) string {
	t.Helper()
	b, err := os.ReadFile(ovFdPath(f, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ovOpenFds(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// ovLowers makes n lowers below base with names of about nameLen bytes,
// each holding "own<i>" and a "shared" file whose content says which layer
// the merged view shows.
func ovLowers(t testing.TB, base string, n, nameLen int) []string {
	t.Helper()
	lowers := make([]string, n)
	for i := range lowers {
		name := fmt.Sprintf("%03d-", i)
		name += strings.Repeat("l", max(nameLen-len(name), 1))
		// Directory names are limited to 255 bytes; longer paths nest.
		p := base
		for len(name) > 0 {
			k := min(len(name), 200)
			p = filepath.Join(p, name[:k])
			name = name[k:]
		}
		ovBuild(t, p).
			File(fmt.Sprintf("own%d", i), strconv.Itoa(i), 0o644).
			File("shared", strconv.Itoa(i), 0o644)
		lowers[i] = p
	}
	return lowers
}

// ovCheckStack checks through the overlay's descriptor that every lower is
// there and the top one wins.
func ovCheckStack(t testing.TB, f *os.File, n int) {
	t.Helper()
	if got := ovReadAt(t, f, "shared"); got != "0" {
		t.Errorf("shared = %q, want the top lower's %q", got, "0")
	}
	for i := 0; i < n; i++ {
		if got := ovReadAt(t, f, fmt.Sprintf("own%d", i)); got != strconv.Itoa(i) {
			t.Errorf("own%d = %q", i, got)
		}
	}
}

func TestOpenIsDetached(t *testing.T) {
	ovRequireRoot(t)
	lower := t.TempDir()
	ovBaseLower(t, lower)
	before := ovMountinfo(t)
	fds := ovOpenFds(t)

	s, err := NewScratch()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.Upper(), "/proc/self/fd/") || !strings.HasSuffix(s.Work(), "/work") {
		t.Errorf("Upper() = %q, Work() = %q", s.Upper(), s.Work())
	}
	f, err := Open(Config{Lowers: []string{lower}, Upper: s.Upper(), Work: s.Work()})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ovFdPath(f, "greeting"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(ovFdPath(f, "etc/conf")); err != nil {
		t.Fatal(err)
	}
	if got := ovMountinfo(t); got != before {
		t.Errorf("mountinfo changed while the overlay is open:\n%s", got)
	}
	got, err := Diff(s.Upper(), []string{lower})
	if err != nil {
		t.Fatal(err)
	}
	ovEqualChanges(t, "Diff of the scratch upper", got, ovParse(t, "D /etc/conf\nA /greeting"))

	// The overlay keeps the tmpfs alive after the scratch descriptor closes.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := ovReadAt(t, f, "greeting"); got != "hi" {
		t.Errorf("greeting after Scratch.Close = %q", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := ovMountinfo(t); got != before {
		t.Errorf("mountinfo changed:\n%s", got)
	}
	if got := ovOpenFds(t); got != fds {
		t.Errorf("%d descriptors open after, %d before", got, fds)
	}
}

func TestMountAndUnmount(t *testing.T) {
	ovRequireRoot(t)
	lower := t.TempDir()
	ovBaseLower(t, lower)
	o := ovMount(t, lower)
	if !strings.Contains(ovMountinfo(t), " "+o.Merged+" ") {
		t.Errorf("%s not in mountinfo after Mount", o.Merged)
	}
	if b, err := os.ReadFile(o.Merged + "/etc/conf"); err != nil || string(b) != "a=1\n" {
		t.Errorf("read through the mount: %q, %v", b, err)
	}
	o.Unmount(t)
	if strings.Contains(ovMountinfo(t), " "+o.Merged+" ") {
		t.Errorf("%s still in mountinfo after Unmount", o.Merged)
	}
	if err := Unmount(o.Merged); err == nil || !strings.Contains(err.Error(), o.Merged) {
		t.Errorf("second Unmount = %v, want an error naming %s", err, o.Merged)
	}
}

// Layer paths with the characters the option syntax uses: commas split
// mount data, colons split lowerdir, backslashes escape. t.TempDir keeps
// commas and spaces of a test's name.
func TestOpenSpecialCharacters(t *testing.T) {
	ovRequireRoot(t)
	for _, mode := range []struct {
		name string
		opt  openOptions
	}{
		{"lowerdir+", openOptions{}},
		{"one lowerdir string", openOptions{noLowerdirPlus: true}},
	} {
		t.Run(mode.name+", with commas", func(t *testing.T) {
			base := filepath.Join(t.TempDir(), `a,b:c\d e`)
			lowers := []string{base + `/low:1,x\`, base + `/low\2`}
			for i, l := range lowers {
				ovBuild(t, l).File("shared", strconv.Itoa(i), 0o644).File(fmt.Sprintf("own%d", i), strconv.Itoa(i), 0o644)
			}
			ovBuild(t, base).Dir(`up,p:e\r`, 0o755).Dir(`wo:r,k\`, 0o755)
			cfg := Config{Lowers: lowers, Upper: base + `/up,p:e\r`, Work: base + `/wo:r,k\`}
			f, err := open(cfg, mode.opt)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			ovCheckStack(t, f, len(lowers))
			if err := os.WriteFile(ovFdPath(f, "new"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(cfg.Upper + "/new"); err != nil {
				t.Errorf("write did not land in the upper: %v", err)
			}
		})
	}
}

func TestOpenManyLongLowers(t *testing.T) {
	ovRequireRoot(t)
	// 64 lowers of ~300 bytes each: 19 KB of lowerdir, far past a 4 KB
	// mount-data page, and each past fsconfig's 255-byte string.
	base := t.TempDir()
	lowers := ovLowers(t, base, 64, 300)
	upper, work := base+"/upper", base+"/work"
	ovBuild(t, base).Dir("upper", 0o755).Dir("work", 0o755)
	cfg := Config{Lowers: lowers, Upper: upper, Work: work}
	fds := ovOpenFds(t)

	t.Run("lowerdir+", func(t *testing.T) {
		if !hasLowerdirPlus() {
			t.Skip("kernel before 6.8: no lowerdir+")
		}
		f, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		ovCheckStack(t, f, len(lowers))
	})
	t.Run("one lowerdir string fails clearly", func(t *testing.T) {
		_, err := open(cfg, openOptions{noLowerdirPlus: true})
		if !errors.Is(err, ErrTooManyLowers) {
			t.Fatalf("err = %v, want ErrTooManyLowers", err)
		}
		for _, s := range []string{"overlay: mount", "64 lowers", "lowerdir+", "255"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not mention %q", err, s)
			}
		}
	})
	if got := ovOpenFds(t); got != fds {
		t.Errorf("%d descriptors open after, %d before", got, fds)
	}
}

// Without lowerdir+, lowers that do not fit one option as paths are named
// /proc/self/fd/N; when even those do not fit, Open says so.
func TestOpenOneLowerdirStringFallback(t *testing.T) {
	ovRequireRoot(t)
	base := t.TempDir()
	lowers := ovLowers(t, base, 4, 100) // ~430 bytes joined
	fds := ovOpenFds(t)

	t.Run("fits as paths", func(t *testing.T) {
		short := ovLowers(t, t.TempDir(), 3, 5)
		f, err := open(Config{Lowers: short}, openOptions{noLowerdirPlus: true})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		ovCheckStack(t, f, len(short))
	})
	t.Run("fits as descriptor names", func(t *testing.T) {
		f, err := open(Config{Lowers: lowers}, openOptions{noLowerdirPlus: true})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		ovCheckStack(t, f, len(lowers))
	})
	t.Run("does not fit", func(t *testing.T) {
		_, err := open(Config{Lowers: lowers}, openOptions{noLowerdirPlus: true, stringMax: 40})
		if !errors.Is(err, ErrTooManyLowers) || !strings.Contains(err.Error(), "4 lowers") {
			t.Fatalf("err = %v, want ErrTooManyLowers naming 4 lowers", err)
		}
	})
	t.Run("long upper and work as descriptor names", func(t *testing.T) {
		long := filepath.Join(base, strings.Repeat("u", 200), strings.Repeat("v", 100))
		ovBuild(t, long).Dir("upper", 0o755).Dir("work", 0o755)
		for _, opt := range []openOptions{{}, {noLowerdirPlus: true}} {
			f, err := open(Config{Lowers: lowers[:1], Upper: long + "/upper", Work: long + "/work"}, opt)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(ovFdPath(f, "new"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if err := os.Remove(long + "/upper/new"); err != nil {
				t.Errorf("write did not land in the upper: %v", err)
			}
		}
	})
	if got := ovOpenFds(t); got != fds {
		t.Errorf("%d descriptors open after, %d before", got, fds)
	}
}

func TestJoinLowers(t *testing.T) {
	dir := t.TempDir()
	ovBuild(t, dir).Dir("a,b", 0o755).Dir("c:d", 0o755).Dir(`e\f`, 0o755)
	comma, colon, backslash := dir+"/a,b", dir+"/c:d", dir+`/e\f`
	const fd = "fd" // a /proc/self/fd/N naming this lower
	for _, tc := range []struct {
		name   string
		lowers []string
		max    int
		want   []string
		errIs  error
	}{
		{"escaped paths", []string{colon, backslash}, 255, []string{dir + `/c\:d`, dir + `/e\\f`}, nil},
		{"a comma always by descriptor", []string{colon, comma}, 255, []string{dir + `/c\:d`, fd}, nil},
		{"too long: all by descriptor", []string{colon, comma, backslash}, len(dir) + 20, []string{fd, fd, fd}, nil},
		{"nothing fits", []string{colon, comma}, 10, nil, ErrTooManyLowers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var names fdNames
			defer names.close()
			got, err := joinLowers(tc.lowers, tc.max, &names)
			if !errors.Is(err, tc.errIs) {
				t.Fatalf("err = %v, want %v", err, tc.errIs)
			}
			if err != nil {
				return
			}
			// Names can hold no ':' once escaped or replaced, so splitting is safe.
			parts := strings.Split(strings.ReplaceAll(got, `\:`, "\x00"), ":")
			if len(parts) != len(tc.want) {
				t.Fatalf("got %q, want %d parts", got, len(tc.want))
			}
			for i, p := range parts {
				p = strings.ReplaceAll(p, "\x00", `\:`)
				if tc.want[i] != fd {
					if p != tc.want[i] {
						t.Errorf("part %d = %q, want %q", i, p, tc.want[i])
					}
					continue
				}
				if target, err := os.Readlink(p); err != nil || target != tc.lowers[i] {
					t.Errorf("part %d = %q -> %q (%v), want a descriptor of %s", i, p, target, err, tc.lowers[i])
				}
			}
			if n := strings.Count(got, "/proc/self/fd/"); n != len(names.fds) {
				t.Errorf("%d descriptors opened, %d used", len(names.fds), n)
			}
		})
	}
}

func TestOpenReadOnly(t *testing.T) {
	ovRequireRoot(t)
	lowers := ovLowers(t, t.TempDir(), 2, 10)
	f, err := Open(Config{Lowers: lowers})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ovCheckStack(t, f, 2)
	if err := os.WriteFile(ovFdPath(f, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write to a read-only overlay: %v, want EROFS", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ovRequireRoot(t)
	dir := t.TempDir()
	lowers := ovLowers(t, dir, 2, 10)
	ovBuild(t, dir).Dir("upper", 0o755).Dir("work", 0o755)
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no lowers", Config{}, "no lowers"},
		{"upper without work", Config{Lowers: lowers, Upper: dir + "/upper"}, "together"},
		{"one lower, no upper", Config{Lowers: lowers[:1]}, "at least two lowers"},
		{"missing lower", Config{Lowers: []string{dir + "/nope"}, Upper: dir + "/upper", Work: dir + "/work"}, dir + "/nope"},
		{"missing upper", Config{Lowers: lowers, Upper: dir + "/noup", Work: dir + "/work"}, dir + "/noup"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := Open(c.cfg)
			if err == nil {
				f.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.HasPrefix(err.Error(), "overlay: mount ") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestRemove(t *testing.T) {
	ovRequireRoot(t)
	lower := t.TempDir()
	ovBaseLower(t, lower)
	o := ovMount(t, lower)
	ovSh(t, o.Merged, "echo hi > greeting")
	state := filepath.Dir(o.Upper)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(state, link); err != nil {
		t.Fatal(err)
	}

	for _, dir := range []string{state, o.Merged, link} {
		err := Remove(dir)
		if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), o.Merged) {
			t.Errorf("Remove(%s) while mounted = %v, want EBUSY naming %s", dir, err, o.Merged)
		}
	}
	if _, err := os.Stat(o.Merged + "/greeting"); err != nil {
		t.Fatalf("Remove touched the live mount: %v", err)
	}

	o.Unmount(t)
	var st unix.Stat_t
	if err := unix.Stat(o.Work+"/work", &st); err != nil || st.Mode&0o777 != 0 {
		t.Logf("work/work mode %#o, %v (expected the kernel's 000)", st.Mode&0o777, err)
	}
	if err := Remove(state); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there: %v", state, err)
	}
	if err := Remove(state); err != nil {
		t.Errorf("Remove of a missing dir = %v, want nil", err)
	}
	if _, err := os.Stat(lower + "/etc/conf"); err != nil {
		t.Errorf("lower damaged: %v", err)
	}
}
