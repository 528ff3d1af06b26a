package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/isorun/isorun/fixtures"
)

// installerSource is a small installer, the kind of program isorun is for: it writes a config
// file, copies itself into the PATH and adds a system user, and must do nothing else.
const installerSource = `package main

import (
	"fmt"
	"io"
	"os"
)

const config = "[server]\nport = 8080\nlog = \"/var/log/myapp.log\"\n"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		fmt.Println("myapp 1.0.0")
		return
	}
	check(os.MkdirAll("/etc/myapp", 0o755))
	check(os.WriteFile("/etc/myapp/config.toml", []byte(config), 0o644))
	check(os.MkdirAll("/usr/local/bin", 0o755))
	self, err := os.Open("/proc/self/exe")
	check(err)
	dst, err := os.OpenFile("/usr/local/bin/myapp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	check(err)
	_, err = io.Copy(dst, self)
	check(err)
	check(dst.Close())
	pw, err := os.OpenFile("/etc/passwd", os.O_WRONLY|os.O_APPEND, 0)
	check(err)
	_, err = pw.WriteString("myapp:x:999:999:myapp daemon:/var/lib/myapp:/bin/false\n")
	check(err)
	check(pw.Close())
	fmt.Println("installed myapp 1.0.0")
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "install:", err)
		os.Exit(1)
	}
}
`

// installer is the built installer, shared by the tests of this binary.
var installer struct {
	sync.Mutex
	dir string
}

// buildInstaller compiles installerSource as a static binary (CGO_ENABLED=0: busybox has no
// libc) once per test binary and returns the directory holding it, as "installer".
func buildInstaller(t *testing.T) string {
	t.Helper()
	installer.Lock()
	defer installer.Unlock()
	if installer.dir != "" {
		return installer.dir
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build the installer with: %v", err)
	}
	// Under the test binary's root (TestMain removes it), not t.TempDir: later tests reuse it.
	src, err := os.MkdirTemp(testRoot, "installer-src-")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(src, "main.go"), []byte(installerSource), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "go.mod"), []byte("module installer\n\ngo 1.21\n"), 0o644))
	out, err := os.MkdirTemp(testRoot, "installer-bin-")
	require.NoError(t, err)
	cmd := exec.Command(goTool, "build", "-o", filepath.Join(out, "installer"), ".")
	cmd.Dir = src
	// GOTOOLCHAIN=local: the go.mod's old version must not make the go command fetch one.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOTOOLCHAIN=local")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build the installer:\n%s", b)
	installer.dir = out
	return out
}

func TestInstaller(t *testing.T) {
	needContainers(t)
	bin := buildInstaller(t)
	// The installer comes in by a read-only volume: neither the volume nor its mount point
	// are part of the diff, so the diff is exactly what the installer did.
	sb := Container(t, fixtures.Busybox(), WithVolume(bin, "/opt/installer", true))

	r := sb.Run("/opt/installer/installer")
	require.Equal(t, 0, r.ExitCode, "installer failed: %s", r.Stderr)
	assert.Equal(t, "installed myapp 1.0.0\n", r.Stdout)

	diff := sb.Diff()
	AssertDiff(t, diff, `
		A /etc/myapp
		A /etc/myapp/config.toml
		C /etc/passwd
		A /usr/local
		A /usr/local/bin
		A /usr/local/bin/myapp
	`)
	AssertDiffGolden(t, diff, "installer")
	sb.AssertFile("/etc/myapp/config.toml", "[server]\nport = 8080\nlog = \"/var/log/myapp.log\"\n")
	sb.AssertFileContains("/etc/passwd", "\nmyapp:x:999:999:myapp daemon:/var/lib/myapp:/bin/false\n")
	sb.AssertNoFile("/var/lib/myapp")

	// The installed copy runs, and running it changes nothing.
	assert.Equal(t, "myapp 1.0.0\n", sb.MustRun("myapp", "--version"))
	AssertDiff(t, sb.Diff(), diff.String())

	// The host is untouched.
	_, err := os.Stat("/etc/myapp/config.toml")
	assert.ErrorIs(t, err, os.ErrNotExist)
	hostPasswd, err := os.ReadFile("/etc/passwd")
	require.NoError(t, err)
	assert.NotContains(t, string(hostPasswd), "myapp daemon")

	// The installed system as an image: the user the installer added is a user there.
	if Rootless() {
		// Rootless, only root is mapped: the image knows the user, the container refuses it.
		assertRootlessRefusesUser(t, sb.Commit(), "myapp")
		return
	}
	sb2 := Container(t, sb.Commit(), WithUser("myapp"))
	assert.Equal(t, "999 999\n", sb2.MustRun("sh", "-c", `echo "$(id -u) $(id -g)"`))
	AssertDiff(t, sb2.Diff())
}

// TestInstallerBug shows what a test reports when an installer does more than it should: the
// same assertions, run against a fake T, on a container where the installer also leaves a
// temporary file and writes the wrong config.
func TestInstallerBug(t *testing.T) {
	needContainers(t)
	bin := buildInstaller(t)
	var id string
	f := runFake(func(ft *fakeT) {
		sb := Container(ft, fixtures.Busybox(), WithVolume(bin, "/opt/installer", true))
		id = sb.ID()
		sb.MustRun("sh", "-c", "/opt/installer/installer && echo 'port = 9090' >> /etc/myapp/config.toml && touch /tmp/install.lock")
		AssertDiff(ft, sb.Diff(), "A /etc/myapp", "A /etc/myapp/config.toml", "C /etc/passwd", "A /usr/local", "A /usr/local/bin", "A /usr/local/bin/myapp")
		sb.AssertFile("/etc/myapp/config.toml", "[server]\nport = 8080\nlog = \"/var/log/myapp.log\"\n")
	})
	require.Len(t, f.errors, 2, f.report())
	assert.Contains(t, f.errors[0], "harness: AssertDiff: the diff is not the one wanted (1 unexpected)\n"+
		"unexpected (in the diff, not wanted):\n\tA /tmp/install.lock\n")
	assert.Equal(t, "harness: AssertFile: container "+id+": /etc/myapp/config.toml differs (- want, + got):\n"+
		"\t  [server]\n"+
		"\t  port = 8080\n"+
		"\t  log = \"/var/log/myapp.log\"\n"+
		"\t+ port = 9090", f.errors[1])
	// A failed test gets the container's command log.
	assert.Contains(t, strings.Join(f.logs, "\n"), "/opt/installer/installer && echo")
}
