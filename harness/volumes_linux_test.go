package harness

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/isorun/isorun/fixtures"
)

// Volumes and tmpfs mounts, beyond TestWithVolume and TestWithTmpfs (options_test.go): what
// they must never do to the host's data, to Diff and to Commit.

// TestVolumesNotInDiffOrCommit: several volumes (directories, a file, nested targets, a target
// whose parents the setup had to make) and a tmpfs are written through; neither their content
// nor their mount points are changes, nor part of a commit, whether the commit is made while the
// container runs or after Close. What the commands wrote elsewhere, even beside a mount point in
// a directory the setup made, is both.
func TestVolumesNotInDiffOrCommit(t *testing.T) {
	needContainers(t)
	t.Parallel()
	data, cache, www := t.TempDir(), t.TempDir(), t.TempDir()
	conf := filepath.Join(t.TempDir(), "app.conf")
	require.NoError(t, os.WriteFile(conf, []byte("port=1\n"), 0o644))

	sb := Container(t, fixtures.Busybox(),
		WithVolume(data, "/data", false),
		WithVolume(cache, "/data/cache", false),  // nested in another volume
		WithVolume(www, "/srv/www/html", false),  // /srv and /srv/www are made too
		WithVolume(conf, "/etc/app.conf", false), // a file, at a path the image lacks
		WithTmpfs("/run"),
	)
	sb.MustRun("sh", "-c", `set -e
		echo d > /data/d
		mkdir /data/sub && echo deep > /data/sub/f
		echo c > /data/cache/c
		echo '<h1>' > /srv/www/html/index.html
		echo port=2 > /etc/app.conf
		echo 1 > /run/pid
		echo own > /srv/www/own
		echo g > /greeting`)
	AssertDiff(t, sb.Diff(), "A /greeting", "A /srv/www/own")

	// The writes are on the host, each in its own volume.
	for p, want := range map[string]string{
		filepath.Join(data, "d"):         "d\n",
		filepath.Join(data, "sub", "f"):  "deep\n",
		filepath.Join(cache, "c"):        "c\n",
		filepath.Join(www, "index.html"): "<h1>\n",
		conf:                             "port=2\n",
	} {
		b, err := os.ReadFile(p)
		if assert.NoError(t, err) {
			assert.Equal(t, want, string(b), p)
		}
	}
	_, err := os.Stat(filepath.Join(data, "cache", "c"))
	assert.ErrorIs(t, err, os.ErrNotExist, "the nested volume's writes went to its own host directory")

	check := func(t *testing.T, img fixtures.Image) {
		t.Helper()
		c := Container(t, img)
		c.AssertFile("/greeting", "g\n")
		c.AssertFile("/srv/www/own", "own\n")
		for _, p := range []string{"/data", "/run", "/etc/app.conf", "/srv/www/html"} {
			c.AssertNoFile(p)
		}
		AssertDiff(t, c.Diff())
		// The mount points come back, empty, when the volumes are given again.
		v := Container(t, img, WithVolume(t.TempDir(), "/data", true), WithTmpfs("/run"))
		assert.Equal(t, "[] [] [own]\n", v.MustRun("sh", "-c", `echo "[$(ls -A /data)] [$(ls -A /run)] [$(ls -A /srv/www)]"`))
		AssertDiff(t, v.Diff())
	}
	t.Run("commit while running", func(t *testing.T) { check(t, sb.Commit()) })
	sb.Close()
	t.Run("commit after Close", func(t *testing.T) { check(t, sb.Commit()) })

	// WriteLayer, the export of the same changes, leaves them out too.
	names := layerNames(t, sb)
	assert.Equal(t, []string{"greeting", "srv/", "srv/www/", "srv/www/own"}, names)
}

// layerNames lists the entries of the container's WriteLayer.
func layerNames(t *testing.T, sb *Sandbox) []string {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, sb.WriteLayer(&buf))
	var names []string
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		require.NoError(t, err)
		names = append(names, h.Name)
	}
}

// TestVolumeLayouts: the shapes volumes come in, each seen from both sides.
func TestVolumeLayouts(t *testing.T) {
	needContainers(t)
	t.Parallel()

	t.Run("nested read-only in read-write", func(t *testing.T) {
		outer, inner := t.TempDir(), t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(inner, "ro.txt"), []byte("ro\n"), 0o644))
		sb := Container(t, fixtures.Busybox(), WithVolume(inner, "/work/in", true), WithVolume(outer, "/work", false))
		sb.AssertFile("/work/in/ro.txt", "ro\n")
		sb.MustRun("sh", "-c", "echo w > /work/w")
		r := sb.Run("sh", "-c", "echo x > /work/in/x")
		assert.Contains(t, r.Stderr, "Read-only file system")
		assertHostFile(t, filepath.Join(outer, "w"), "w\n")
		// The inner mount point was made inside the outer volume: on the host, an empty directory.
		ents, err := os.ReadDir(filepath.Join(outer, "in"))
		require.NoError(t, err)
		assert.Empty(t, ents)
		AssertDiff(t, sb.Diff())
	})
	t.Run("one host directory at two targets", func(t *testing.T) {
		dir := t.TempDir()
		sb := Container(t, fixtures.Busybox(), WithVolume(dir, "/a", false), WithVolume(dir, "/b", true))
		sb.MustRun("sh", "-c", "echo shared > /a/f")
		sb.AssertFile("/b/f", "shared\n")
		assert.NotEqual(t, 0, sb.Run("rm", "/b/f").ExitCode)
		assertHostFile(t, filepath.Join(dir, "f"), "shared\n")
	})
	t.Run("read-write file over an image file", func(t *testing.T) {
		hosts := filepath.Join(t.TempDir(), "hosts")
		require.NoError(t, os.WriteFile(hosts, []byte("10.0.0.1 db\n"), 0o644))
		sb := Container(t, fixtures.Busybox(), WithVolume(hosts, "/etc/hosts", false))
		sb.AssertFile("/etc/hosts", "10.0.0.1 db\n")
		sb.MustRun("sh", "-c", "echo '10.0.0.2 cache' >> /etc/hosts")
		assertHostFile(t, hosts, "10.0.0.1 db\n10.0.0.2 cache\n")
		AssertDiff(t, sb.Diff()) // the image's /etc/hosts is hidden, not changed
		c := Container(t, sb.Commit())
		c.AssertFileContains("/etc/hosts", "localhost") // the image's file, as it was
	})
	t.Run("read-only file refuses writes", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "f")
		require.NoError(t, os.WriteFile(f, []byte("keep\n"), 0o644))
		sb := Container(t, fixtures.Busybox(), WithVolume(f, "/f", true))
		assert.Contains(t, sb.Run("sh", "-c", "echo x > /f").Stderr, "Read-only file system")
		assertHostFile(t, f, "keep\n")
	})
	t.Run("spaces, colons, commas and backslashes", func(t *testing.T) {
		// The Go API takes any path as it is; the CLI syntax escapes (ParseVolume).
		dir := filepath.Join(t.TempDir(), `a b:c,d\e`)
		spec, err := ParseVolume(VolumeSpec{Host: dir, Container: `/in x:y,z\w`}.String())
		require.NoError(t, err)
		require.Equal(t, dir, spec.Host)
		sb := Container(t, fixtures.Busybox(), spec.Option())
		sb.MustRun("sh", "-c", `echo ok > '/in x:y,z\w/f'`)
		assertHostFile(t, filepath.Join(dir, "f"), "ok\n")
		AssertDiff(t, sb.Diff())
	})
	t.Run("host directory made when missing", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "a", "b")
		sb := Container(t, fixtures.Busybox(), WithVolume(missing, "/out", false))
		sb.MustRun("sh", "-c", "echo made > /out/f")
		assertHostFile(t, filepath.Join(missing, "f"), "made\n")
	})
}

func assertHostFile(t *testing.T, p, want string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if assert.NoError(t, err) {
		assert.Equal(t, want, string(b), p)
	}
}

// TestVolumeMountsStayInTheContainer: a volume is mounted in the container's own mount namespace
// only. The host never sees the mount, so nothing the harness or the test removes on the host
// can reach through it into the volume's data, and when the container's processes die the mount
// dies with them.
func TestVolumeMountsStayInTheContainer(t *testing.T) {
	needContainers(t)
	t.Parallel()
	dir := t.TempDir()
	sb := Container(t, fixtures.Busybox(), WithVolume(dir, "/data", false), WithTmpfs("/run"))
	pid := sb.Container().Pid()
	inside, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^\S+ \S+ \S+ \S+ /data `, string(inside), "the volume in the container's table")
	assert.Regexp(t, `(?m)^\S+ \S+ \S+ \S+ /run .* - tmpfs `, string(inside))
	host, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	assert.NotContains(t, string(host), dir, "the volume is not mounted on the host")
}

// volumeHelperEnv names the host directory TestVolumeHelperChild mounts; helperEnv (main_test.go)
// says how it ends.
const volumeHelperEnv = "ISORUN_VOLUME_HELPER_DIR"

// TestVolumeDataSurvivesFailedTests runs TestVolumeHelperChild in a child test binary that has
// a read-write volume on a host directory with data in it, writes through it, and then fails
// mid-way: t.Error, t.Fatal, a panic, a container killed by WithTimeout, and the whole test
// process killed by SIGKILL (no cleanup runs at all). The host data, old and new, is intact
// afterwards every time, and the container is gone.
func TestVolumeDataSurvivesFailedTests(t *testing.T) {
	needContainers(t)
	t.Parallel()
	exe, err := os.Executable()
	require.NoError(t, err)
	for _, mode := range []string{"volume-error", "volume-fatal", "volume-panic", "volume-timeout", "volume-sigkill"} {
		t.Run(strings.TrimPrefix(mode, "volume-"), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			seed := map[string]string{"seed.txt": "seed\n", "sub/deep/f": "deep\n"}
			for p, c := range seed {
				require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
				require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644))
			}
			cmd := exec.Command(exe, "-test.run=^TestVolumeHelperChild$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnv+"="+mode, volumeHelperEnv+"="+dir)
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = cmd.Stdout
			require.NoError(t, cmd.Start())
			var out strings.Builder
			initPid := 0
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				out.WriteString(line + "\n")
				if m := regexp.MustCompile(`^VOLUME-READY (\d+)$`).FindStringSubmatch(line); m != nil {
					initPid, _ = strconv.Atoi(m[1])
					if mode == "volume-sigkill" {
						cmd.Process.Signal(syscall.SIGKILL)
					}
				}
			}
			err = cmd.Wait()
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "the child test must fail; err %v, output:\n%s", err, out.String())
			require.NotZero(t, initPid, "the child never got its container ready:\n%s", out.String())

			for p, c := range seed {
				assertHostFile(t, filepath.Join(dir, p), c)
			}
			assertHostFile(t, filepath.Join(dir, "written"), "by the container\n")
			assertHostFile(t, filepath.Join(dir, "sub", "deep", "more"), "more\n")
			assert.Eventually(t, func() bool {
				_, err := os.Stat(fmt.Sprintf("/proc/%d", initPid))
				return errors.Is(err, os.ErrNotExist)
			}, 10*time.Second, 20*time.Millisecond, "the container's init %d outlived the child test:\n%s", initPid, out.String())
		})
	}
}

// TestVolumeHelperChild is the child of TestVolumeDataSurvivesFailedTests; it only runs there.
func TestVolumeHelperChild(t *testing.T) {
	mode, dir := os.Getenv(helperEnv), os.Getenv(volumeHelperEnv)
	if !strings.HasPrefix(mode, "volume-") || dir == "" {
		t.Skip("a helper: TestVolumeDataSurvivesFailedTests runs it in a child process")
	}
	var opts []Option
	if mode == "volume-timeout" {
		opts = append(opts, WithTimeout(3*time.Second))
	}
	sb := Container(t, fixtures.Busybox(), append(opts, WithVolume(dir, "/data", false))...)
	sb.MustRun("sh", "-c", "echo 'by the container' > /data/written && echo more > /data/sub/deep/more")
	// Something running in the volume, with files open in it, when the test ends.
	bg := sb.Command("sh", "-c", "cd /data/sub && exec 3</data/seed.txt && sleep 1000")
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("VOLUME-READY %d\n", sb.Container().Pid())
	switch mode {
	case "volume-error":
		t.Error("helper: deliberate t.Error")
	case "volume-fatal":
		t.Fatal("helper: deliberate t.Fatal")
	case "volume-panic":
		panic("helper: deliberate panic")
	case "volume-timeout", "volume-sigkill":
		bg.Wait() // until WithTimeout kills the container, or the parent kills this process
	}
}
