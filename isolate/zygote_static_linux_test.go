//go:build linux && cgo

package isolate

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wantSharedInits says whether this process's inits should share their zygote's memory.
func wantSharedInits() bool {
	z := os.Getenv("ISORUN_ZYGOTE")
	return staticInitsShareMemory() && (z == "" || z == "static")
}

// inode is the device and inode of a path, to tell files apart.
func inode(t *testing.T, path string) [2]uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	return [2]uint64{st.Dev, st.Ino}
}

// This process's zygotes are the static program, unless ISORUN_ZYGOTE=self says otherwise: this
// binary was built with cgo, so a compiler and a libc are here.
func TestStaticZygoteRuns(t *testing.T) {
	needRoot(t)
	c := start(t, testConfig(modeZygote))
	out, err := c.Command("echo", "from", "the", "container").Output()
	require.NoError(t, err)
	assert.Equal(t, "from the container\n", string(out))

	zmu.Lock()
	z := zygotes[zygoteConfined]
	zmu.Unlock()
	require.NotNil(t, z)
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", z.pid))
	require.NoError(t, err)
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", z.pid))
	require.NoError(t, err)
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", z.pid))
	require.NoError(t, err)
	assert.Equal(t, "isorun-zygote\n", string(comm), "named itself, not after its descriptor")
	if os.Getenv("ISORUN_ZYGOTE") == "self" {
		self, err := os.Executable()
		require.NoError(t, err)
		assert.Equal(t, self, exe)
		return
	}
	f, err := staticZygoteFile()
	require.NoError(t, err, "the static zygote builds here")
	assert.Equal(t, f.Name(), exe)
	assert.True(t, strings.HasPrefix(filepath.Base(exe), "isorun-zygote-"), exe)
	assert.NotContains(t, string(maps), "libc.so", "a static program")
	assert.NotContains(t, string(maps), "ld-linux", "a static program")
	// And the init, which runs in the zygote's memory (on x86-64; elsewhere it is a fork).
	initExe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", c.Pid()))
	require.NoError(t, err)
	assert.Equal(t, exe, initExe)
	if wantSharedInits() {
		assert.True(t, sharesZygoteMemory(t, c.Pid()), "the init shares the zygote's memory")
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", z.pid))
		require.NoError(t, err)
		assert.Equal(t, "isorun-init\x00", string(cmdline), "the zygote's command line, every init's too")
	}
}

// ISORUN_ZYGOTE=static-fork: the same program forks its inits instead.
func TestStaticZygoteFork(t *testing.T) {
	needRoot(t)
	Shutdown()
	t.Cleanup(Shutdown)
	t.Setenv("ISORUN_ZYGOTE", "static-fork")
	c := start(t, testConfig(modeZygote))
	assert.Equal(t, [2]string{"isorun-init", "isorun-init"}, names(t, c.Pid()))
	assert.False(t, sharesZygoteMemory(t, c.Pid()))
	zmu.Lock()
	z := zygotes[zygoteConfined]
	zmu.Unlock()
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", z.pid))
	require.NoError(t, err)
	assert.Equal(t, "isorun-zygote\x00", string(cmdline))
}

// An init that shares the zygote's memory allocates from an arena it empties before each
// request, and keeps its jobs table apart: many containers at once, each with more background
// jobs than the table's first size and many requests, large ones among them, all come out right.
func TestInitMemory(t *testing.T) {
	needRoot(t)
	big := strings.Repeat("x", 100_000)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := start(t, testConfig(modeZygote))
			var bg []*Cmd
			for j := 0; j < 40; j++ {
				cmd := c.Command("sleep", "60")
				if !assert.NoError(t, cmd.Start()) {
					return
				}
				bg = append(bg, cmd)
			}
			for j := 0; j < 60; j++ {
				cmd := c.Command("sh", "-c", `echo "${#BIG} $1"`, "sh", strconv.Itoa(j))
				cmd.Env = []string{"BIG=" + big}
				out, err := cmd.Output()
				if !assert.NoError(t, err) || !assert.Equal(t, fmt.Sprintf("100000 %d\n", j), string(out)) {
					return
				}
			}
			out, err := c.Command("sh", "-c", "ps -o comm | grep -c sleep").Output()
			assert.NoError(t, err)
			assert.Equal(t, "40\n", string(out))
			for _, cmd := range bg {
				assert.NoError(t, cmd.Signal(syscall.SIGKILL))
			}
			for _, cmd := range bg {
				err := cmd.Wait()
				var ee *ExitError
				if assert.ErrorAs(t, err, &ee) {
					assert.Equal(t, 128+9, ee.ExitCode())
				}
			}
		}()
	}
	wg.Wait()
}

// ISORUN_ZYGOTE=self forks the inits from this binary; anything but self or static is an error
// that names it.
func TestSelfZygote(t *testing.T) {
	needRoot(t)
	Shutdown()
	t.Cleanup(Shutdown) // the next test gets a zygote of the default kind
	t.Setenv("ISORUN_ZYGOTE", "self")
	c := start(t, testConfig(modeZygote))
	out, err := c.Command("cat", "/etc/hostname-not-there").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "hostname-not-there")
	zmu.Lock()
	z := zygotes[zygoteConfined]
	zmu.Unlock()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", z.pid))
	require.NoError(t, err)
	self, err := os.Executable()
	require.NoError(t, err)
	assert.Equal(t, self, exe)

	Shutdown()
	t.Setenv("ISORUN_ZYGOTE", "fast")
	_, err = Start(t.Context(), testConfig(modeZygote))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `ISORUN_ZYGOTE="fast"`)
}

// A build happens once per directory, however many processes (here goroutines) ask at once,
// and the program is opened above the descriptors a zygote is handed.
func TestBuildStaticZygote(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "zygote")
	cc := compiler()
	var wg sync.WaitGroup
	files := make([]*os.File, 4)
	errs := make([]error, 4)
	for i := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			files[i], errs[i] = buildStaticZygote(dir, cc)
		}()
	}
	wg.Wait()
	for i, f := range files {
		require.NoError(t, errs[i])
		defer f.Close()
		assert.GreaterOrEqual(t, int(f.Fd()), 10)
		assert.Equal(t, inode(t, files[0].Name()), inode(t, f.Name()))
	}
	fi, err := os.Stat(files[0].Name())
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	names, err := filepath.Glob(filepath.Join(dir, "*"))
	require.NoError(t, err)
	assert.Equal(t, []string{filepath.Join(dir, ".lock"), files[0].Name()}, names, "no temporary file or failure left")

	// Another compiler command is another program.
	other := zygoteName(append(cc, "-g0"))
	assert.NotEqual(t, filepath.Base(files[0].Name()), other)
}

// A directory or program that someone else could have written is refused, by name.
func TestStaticZygoteTrust(t *testing.T) {
	needRoot(t) // to chown
	cc := compiler()
	dir := filepath.Join(t.TempDir(), "zygote")
	f, err := buildStaticZygote(dir, cc)
	require.NoError(t, err)
	f.Close()
	exe := filepath.Join(dir, zygoteName(cc))

	require.NoError(t, os.Chmod(exe, 0o777))
	_, err = buildStaticZygote(dir, cc)
	require.Error(t, err)
	assert.Contains(t, err.Error(), exe+" is writable by others")

	require.NoError(t, os.Chmod(exe, 0o700))
	require.NoError(t, os.Chown(exe, 65534, 65534))
	_, err = buildStaticZygote(dir, cc)
	require.Error(t, err)
	assert.Contains(t, err.Error(), exe+" belongs to uid 65534")

	require.NoError(t, os.Chown(exe, 0, 0))
	require.NoError(t, os.Chmod(dir, 0o775))
	_, err = buildStaticZygote(dir, cc)
	require.Error(t, err)
	assert.Contains(t, err.Error(), dir+" is writable by others")

	require.NoError(t, os.Chmod(dir, 0o700))
	require.NoError(t, os.Remove(exe))
	require.NoError(t, os.Symlink("/bin/true", exe))
	_, err = buildStaticZygote(dir, cc)
	require.Error(t, err)
	assert.Contains(t, err.Error(), exe)
}

// A compiler that fails gives an error naming it, and the failure is remembered: the next
// process does not try again for a while.
func TestStaticZygoteBuildFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "zygote")
	_, err := buildStaticZygote(dir, []string{"false"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "build with false: exit status 1")
	_, err = os.Stat(filepath.Join(dir, zygoteName([]string{"false"})+".failed"))
	require.NoError(t, err)

	_, err = buildStaticZygote(dir, []string{"no-such-cc"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "build with no-such-cc")
	assert.Contains(t, err.Error(), "not found")

	// Remembered: the compiler is not run again (this one would leave a file behind if it were).
	marker := filepath.Join(t.TempDir(), "ran")
	script := filepath.Join(t.TempDir(), "cc")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\ntouch "+marker+"\nexit 1\n"), 0o755))
	_, err = buildStaticZygote(dir, []string{script})
	require.Error(t, err)
	_, err = buildStaticZygote(dir, []string{script})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "build with "+script)
	require.NoError(t, os.Remove(marker), "ran once")
	_, err = buildStaticZygote(dir, []string{script})
	require.Error(t, err)
	assert.NoFileExists(t, marker, "not run again")

	// The compiler's first line of complaint is in the error.
	_, err = buildStaticZygote(dir, append(compiler(), "-include", "/no-such-isorun-header.h"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "/no-such-isorun-header.h: No such file")
}

// rssAnon is a process's anonymous resident memory, in KiB.
func rssAnon(t *testing.T, pid int) int {
	t.Helper()
	v, err := strconv.Atoi(strings.TrimSuffix(procStatus(t, pid, "RssAnon"), " kB"))
	require.NoError(t, err)
	return v
}

// An init that shares the zygote's memory leaves nothing in it when it dies but its slot, which
// the next init reuses: the zygote does not grow with the containers it has made, only with how
// many ran at once.
func TestSharedInitsLeaveNoMemory(t *testing.T) {
	needRoot(t)
	if !wantSharedInits() {
		t.Skip("the inits do not share the zygote's memory here") // forked inits leave nothing by construction
	}
	round := func() {
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					if !assert.NoError(t, lifecycle(modeZygote, true)) {
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	round()
	zmu.Lock()
	z := zygotes[zygoteConfined]
	zmu.Unlock()
	require.NotNil(t, z)
	before := rssAnon(t, z.pid)
	round()
	round()
	after := rssAnon(t, z.pid)
	assert.LessOrEqual(t, after-before, 128, "the zygote's anonymous memory grew from %d to %d KiB over 400 containers", before, after)
}
