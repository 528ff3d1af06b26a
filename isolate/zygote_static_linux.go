//go:build linux && cgo

package isolate

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The static zygote: init_linux.c compiled on its own, as a static program, and exec'd as the
// zygote instead of this binary.
//
// Every container's init is a fork of its zygote, and a fork copies the zygote's address space:
// this binary is dynamically linked (25 mappings: the binary, libc, the loader, their data), a
// static program has 11. Copying those mappings at the fork and tearing them down at the init's
// exit was the largest cost isorun had beyond the floor (bench/README.md): a static zygote makes a
// container's whole lifecycle about 9% cheaper.
//
// The program is built once per machine with the C compiler ($CC, else cc or gcc) into the cache
// directory (zygote/ under $ISORUN_CACHE, else isorun in the user cache directory), named by a hash
// of its source and the compiler's command, under a lock so that parallel test processes build it
// once. Where it cannot be built (no compiler, no static libc) isolate forks its inits from this
// binary, as before; the failure is remembered for an hour so that each test process does not
// pay for it. ISORUN_ZYGOTE=self asks for this binary, =static for the static program or an error
// saying why there is none.
//
// The program runs as this process's user, so it is trusted only as far as the files this user
// alone can write: the directory and the program must be ours and writable by nobody else. It is
// opened once per process and exec'd through its descriptor, so it cannot change between that
// check and the exec, and a test that removes the cache directory does not take it away.

//go:embed init_linux.c
var initSource []byte

// zygoteCFlags build the static zygote; the source comes on stdin.
var zygoteCFlags = []string{"-O2", "-static", "-DISORUN_STANDALONE", "-x", "c", "-"}

// staticZygoteFile is the static zygote, open for exec, built or found once per process.
var staticZygoteFile = sync.OnceValues(func() (*os.File, error) {
	dir, err := cacheDir()
	if err != nil {
		return nil, err
	}
	return buildStaticZygote(filepath.Join(dir, "zygote"), compiler())
})

// zygoteExe is the program a new zygote execs: the static zygote's descriptor, or this binary.
//
// The static zygote's inits share its memory, and so its command line (init_linux.c, "inits that
// share the zygote's memory"): it is exec'd as isorun-init, which is what ps shows for pid 1 in
// a container. ISORUN_ZYGOTE=static-fork has it fork its inits instead, as this binary does
// (to compare the two).
func zygoteExe() (zygoteProgram, error) {
	want := os.Getenv("ISORUN_ZYGOTE")
	switch want {
	case "self":
		return selfZygote, nil
	case "", "static", "static-fork":
	default:
		return zygoteProgram{}, fmt.Errorf("isolate: ISORUN_ZYGOTE=%q: want static, static-fork, self or nothing", want)
	}
	f, err := staticZygoteFile()
	if err != nil {
		if want != "" {
			return zygoteProgram{}, err
		}
		return selfZygote, nil
	}
	z := zygoteProgram{path: "/proc/self/fd/" + strconv.Itoa(int(f.Fd())), name: f.Name(), argv0: "isorun-zygote"}
	switch {
	case want == "static-fork":
		z.env = []string{"_ISORUN_FORK_INITS=1"}
	case staticInitsShareMemory():
		z.argv0 = "isorun-init"
	}
	return z, nil
}

// staticInitsShareMemory says whether the static zygote clones its inits into its own memory
// (init_linux.c: on x86-64, as root), as opposed to forking them.
func staticInitsShareMemory() bool { return runtime.GOARCH == "amd64" && os.Geteuid() == 0 }

// cacheDir is fixtures.CacheDir, which this package cannot import: $ISORUN_CACHE, else isorun in
// the user cache directory.
func cacheDir() (string, error) {
	if d := os.Getenv("ISORUN_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("isolate: static zygote: %w (set ISORUN_CACHE)", err)
	}
	return filepath.Join(d, "isorun"), nil
}

// compiler is the C compiler's command: $CC (which may carry flags, as for cgo), else cc, else gcc.
func compiler() []string {
	if cc := strings.Fields(os.Getenv("CC")); len(cc) > 0 {
		return cc
	}
	for _, cc := range []string{"cc", "gcc"} {
		if _, err := exec.LookPath(cc); err == nil {
			return []string{cc}
		}
	}
	return []string{"cc"}
}

// zygoteName names the static zygote built from this source by the compiler command cc.
func zygoteName(cc []string) string {
	h := sha256.New()
	for _, s := range append(append(append([]string{"isorun-zygote 1"}, cc...), zygoteCFlags...), string(initSource)) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "isorun-zygote-" + hex.EncodeToString(h.Sum(nil))[:20]
}

// failureTTL is how long a failed build is remembered.
const failureTTL = time.Hour

// buildStaticZygote returns the static zygote in dir, built with cc if it is not there yet, open
// read-only on a descriptor above the standard ones and the zygote's control socket (>= 10).
func buildStaticZygote(dir string, cc []string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("isolate: static zygote: %w", err)
	}
	d, err := openOwnDir(dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(d)
	name := zygoteName(cc)
	if f, err := openZygote(d, dir, name); !errors.Is(err, fs.ErrNotExist) {
		return f, err
	}
	lock, err := unix.Openat(d, ".lock", unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("isolate: static zygote: lock %s: %w", dir, err)
	}
	defer unix.Close(lock) // and so unlocked
	if err := flock(lock); err != nil {
		return nil, fmt.Errorf("isolate: static zygote: lock %s: %w", dir, err)
	}
	// Whoever held the lock before us may have built it.
	if f, err := openZygote(d, dir, name); !errors.Is(err, fs.ErrNotExist) {
		return f, err
	}
	failed := filepath.Join(dir, name+".failed")
	if fi, err := os.Lstat(failed); err == nil && time.Since(fi.ModTime()) < failureTTL {
		if b, err := os.ReadFile(failed); err == nil {
			return nil, errors.New(string(b))
		}
	}
	if err := compileZygote(filepath.Join(dir, name), cc); err != nil {
		os.WriteFile(failed, []byte(err.Error()), 0o600)
		return nil, err
	}
	os.Remove(failed)
	return openZygote(d, dir, name)
}

// compileZygote compiles the static zygote into path.
func compileZygote(path string, cc []string) error {
	tmp := path + ".tmp" // the lock is ours
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cc[0], append(append(cc[1:len(cc):len(cc)], "-o", tmp), zygoteCFlags...)...)
	cmd.Stdin = bytes.NewReader(initSource)
	out, err := cmd.CombinedOutput()
	if err == nil {
		err = os.Chmod(tmp, 0o700)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		msg := strings.TrimSpace(string(out))
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i] + " ..."
		}
		if msg != "" {
			msg = ": " + msg
		}
		return fmt.Errorf("isolate: static zygote: build with %s: %w%s", strings.Join(cc, " "), err, msg)
	}
	return nil
}

// openOwnDir opens dir if this user owns it and nobody else may write in it.
func openOwnDir(dir string) (int, error) {
	d, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("isolate: static zygote: open %s: %w", dir, err)
	}
	if err := ownedByUs(d, dir); err != nil {
		unix.Close(d)
		return -1, err
	}
	return d, nil
}

// openZygote opens the static zygote name in the directory d (at dir) if it is a program of ours
// that nobody else may write; fs.ErrNotExist if there is none.
func openZygote(d int, dir, name string) (*os.File, error) {
	path := filepath.Join(dir, name)
	fd, err := unix.Openat(d, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		if err == unix.ENOENT {
			return nil, fs.ErrNotExist
		}
		return nil, fmt.Errorf("isolate: static zygote: open %s: %w", path, err)
	}
	if err := ownedByUs(fd, path); err != nil {
		unix.Close(fd)
		return nil, err
	}
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 10)
	unix.Close(fd)
	if err != nil {
		return nil, fmt.Errorf("isolate: static zygote: %s: %w", path, err)
	}
	return os.NewFile(uintptr(high), path), nil
}

// ownedByUs checks that this user owns the file fd (at path), that it is a directory or a
// program, and that nobody else may write it.
func ownedByUs(fd int, path string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("isolate: static zygote: stat %s: %w", path, err)
	}
	typ := st.Mode & unix.S_IFMT
	switch {
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("isolate: static zygote: %s belongs to uid %d, not to us (%d)", path, st.Uid, os.Geteuid())
	case st.Mode&0o022 != 0:
		return fmt.Errorf("isolate: static zygote: %s is writable by others (mode %o)", path, st.Mode&0o777)
	case typ != unix.S_IFDIR && (typ != unix.S_IFREG || st.Mode&0o100 == 0):
		return fmt.Errorf("isolate: static zygote: %s is not a program (mode %o)", path, st.Mode)
	}
	return nil
}

func flock(fd int) error {
	for {
		err := unix.Flock(fd, unix.LOCK_EX)
		if err != unix.EINTR {
			return err
		}
	}
}
