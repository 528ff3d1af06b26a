package isolate

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/isorun/isorun/overlay"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What a command sees from inside a container.

func TestRootHoldsOnlyImage(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		c := start(t, cfg)
		assert.Equal(t, testRootEntries, lines(sh(t, c, "ls -A /")))
		assert.Equal(t, "user:x:1000:1000:user:/home/user:/bin/sh", lines(sh(t, c, "grep ^user: /etc/passwd"))[0])
		// Setting up /dev, /proc and /sys over the image's empty directories, and the pivot,
		// write nothing to the upper layer (no .pivot_root, no mount point).
		changes, err := overlay.Diff(c.Upper(), c.Lowers())
		require.NoError(t, err)
		assert.Empty(t, changes, "a fresh container's upper layer")
		assert.Empty(t, c.Created())
	})
}

func TestPid1IsOurs(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		c := start(t, cfg)
		assert.Equal(t, "isorun-init", strings.TrimSpace(sh(t, c, "cat /proc/1/comm")), "comm of pid 1")
		cmdline := sh(t, c, "cat /proc/1/cmdline")
		assert.Equal(t, "isorun-init", strings.TrimRight(cmdline, "\x00"), "cmdline of pid 1")
		// The command sees its own pid namespace: ps lists pid 1, the shell and ps, nothing of the
		// host.
		out := sh(t, c, "ps -o pid,args")
		rows := lines(out)[1:] // the header
		var args []string
		for _, r := range rows {
			f := strings.Fields(r)
			require.GreaterOrEqual(t, len(f), 2, "ps row %q", r)
			args = append(args, strings.Join(f[1:], " "))
		}
		// sh may exec ps in its place: two or three processes.
		assert.LessOrEqual(t, len(rows), 3, "processes seen by ps:\n%s", out)
		assert.Equal(t, "isorun-init", args[0], "ps:\n%s", out)
		assert.Equal(t, "1", strings.Fields(rows[0])[0], "ps:\n%s", out)
		for _, a := range args[1:] {
			assert.Contains(t, a, "ps -o pid,args", "ps shows a process that is not the command:\n%s", out)
		}
	})
}

func TestHostname(t *testing.T) {
	host, err := os.Hostname()
	require.NoError(t, err)
	forModes(t, func(t *testing.T, cfg Config) {
		for _, tc := range []struct {
			name, hostname string
		}{
			{"default is the container id", ""},
			{"Config.Hostname", "box.example"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg.Hostname = tc.hostname
				c := start(t, cfg)
				want := tc.hostname
				if want == "" {
					want = c.ID()
				}
				assert.Equal(t, want, strings.TrimSpace(sh(t, c, "hostname")))
				assert.Equal(t, want, strings.TrimSpace(sh(t, c, "cat /proc/sys/kernel/hostname")))
			})
		}
		after, err := os.Hostname()
		require.NoError(t, err)
		assert.Equal(t, host, after, "the host's hostname")
	})
}

func TestLoopback(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		c := start(t, cfg)
		link := sh(t, c, "ip link show lo")
		assert.Contains(t, link, "UP", "ip link show lo")
		// The only interface is lo: no host network.
		assert.Equal(t, []string{"lo"}, lines(sh(t, c, "ls /sys/class/net")))
		assert.Contains(t, sh(t, c, "ping -c 1 -W 2 127.0.0.1"), "1 packets received")

		// A daemon started by one command serves the next. httpd forks into the background and
		// the command returns; the server stays, in the container's namespaces.
		sh(t, c, "mkdir /tmp/www && echo hello from httpd > /tmp/www/index.html && httpd -p 127.0.0.1:8080 -h /tmp/www")
		assert.Contains(t, sh(t, c, "ps -o args"), "httpd -p 127.0.0.1:8080")
		assert.Equal(t, "hello from httpd\n", sh(t, c, "wget -q -O - http://127.0.0.1:8080/"))

		// A plain background job: its output goes to a file, not to the command's stdout pipe,
		// so the command that starts it returns at once. Its stdin stays open: at EOF busybox nc
		// half-closes the connection, and the client may see that and quit before it sends.
		sh(t, c, "sleep 1000 2>/dev/null | nc -l -p 9090 > /tmp/got 2>&1 &")
		// Connect once it listens (port 9090 is 2382 in /proc/net/tcp*, state 0A is LISTEN).
		sh(t, c, `for i in $(seq 200); do cat /proc/net/tcp /proc/net/tcp6 | grep -q ':2382 0*:0000 0A' && exit 0; sleep 0.05; done; exit 1`)
		sh(t, c, `echo ping over lo | nc 127.0.0.1 9090`)
		sh(t, c, `for i in $(seq 200); do [ -s /tmp/got ] && exit 0; sleep 0.05; done; ps -o pid,stat,args; exit 1`)
		assert.Equal(t, "ping over lo\n", sh(t, c, "cat /tmp/got"))
	})
}

func TestDev(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		c := start(t, cfg)
		want := []string{"core", "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"}
		got := lines(sh(t, c, "ls -A /dev"))
		slices.Sort(got)
		assert.Equal(t, want, got)

		for _, tc := range []struct{ node, kind string }{
			{"null", "character special file 1,3"}, {"zero", "character special file 1,5"},
			{"full", "character special file 1,7"}, {"random", "character special file 1,8"},
			{"urandom", "character special file 1,9"}, {"tty", "character special file 5,0"},
			{"fd", "symbolic link /proc/self/fd"}, {"stdin", "symbolic link /proc/self/fd/0"},
			{"stdout", "symbolic link /proc/self/fd/1"}, {"stderr", "symbolic link /proc/self/fd/2"},
			{"ptmx", "symbolic link pts/ptmx"}, {"core", "symbolic link /proc/kcore"},
			{"pts", "directory"}, {"shm", "directory"},
		} {
			out := strings.TrimSpace(sh(t, c, `stat -c '%F %t,%T %a' /dev/`+tc.node+` | sed 's/ [0-9]*$//'; [ -L /dev/`+tc.node+` ] && readlink /dev/`+tc.node+` || true`))
			got := strings.Join(strings.Fields(out), " ")
			switch {
			case strings.HasPrefix(tc.kind, "character"):
				// stat prints major,minor in hex.
				assert.Equal(t, tc.kind, got, "/dev/%s", tc.node)
			case strings.HasPrefix(tc.kind, "symbolic link"):
				assert.Equal(t, "symbolic link 0,0 "+strings.TrimPrefix(tc.kind, "symbolic link "), got, "/dev/%s", tc.node)
			default:
				assert.Equal(t, "directory 0,0", got, "/dev/%s", tc.node)
			}
		}
		assert.Equal(t, "666", strings.TrimSpace(sh(t, c, "stat -c %a /dev/null")))
		assert.Equal(t, "1777", strings.TrimSpace(sh(t, c, "stat -c %a /dev/shm")))

		// They work.
		assert.Equal(t, "1000\n", sh(t, c, "head -c 1000 /dev/zero | wc -c"))
		assert.Equal(t, "0\n", sh(t, c, "head -c 1000 /dev/zero | tr -d '\\000' | wc -c"))
		assert.Equal(t, "64\n", sh(t, c, "head -c 64 /dev/urandom | wc -c"))
		assert.Equal(t, "16\n", sh(t, c, "head -c 16 /dev/random | wc -c"))
		sh(t, c, "echo gone > /dev/null")
		assert.Equal(t, "0\n", sh(t, c, "wc -c < /dev/null"))
		assert.Contains(t, shFails(t, c, "echo x > /dev/full"), "No space left on device")
		assert.Equal(t, "via fd\n", sh(t, c, "echo via fd > /dev/stdout"))
		var stdout, stderr strings.Builder
		cmd := c.Command("sh", "-c", "echo via stderr > /dev/stderr")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run())
		assert.Equal(t, "via stderr\n", stderr.String())
		assert.Empty(t, stdout.String())
		sh(t, c, "echo shared > /dev/shm/x && cat /dev/shm/x")
		// A pty pair from the container's own devpts instance.
		assert.Equal(t, "devpts\n", sh(t, c, "stat -f -c %T /dev/pts"))
		assert.Equal(t, "0\n", sh(t, c, "ls /dev/pts | grep -cv ptmx || true"), "no host pty shows in /dev/pts")
	})
}

func TestProcAndSysAreProtected(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		c := start(t, cfg)
		// Each write would change the host kernel if it went through; each writes back what is
		// there already (or asks sysrq for its help text), so a failure of this test is harmless.
		for _, tc := range []struct{ file, script string }{
			{"/proc/sys/vm/swappiness", "cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness"},
			{"/proc/sys/kernel/printk_ratelimit", "cat /proc/sys/kernel/printk_ratelimit > /proc/sys/kernel/printk_ratelimit"},
			{"/proc/sysrq-trigger", "echo h > /proc/sysrq-trigger"},
			{"/sys/kernel/mm/transparent_hugepage/enabled", "cat /sys/kernel/mm/transparent_hugepage/enabled > /sys/kernel/mm/transparent_hugepage/enabled"},
			{"/sys/kernel", "mkdir /sys/kernel/isorun-test"},
		} {
			t.Run(tc.script, func(t *testing.T) {
				if _, err := os.Stat(tc.file); err != nil {
					t.Skipf("%s is not in this kernel", tc.file)
				}
				out := shFails(t, c, tc.script)
				assert.Regexp(t, "Read-only file system|Permission denied", out)
			})
		}
		opts := map[string]string{}
		for _, l := range lines(sh(t, c, "cat /proc/self/mountinfo")) {
			if e, ok := parseMountinfoLine(l); ok {
				opts[e.point] = e.opts
			}
		}
		for _, o := range []string{"nosuid", "nodev", "noexec"} {
			assert.Contains(t, strings.Split(opts["/proc"], ","), o, "/proc options %s", opts["/proc"])
		}
		assert.Contains(t, strings.Split(opts["/sys"], ","), "ro", "/sys options %s", opts["/sys"])
		assert.Contains(t, strings.Split(opts["/proc/sys"], ","), "ro", "/proc/sys options %s", opts["/proc/sys"])
	})
}

func TestMaskedPaths(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		c := start(t, cfg)
		for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list"} {
			if _, err := os.Stat(p); err != nil {
				continue // not in this kernel
			}
			t.Run(p, func(t *testing.T) {
				assert.Equal(t, "0\n", sh(t, c, "cat "+p+" | wc -c"), "%s reads empty", p)
			})
		}
		for _, p := range []string{"/proc/acpi", "/proc/scsi", "/sys/firmware"} {
			if st, err := os.Stat(p); err != nil || !st.IsDir() {
				continue
			}
			t.Run(p, func(t *testing.T) {
				assert.Empty(t, sh(t, c, "ls -A "+p), "%s lists nothing", p)
				assert.Contains(t, shFails(t, c, "touch "+p+"/x"), "Read-only file system")
			})
		}
	})
}

// hostPaths are host directories whose names must never show in a container's mount table.
func hostPaths(t *testing.T) []string {
	wd, err := os.Getwd()
	require.NoError(t, err)
	return []string{"/work/", wd, os.TempDir() + "/go-build", "/usr", "/var", "/root/"}
}

func TestNoHostMounts(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		c := start(t, cfg)
		info := sh(t, c, "cat /proc/self/mountinfo")
		allowed := map[string]bool{"/": true, "/dev": true, "/dev/pts": true, "/dev/shm": true, "/proc": true, "/sys": true}
		for _, p := range append(slices.Clone(maskedPaths), readonlyPaths...) {
			allowed[p] = true
		}
		for _, l := range lines(info) {
			e, ok := parseMountinfoLine(l)
			require.True(t, ok, "mountinfo line %q", l)
			assert.True(t, allowed[e.point], "unexpected mount point %s in the container:\n%s", e.point, l)
			switch e.point {
			case "/":
				assert.Equal(t, "overlay", e.fstype, "the root")
			}
			// The host's filesystems show only as the overlay's lower (and masks: /dev/null).
			if e.fstype != "overlay" {
				for _, hp := range append(hostPaths(t), testRoot) {
					assert.NotContains(t, l, hp, "a host path in the container's mount table")
				}
			}
		}
		mount := sh(t, c, "mount")
		for _, hp := range hostPaths(t) {
			assert.NotContains(t, mount, hp, "`mount` in the container shows a host path")
		}
	})
}

func TestVolumes(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		host := t.TempDir()
		rw := filepath.Join(host, "rw")
		ro := filepath.Join(host, "ro")
		nested := filepath.Join(host, "nested")
		for _, d := range []string{rw, ro, nested} {
			require.NoError(t, os.Mkdir(d, 0o755))
		}
		require.NoError(t, os.WriteFile(filepath.Join(rw, "from-host"), []byte("hello volume\n"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(ro, "keep"), []byte("read me\n"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(nested, "inner"), []byte("inner\n"), 0o644))
		file := filepath.Join(host, "config.txt")
		require.NoError(t, os.WriteFile(file, []byte("key=value\n"), 0o644))
		missing := filepath.Join(host, "made", "by", "start")

		cfg.Mounts = []Mount{
			// Given inside-out: Start orders them so that /data is mounted before /data/sub.
			{Type: "bind", Source: nested, Target: "/data/sub/", ReadOnly: true},
			{Type: "bind", Source: rw, Target: "/data"},
			{Type: "bind", Source: ro, Target: "/etc/ro", ReadOnly: true},
			{Type: "bind", Source: file, Target: "/etc/app/config.txt"},
			{Type: "bind", Source: missing, Target: "/made"},
			{Type: "tmpfs", Target: "/scratch", Options: "size=1m,mode=1777"},
			{Type: "tmpfs", Target: "/tmp/ro-tmpfs", ReadOnly: true},
		}
		c := start(t, cfg)

		t.Run("read-write", func(t *testing.T) {
			assert.Equal(t, "hello volume\n", sh(t, c, "cat /data/from-host"))
			sh(t, c, "echo from container > /data/new")
			b, err := os.ReadFile(filepath.Join(rw, "new"))
			require.NoError(t, err)
			assert.Equal(t, "from container\n", string(b), "a write in the volume lands on the host")
		})
		t.Run("read-only", func(t *testing.T) {
			assert.Equal(t, "read me\n", sh(t, c, "cat /etc/ro/keep"))
			assert.Contains(t, shFails(t, c, "echo changed > /etc/ro/keep"), "Read-only file system")
			assert.Contains(t, shFails(t, c, "touch /etc/ro/new"), "Read-only file system")
			b, err := os.ReadFile(filepath.Join(ro, "keep"))
			require.NoError(t, err)
			assert.Equal(t, "read me\n", string(b))
			assert.NoFileExists(t, filepath.Join(ro, "new"))
		})
		t.Run("nested", func(t *testing.T) {
			assert.Equal(t, "inner\n", sh(t, c, "cat /data/sub/inner"))
			assert.Contains(t, shFails(t, c, "touch /data/sub/x"), "Read-only file system")
			// The mount point for /data/sub was made in the host directory behind /data.
			assert.DirExists(t, filepath.Join(rw, "sub"))
		})
		t.Run("file", func(t *testing.T) {
			assert.Equal(t, "key=value\n", sh(t, c, "cat /etc/app/config.txt"))
			sh(t, c, "echo key=new > /etc/app/config.txt")
			b, err := os.ReadFile(file)
			require.NoError(t, err)
			assert.Equal(t, "key=new\n", string(b))
		})
		t.Run("missing source is created", func(t *testing.T) {
			assert.DirExists(t, missing)
			sh(t, c, "echo x > /made/y")
			assert.FileExists(t, filepath.Join(missing, "y"))
		})
		t.Run("tmpfs", func(t *testing.T) {
			assert.Equal(t, "1777\n", sh(t, c, "stat -c %a /scratch"))
			assert.Equal(t, "tmpfs\n", sh(t, c, "stat -f -c %T /scratch"))
			sh(t, c, "echo x > /scratch/y")
			shFails(t, c, "head -c 2000000 /dev/zero > /scratch/big") // size=1m
			sh(t, c, "s=$(stat -c %s /scratch/big); [ $s -gt 1000000 ] && [ $s -le 1048576 ]")
			assert.Contains(t, shFails(t, c, "touch /tmp/ro-tmpfs/x"), "Read-only file system")
		})
		t.Run("created mount points", func(t *testing.T) {
			created := slices.Clone(c.Created())
			slices.Sort(created)
			assert.Equal(t, []string{"/data", "/data/sub", "/etc/app", "/etc/app/config.txt", "/etc/ro", "/made", "/scratch", "/tmp/ro-tmpfs"}, created)
			// Everything the setup added to the upper layer is in Created, so a harness can leave
			// it out of the container's diff.
			changes, err := overlay.Diff(c.Upper(), c.Lowers())
			require.NoError(t, err)
			for _, ch := range changes {
				assert.Contains(t, created, ch.Path, "change %s is not in Created()", ch)
			}
		})
	})
}

// TestVolumeTargetSymlink: the image controls its symlinks; a mount target through one resolves
// inside the container's root, never on the host.
func TestVolumeTargetSymlink(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		layer := t.TempDir()
		require.NoError(t, os.Chmod(layer, 0o755))
		require.NoError(t, os.Symlink("/../../..", filepath.Join(layer, "escape")))
		require.NoError(t, os.Symlink("../../../../../../tmp", filepath.Join(layer, "uptmp")))
		require.NoError(t, os.Symlink("/../../../etc", filepath.Join(layer, "etclink")))
		vol := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(vol, "marker"), []byte("volume\n"), 0o644))

		hostName := "isolate-escape-" + filepath.Base(vol)
		cfg.Lowers = []string{layer, testRoot}
		cfg.Mounts = []Mount{
			{Type: "bind", Source: vol, Target: "/escape/" + hostName},
			{Type: "bind", Source: vol, Target: "/uptmp/" + hostName},
			{Type: "tmpfs", Target: "/etclink"},
		}
		c := start(t, cfg)
		// Resolved in the root: /escape -> /, /uptmp -> /tmp, /etclink -> /etc.
		assert.Equal(t, "volume\n", sh(t, c, "cat /"+hostName+"/marker"))
		assert.Equal(t, "volume\n", sh(t, c, "cat /tmp/"+hostName+"/marker"))
		assert.Equal(t, "tmpfs\n", sh(t, c, "stat -f -c %T /etc"))
		// Nothing was created or mounted on the host's side of those links.
		for _, p := range []string{"/" + hostName, "/tmp/" + hostName} {
			assert.NoDirExists(t, p)
		}
		// Created names where the mount points really are, so that they match the diff.
		changes, err := overlay.Diff(c.Upper(), c.Lowers())
		require.NoError(t, err)
		var added []string
		for _, ch := range changes {
			added = append(added, ch.Path)
		}
		for _, p := range added {
			assert.Contains(t, c.Created(), p, "diff %v, created %v", changes, c.Created())
		}

		// A target that is the link to the root itself would land under the pivot, unseen: an
		// error says so.
		cfg.Mounts = []Mount{{Type: "bind", Source: vol, Target: "/escape"}}
		_, err = Start(context.Background(), cfg)
		var se *SetupError
		require.ErrorAs(t, err, &se)
		assert.Contains(t, err.Error(), "/escape")
		assert.Contains(t, err.Error(), "resolves to the container's root")
	})
}

func TestScratchSize(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		cfg.ScratchSize = 4 << 20
		c := start(t, cfg)
		sh(t, c, "head -c 1000000 /dev/zero > /tmp/fits")
		shFails(t, c, "head -c 8000000 /dev/zero > /tmp/too-big")
		sh(t, c, "rm /tmp/too-big; echo space again > /tmp/small")
	})
}

// TestUpperOnDisk: with Config.Upper and Work, the writes are kept after the container ends.
func TestUpperOnDisk(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		dir := t.TempDir()
		cfg.Upper, cfg.Work = filepath.Join(dir, "upper"), filepath.Join(dir, "work")
		require.NoError(t, os.Mkdir(cfg.Upper, 0o755))
		require.NoError(t, os.Mkdir(cfg.Work, 0o755))
		c := start(t, cfg)
		assert.Equal(t, cfg.Upper, c.Upper())
		sh(t, c, "echo kept > /tmp/file && rm /bin/ls")
		require.NoError(t, c.Release())
		b, err := os.ReadFile(filepath.Join(cfg.Upper, "tmp/file"))
		require.NoError(t, err)
		assert.Equal(t, "kept\n", string(b))
		changes, err := overlay.Diff(cfg.Upper, cfg.Lowers)
		require.NoError(t, err)
		assert.Equal(t, "D /bin/ls\nA /tmp/file\n", changes.String())
	})
}
