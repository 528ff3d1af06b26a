package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/isorun/isorun/fixtures"
)

func TestWithEnv(t *testing.T) {
	needContainers(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox(), WithEnv("GREETING=hello world", "HOME=/srv", "GREETING=hi"))
	assert.Equal(t, "hi|/srv|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
		sb.MustRun("sh", "-c", `echo "$GREETING|$HOME|$PATH"`), "later pairs win; the image's PATH stays")
	cmd := sb.Command("sh", "-c", `echo "$GREETING"`)
	cmd.Env = append(cmd.Env, "GREETING=per command")
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, "per command\n", string(out))
}

func TestWithHostname(t *testing.T) {
	needContainers(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox(), WithHostname("web1"))
	assert.Equal(t, "web1\n", sb.MustRun("hostname"))
	sb = Container(t, fixtures.Busybox())
	assert.Equal(t, sb.ID()+"\n", sb.MustRun("hostname"), "the default hostname is the ID")
}

func TestWithWorkdir(t *testing.T) {
	needContainers(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox(), WithWorkdir("/etc"))
	assert.Equal(t, "/etc\n", sb.MustRun("pwd"))
	cmd := sb.Command("pwd")
	cmd.Dir = "/tmp"
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, "/tmp\n", string(out), "Cmd.Dir overrides")
	assert.Equal(t, "/\n", Container(t, fixtures.Busybox()).MustRun("pwd"), "default")
}

// HOME comes from the /etc/passwd the container has at Start: the image's (remembered per image
// and user), or a volume's over it, which is read every time.
func TestHomeFromPasswd(t *testing.T) {
	needContainers(t)
	for i := 0; i < 2; i++ {
		sb := Container(t, fixtures.Busybox())
		assert.Equal(t, "/root\n", sb.MustRun("sh", "-c", `echo "$HOME"`))
	}
	for _, home := range []string{"/srv/a", "/srv/b"} {
		etc := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(etc, "passwd"), []byte("root:x:0:0:root:"+home+":/bin/sh\n"), 0o644))
		sb := Container(t, fixtures.Busybox(), WithVolume(etc, "/etc", true))
		assert.Equal(t, home+"\n", sb.MustRun("sh", "-c", `echo "$HOME"`))
	}
	img := fixtures.With(fixtures.Busybox(), fixtures.File("/etc/passwd", "root:x:0:0:root:/srv/c:/bin/sh\n"))
	sb := Container(t, img)
	assert.Equal(t, "/srv/c\n", sb.MustRun("sh", "-c", `echo "$HOME"`), "another image, another passwd")
}

func TestWithUser(t *testing.T) {
	needContainers(t)
	t.Parallel()
	tests := []struct {
		user string
		want string // id -u, id -g, id -G, $HOME
	}{
		{"", "0 0 0 /root"},
		{"user", "1000 1000 1000 /home/user"},
		{"1000", "1000 1000 1000 /home/user"},
		{"1000:1000", "1000 1000 1000 /home/user"},
		{"user:root", "1000 0 0 /home/user"},
		{"0:1000", "0 1000 1000 /root"},
		{"4242", "4242 4242 4242 /"},
		{"4242:7", "4242 7 7 /"},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			t.Parallel()
			if Rootless() && tt.want[:4] != "0 0 " {
				assertRootlessRefusesUser(t, fixtures.Busybox(), tt.user)
				return
			}
			sb := Container(t, fixtures.Busybox(), WithUser(tt.user))
			assert.Equal(t, tt.want+"\n", sb.MustRun("sh", "-c", `echo "$(id -u) $(id -g) $(id -G) $HOME"`))
		})
	}
	t.Run("a user file is owned by the user", func(t *testing.T) {
		t.Parallel()
		if Rootless() {
			t.Skip("rootless: only root is mapped, so no file can belong to another user (the refusal is asserted above)")
		}
		sb := Container(t, fixtures.Busybox(), WithUser("user"), WithWorkdir("/home/user"))
		sb.MustRun("touch", "mine")
		assert.Equal(t, "user user\n", sb.MustRun("stat", "-c", "%U %G", "/home/user/mine"))
		r := sb.Run("touch", "/etc/nope")
		assert.Equal(t, 1, r.ExitCode)
		assert.Contains(t, r.Stderr, "Permission denied")
	})
	t.Run("unknown names fail the test", func(t *testing.T) {
		t.Parallel()
		for _, u := range []string{"nosuch", "user:nosuchgroup"} {
			f := runFake(func(ft *fakeT) { Container(ft, fixtures.Busybox(), WithUser(u)) })
			require.True(t, f.fatal, u)
			assert.Contains(t, f.errorText(), "harness: container ")
			assert.Contains(t, f.errorText(), `user "`+u+`": no such entry in the container's /etc/`)
		}
	})
}

// assertRootlessRefusesUser checks that a rootless container refuses a user other than root,
// which only root being mapped in its user namespace cannot give, with an error that says so.
func assertRootlessRefusesUser(t *testing.T, img fixtures.Image, user string) {
	t.Helper()
	f := runFake(func(ft *fakeT) { Container(ft, img, WithUser(user)) })
	require.True(t, f.fatal, "rootless: user %q was not refused", user)
	assert.Contains(t, f.errorText(), "a rootless container maps only root")
}

func TestWithTimeout(t *testing.T) {
	needContainers(t)
	t.Parallel()
	var r Result
	var id string
	start := time.Now()
	f := runFake(func(ft *fakeT) {
		sb := Container(ft, fixtures.Busybox(), WithTimeout(300*time.Millisecond))
		id = sb.ID()
		r = sb.Run("sleep", "30")
	})
	assert.Less(t, time.Since(start), 10*time.Second, "the container was not killed")
	assert.True(t, f.failed, "a timeout fails the test")
	assert.False(t, f.fatal, "a timeout does not stop the test goroutine: it may be cleaning up")
	assert.Equal(t, []string{`harness: container ` + id + ` on "busybox": killed after WithTimeout(300ms)`}, f.errors)
	assert.Equal(t, -1, r.ExitCode)
	assert.Contains(t, r.Stderr, "container is closed")
	assert.Contains(t, strings.Join(f.logs, "\n"), "timeout after 300ms: container killed")

	f = runFake(func(ft *fakeT) {
		Container(ft, fixtures.Busybox(), WithTimeout(time.Minute)).MustRun("true")
	})
	assert.False(t, f.failed, "a test that ends in time passes: %s", f.report())
}

func TestWithPrivileged(t *testing.T) {
	needContainers(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox())
	r := sb.Run("mount", "-t", "tmpfs", "none", "/tmp")
	assert.NotEqual(t, 0, r.ExitCode, "mount without CAP_SYS_ADMIN: %+v", r)
	assert.Contains(t, r.Stderr, "permission denied")

	sb = Container(t, fixtures.Busybox(), WithPrivileged())
	sb.MustRun("mount", "-t", "tmpfs", "none", "/tmp")
	sb.MustRun("touch", "/tmp/on-tmpfs")
	AssertDiff(t, sb.Diff()) // a file on a tmpfs mounted inside is not in the upper layer
}

func TestWithTmpfs(t *testing.T) {
	needContainers(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox(), WithTmpfs("/run", "size=1m", "mode=1777"), WithTmpfs("/var/cache/app"))
	sb.MustRun("sh", "-c", "echo x > /run/pid && echo y > /var/cache/app/z")
	assert.Equal(t, "1777\n", sb.MustRun("stat", "-c", "%a", "/run"))
	assert.Contains(t, sb.MustRun("df", "-k", "/run"), " 1024 ")
	AssertDiff(t, sb.Diff()) // tmpfs contents and mount points are not changes
}

func TestWithVolume(t *testing.T) {
	needContainers(t)
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "in"), []byte("from the host\n"), 0o644))
	conf := filepath.Join(t.TempDir(), "app.conf")
	require.NoError(t, os.WriteFile(conf, []byte("port=1\n"), 0o644))

	t.Run("read-only", func(t *testing.T) {
		sb := Container(t, fixtures.Busybox(), WithVolume(dir, "/data", true), WithVolume(conf, "/etc/app.conf", true))
		assert.Equal(t, "from the host\n", sb.MustRun("cat", "/data/in"))
		assert.Equal(t, "port=1\n", sb.MustRun("cat", "/etc/app.conf"), "a file volume")
		r := sb.Run("sh", "-c", "echo x > /data/out")
		assert.NotEqual(t, 0, r.ExitCode)
		assert.Contains(t, r.Stderr, "Read-only file system")
		sb.AssertFile("/data/in", "from the host\n")
		AssertDiff(t, sb.Diff())
	})
	t.Run("read-write", func(t *testing.T) {
		sb := Container(t, fixtures.Busybox(), WithVolume(dir, "/data", false))
		sb.MustRun("sh", "-c", "echo from the container > /data/out")
		b, err := os.ReadFile(filepath.Join(dir, "out"))
		require.NoError(t, err)
		assert.Equal(t, "from the container\n", string(b), "writes land on the host")
		AssertDiff(t, sb.Diff()) // a volume's content is not a change
	})
	t.Run("missing host directory is made", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "new", "dir")
		sb := Container(t, fixtures.Busybox(), WithVolume(missing, "/out", false))
		sb.MustRun("touch", "/out/x")
		_, err := os.Stat(filepath.Join(missing, "x"))
		assert.NoError(t, err)
	})
}

func TestCommand(t *testing.T) {
	needContainers(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox())

	cmd := sb.Command("sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3")
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader("hello\n"), &stdout, &stderr
	err := cmd.Run()
	var ee *ExitError
	require.True(t, errors.As(err, &ee), "want an *ExitError, got %v", err)
	assert.Equal(t, 3, ee.ExitCode())
	assert.Equal(t, "HELLO\n", stdout.String())
	assert.Equal(t, "oops\n", stderr.String())

	// Start and Wait, with a pipe the test writes to while the command runs.
	cmd = sb.Command("wc", "-l")
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	var out bytes.Buffer
	cmd.Stdout = &out
	require.NoError(t, cmd.Start())
	for range 3 {
		io.WriteString(pw, "line\n")
	}
	pw.Close()
	require.NoError(t, cmd.Wait())
	assert.Equal(t, "3", strings.TrimSpace(out.String()))

	b, err := sb.Command("sh", "-c", "echo out; echo err >&2").CombinedOutput()
	require.NoError(t, err)
	assert.Equal(t, "out\nerr\n", string(b))

	r2 := sb.RunInput(strings.NewReader("a\nb\n"), "sort", "-r")
	assert.Equal(t, Result{Stdout: "b\na\n"}, r2)
}

func TestCommandContext(t *testing.T) {
	needContainers(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := sb.CommandContext(ctx, "sh", "-c", "sleep 30 & sleep 30").Run()
	require.Error(t, err)
	assert.Less(t, time.Since(start), 10*time.Second)
	// The container outlives the command.
	assert.Equal(t, "ok\n", sb.MustRun("echo", "ok"))
	// The whole process group was killed; the background sleep may take a moment to go.
	assert.Eventually(t, func() bool { return !strings.Contains(sb.Run("ps").Stdout, "sleep 30") },
		5*time.Second, 20*time.Millisecond, "the background sleep outlived the context")
}

func TestRunResult(t *testing.T) {
	needContainers(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox())
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"success", []string{"echo", "hi"}, 0, "hi\n", ""},
		{"exit status", []string{"sh", "-c", "echo out; echo err >&2; exit 42"}, 42, "out\n", "err\n"},
		{"missing command", []string{"nosuch", "arg"}, 127, "", `isolate: exec "nosuch": executable file not found in $PATH`},
		{"missing path", []string{"/bin/nosuch"}, 127, "", "/bin/nosuch"},
		{"not executable", []string{"/etc/passwd"}, 126, "", "/etc/passwd"},
		{"killed by SIGKILL", []string{"sh", "-c", "kill -9 $$"}, 128 + 9, "", ""},
		{"killed by SIGTERM", []string{"sh", "-c", "kill -TERM $$"}, 128 + 15, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sb.Run(tt.args[0], tt.args[1:]...)
			assert.Equal(t, tt.wantCode, r.ExitCode)
			assert.Equal(t, tt.wantStdout, r.Stdout)
			assert.Contains(t, r.Stderr, tt.wantStderr)
			assert.Equal(t, tt.wantCode == 0, r.Err == nil, "Err: %v", r.Err)
		})
	}
}

func TestMustRunFailure(t *testing.T) {
	needContainers(t)
	t.Parallel()
	var id string
	after := false
	f := runFake(func(ft *fakeT) {
		sb := Container(ft, fixtures.Busybox())
		id = sb.ID()
		sb.MustRun("sh", "-c", "echo out; echo bad >&2; exit 2")
		after = true
	})
	assert.False(t, after, "MustRun stops the test")
	assert.Equal(t, []string{"harness: container " + id + ": sh -c 'echo out; echo bad >&2; exit 2': exit code 2\nstdout:\nout\n\nstderr:\nbad\n"}, f.errors)
}

func TestReadWriteFile(t *testing.T) {
	needContainers(t)
	t.Parallel()
	img := fixtures.With(fixtures.Busybox(),
		fixtures.File("/etc/app.conf", "port=8080\n"),
		fixtures.Symlink("/data", "/etc"),              // absolute: the container's /etc
		fixtures.Symlink("/escape", "../../../../../"), // climbs no higher than the root
	)
	sb := Container(t, img)

	b, err := sb.ReadFile("/data/app.conf")
	require.NoError(t, err)
	assert.Equal(t, "port=8080\n", string(b), "through an absolute symlink of the image")
	own, err := sb.ReadFile("/etc/passwd")
	require.NoError(t, err)
	b, err = sb.ReadFile("/escape/etc/passwd")
	require.NoError(t, err)
	assert.Equal(t, string(own), string(b), "'..' stops at the container's root")

	require.NoError(t, sb.WriteFile("/data/new.conf", []byte("new\n"), 0o600))
	require.NoError(t, sb.WriteFile("/escape/tmp/x", []byte("x"), 0o644))
	require.NoError(t, sb.WriteFile("/etc/app.conf", []byte("port=9090\n"), 0o644))
	AssertDiff(t, sb.Diff(), "A /etc/new.conf", "A /tmp/x", "C /etc/app.conf")
	assert.Equal(t, "600 new\n", sb.MustRun("sh", "-c", `echo "$(stat -c %a /etc/new.conf) $(cat /etc/new.conf)"`))
	sb.AssertFile("/etc/app.conf", "port=9090\n")
	_, err = os.Stat("/etc/new.conf")
	assert.ErrorIs(t, err, os.ErrNotExist, "written on the host")

	tests := []struct {
		name    string
		err     error
		wantErr string
	}{
		{"read relative", func() error { _, err := sb.ReadFile("etc/passwd"); return err }(), "etc/passwd: not an absolute path in the container"},
		{"write relative", sb.WriteFile("tmp/y", nil, 0o644), "tmp/y: not an absolute path in the container"},
		{"read missing", func() error { _, err := sb.ReadFile("/nope"); return err }(), "open /nope: no such file or directory"},
		{"write without parent", sb.WriteFile("/no/such/dir", nil, 0o644), "open /no/such/dir: no such file or directory"},
		{"read a directory", func() error { _, err := sb.ReadFile("/etc"); return err }(), "read /etc: is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.EqualError(t, tt.err, tt.wantErr)
		})
	}
}

func TestCommit(t *testing.T) {
	needContainers(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox())
	sb.MustRun("sh", "-c", "echo v1 > /greeting && rm /bin/ls && mkdir -p /var/lib/app")
	img := sb.Commit()

	sb2 := Container(t, img)
	sb2.AssertFile("/greeting", "v1\n")
	sb2.AssertNoFile("/bin/ls")
	AssertDiff(t, sb2.Diff()) // a fresh container on the commit has changed nothing
	sb2.MustRun("sh", "-c", "echo v2 > /greeting")
	AssertDiff(t, sb2.Diff(), "C /greeting")
	sb.AssertFile("/greeting", "v1\n")

	// A commit of a commit.
	sb3 := Container(t, sb2.Commit())
	sb3.AssertFile("/greeting", "v2\n")
	sb3.AssertNoFile("/bin/ls")
}

func TestWriteLayer(t *testing.T) {
	needContainers(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox())
	sb.MustRun("sh", "-c", "echo hi > /greeting && rm /bin/ls && mkdir /srv && echo x > /srv/x")
	var buf bytes.Buffer
	require.NoError(t, sb.WriteLayer(&buf))
	got := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		b, _ := io.ReadAll(tr)
		got[h.Name] = string(b)
	}
	assert.Equal(t, map[string]string{"bin/": "", "bin/.wh.ls": "", "greeting": "hi\n", "srv/": "", "srv/x": "x\n"}, got)
}

func TestClose(t *testing.T) {
	needContainers(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox())
	sb.MustRun("sh", "-c", "echo hi > /greeting")
	sb.Close()
	r := sb.Run("true")
	assert.Equal(t, -1, r.ExitCode, "no commands after Close")
	AssertDiff(t, sb.Diff(), "A /greeting")
	sb.AssertFile("/greeting", "hi\n")
	sb.Close()
}

func TestFileAssertions(t *testing.T) {
	needContainers(t)
	t.Parallel()
	img := fixtures.With(fixtures.Busybox(),
		fixtures.File("/etc/app.conf", "a\nb\nc\n"),
		fixtures.Symlink("/dangling", "/nowhere"))
	var id string
	tests := []struct {
		name    string
		check   func(sb *Sandbox) bool
		wantMsg string // "" for a pass; {id} stands for the container's ID
	}{
		{"AssertFile equal", func(sb *Sandbox) bool { return sb.AssertFile("/etc/app.conf", "a\nb\nc\n") }, ""},
		{"AssertFile differs", func(sb *Sandbox) bool { return sb.AssertFile("/etc/app.conf", "a\nB\nc\n") },
			"harness: AssertFile: container {id}: /etc/app.conf differs (- want, + got):\n\t  a\n\t- B\n\t+ b\n\t  c"},
		{"AssertFile missing", func(sb *Sandbox) bool { return sb.AssertFile("/etc/nope", "x\n") },
			"harness: AssertFile: container {id}: open /etc/nope: no such file or directory\nwant content:\n\tx"},
		{"AssertFileContains", func(sb *Sandbox) bool { return sb.AssertFileContains("/etc/app.conf", "b\nc") }, ""},
		{"AssertFileContains absent", func(sb *Sandbox) bool { return sb.AssertFileContains("/etc/app.conf", "d") },
			"harness: AssertFileContains: container {id}: /etc/app.conf does not contain \"d\"; its content (6 bytes):\n\ta\n\tb\n\tc"},
		{"AssertNoFile", func(sb *Sandbox) bool { return sb.AssertNoFile("/etc/nope") }, ""},
		{"AssertNoFile under a missing dir", func(sb *Sandbox) bool { return sb.AssertNoFile("/nope/nope") }, ""},
		{"AssertNoFile under a file", func(sb *Sandbox) bool { return sb.AssertNoFile("/etc/app.conf/x") },
			"harness: AssertNoFile: container {id}: open /etc/app.conf/x: not a directory"},
		{"AssertNoFile file", func(sb *Sandbox) bool { return sb.AssertNoFile("/etc/app.conf") },
			"harness: AssertNoFile: container {id}: /etc/app.conf exists (a regular file of 6 bytes, mode -rw-r--r--), want nothing there"},
		{"AssertNoFile dir", func(sb *Sandbox) bool { return sb.AssertNoFile("/etc") },
			"harness: AssertNoFile: container {id}: /etc exists (a directory), want nothing there"},
		{"AssertNoFile dangling symlink", func(sb *Sandbox) bool { return sb.AssertNoFile("/dangling") },
			"harness: AssertNoFile: container {id}: /dangling exists (a symlink), want nothing there"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ok bool
			f := runFake(func(ft *fakeT) {
				sb := Container(ft, img)
				id = sb.ID()
				ok = tt.check(sb)
			})
			assert.Equal(t, tt.wantMsg == "", ok)
			if tt.wantMsg == "" {
				assert.Empty(t, f.errors)
				return
			}
			assert.Equal(t, []string{strings.ReplaceAll(tt.wantMsg, "{id}", id)}, f.errors)
		})
	}
	t.Run("RequireFile stops the test", func(t *testing.T) {
		after := false
		f := runFake(func(ft *fakeT) {
			Container(ft, img).RequireFile("/etc/app.conf", "")
			after = true
		})
		assert.True(t, f.fatal)
		assert.False(t, after)
	})
}

// badImage is an image that cannot be resolved.
type badImage struct{}

func (badImage) Ref() string                          { return "bad.tar" }
func (badImage) Resolve() (*fixtures.Resolved, error) { return nil, errors.New("not a tar archive") }

func TestContainerErrors(t *testing.T) {
	needContainers(t)
	t.Parallel()
	tests := []struct {
		name    string
		img     fixtures.Image
		opts    []Option
		wantMsg string
	}{
		{"nil image", nil, nil, "harness: Container: nil image (use fixtures.Busybox(), fixtures.Host() or fixtures.Open)"},
		{"image error", badImage{}, nil, `harness: image "bad.tar": not a tar archive`},
		{"bad volume target", fixtures.Busybox(), []Option{WithTmpfs("/proc/x")}, `mount target "/proc/x": /proc belongs to the container's kernel view`},
		{"relative volume target", fixtures.Busybox(), []Option{WithVolume(t.TempDir(), "data", true)}, `mount target "data": not an absolute path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := runFake(func(ft *fakeT) { Container(ft, tt.img, tt.opts...) })
			require.True(t, f.fatal, "Container must stop the test: %s", f.report())
			require.Len(t, f.errors, 1)
			assert.Contains(t, f.errors[0], tt.wantMsg)
		})
	}
}
