package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/isorun/isorun/fixtures"
)

// The confinement tests try to break each default from inside, as root in the container, with
// busybox and with testdata/escape (a static Go program for the syscalls busybox has no command
// for, mounted read-only at /opt/escape). They run once with each init, and again rootless
// (ci/test-rootless.sh), where what differs is said where it is asserted.

// dockerCaps is Docker's default capability set, which commands keep.
var dockerCaps = []int{unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID, unix.CAP_KILL,
	unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETPCAP, unix.CAP_NET_BIND_SERVICE, unix.CAP_NET_RAW,
	unix.CAP_SYS_CHROOT, unix.CAP_MKNOD, unix.CAP_AUDIT_WRITE, unix.CAP_SETFCAP}

func capMask(caps []int) uint64 {
	var m uint64
	for _, c := range caps {
		m |= 1 << c
	}
	return m
}

// escapeBin is the directory holding the built escape helper, shared by the tests of this binary.
var escapeBin struct {
	sync.Mutex
	dir string
}

func buildEscape(t *testing.T) string {
	t.Helper()
	escapeBin.Lock()
	defer escapeBin.Unlock()
	if escapeBin.dir != "" {
		return escapeBin.dir
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build testdata/escape with: %v", err)
	}
	out, err := os.MkdirTemp(testRoot, "escape-bin-")
	require.NoError(t, err)
	// escape32 is the same program for the 32-bit ABI this kernel may also run (i386 on
	// x86-64, arm on arm64): its system calls reach the kernel by other numbers.
	builds := [][]string{{"escape"}}
	if arch := compat32[runtime.GOARCH]; arch != "" {
		builds = append(builds, []string{"escape32", "GOARCH=" + arch})
	}
	for _, b := range builds {
		cmd := exec.Command(goTool, "build", "-o", filepath.Join(out, b[0]), "./testdata/escape")
		cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOTOOLCHAIN=local"), b[1:]...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go build %v testdata/escape:\n%s", b, out)
	}
	escapeBin.dir = out
	return out
}

// compat32 is the 32-bit GOARCH whose binaries a 64-bit kernel of GOARCH may run.
var compat32 = map[string]string{"amd64": "386", "arm64": "arm"}

// hostMarker is a file that exists on the host only: reaching it from inside is an escape.
func hostMarker(t *testing.T) string {
	b := make([]byte, 8)
	rand.Read(b)
	p := filepath.Join(testRoot, "host-marker-"+hex.EncodeToString(b))
	require.NoError(t, os.WriteFile(p, []byte("host\n"), 0o600))
	t.Cleanup(func() { os.Remove(p) })
	return p
}

// attempts runs the escape helper and returns its report, attempt -> result ("ok" or an errno
// name).
func attempts(t *testing.T, sb *Sandbox, args ...string) map[string]string {
	t.Helper()
	return attemptsWith(t, sb, "/opt/escape/escape", args...)
}

// attemptsWith is attempts with another build of the helper (escape32).
func attemptsWith(t *testing.T, sb *Sandbox, prog string, args ...string) map[string]string {
	t.Helper()
	r := sb.Run(prog, args...)
	require.Equal(t, 0, r.ExitCode, "%s %v: %s", prog, args, r.Stderr)
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			out[k] = v
		}
	}
	t.Logf("%s %s:\n%s", path.Base(prog), strings.Join(args, " "), r.Stdout)
	return out
}

// status reads the capability and no_new_privs lines of /proc/self/status as a command sees it.
func status(t *testing.T, sb *Sandbox, uid int) map[string]uint64 {
	t.Helper()
	cmd := sb.Command("cat", "/proc/self/status")
	if uid >= 0 {
		cmd.UID, cmd.GID = uint32(uid), uint32(uid)
	}
	out, err := cmd.Output()
	require.NoError(t, err)
	return parseStatus(t, string(out))
}

func parseStatus(t *testing.T, s string) map[string]uint64 {
	t.Helper()
	m := map[string]uint64{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch {
		case strings.HasPrefix(k, "Cap"):
			n, err := strconv.ParseUint(v, 16, 64)
			require.NoError(t, err, line)
			m[k] = n
		case k == "NoNewPrivs" || k == "Seccomp":
			n, err := strconv.ParseUint(v, 10, 64)
			require.NoError(t, err, line)
			m[k] = n
		}
	}
	return m
}

func TestConfinement(t *testing.T) {
	needContainers(t)
	bin := buildEscape(t)
	for _, init := range []string{"c", "go"} {
		t.Run(init+"-init", func(t *testing.T) {
			if init == "go" {
				t.Setenv("ISORUN_INIT", "go")
			}
			testConfinement(t, bin)
		})
	}
}

func testConfinement(t *testing.T, bin string) {
	marker := hostMarker(t)
	sb := Container(t, fixtures.Busybox(), WithVolume(bin, "/opt/escape", true))
	hostStatus, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	host := parseStatus(t, string(hostStatus))

	t.Run("capabilities", func(t *testing.T) {
		// All a container's init may hand out: the bounding set we run with; rootless, every
		// capability there is, for the creator of a user namespace has them all in it
		// whatever its bounding set outside (those of the namespace, not the host's).
		all := host["CapBnd"]
		if sb.Rootless() {
			b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
			require.NoError(t, err)
			last, err := strconv.Atoi(strings.TrimSpace(string(b)))
			require.NoError(t, err)
			all = 1<<(last+1) - 1
		}
		want := capMask(dockerCaps) & all
		st := status(t, sb, -1)
		assert.Equal(t, fmt.Sprintf("%016x", want), fmt.Sprintf("%016x", st["CapEff"]), "CapEff: Docker's default set")
		assert.Equal(t, st["CapEff"], st["CapPrm"], "CapPrm")
		assert.Equal(t, fmt.Sprintf("%016x", want), fmt.Sprintf("%016x", st["CapBnd"]), "CapBnd: the rest are gone for good")
		assert.Zero(t, st["CapAmb"], "CapAmb")
		assert.EqualValues(t, 1, st["NoNewPrivs"], "NoNewPrivs")
		assert.EqualValues(t, 2, st["Seccomp"], "Seccomp: a filter (the keyring one)")

		// Another user has no capabilities at all. Rootless, only root is mapped: there is no
		// other user to run as (the capabilities above are then those of the container's user
		// namespace, the same set).
		if sb.Rootless() {
			cmd := sb.Command("cat", "/proc/self/status")
			cmd.UID, cmd.GID = 1000, 1000
			_, err := cmd.Output()
			require.Error(t, err, "uid 1000 in a rootless container")
			assert.Contains(t, err.Error(), "maps only uid 0")
		} else {
			user := status(t, sb, 1000)
			assert.Zero(t, user["CapEff"], "CapEff of uid 1000")
			assert.Zero(t, user["CapPrm"], "CapPrm of uid 1000")
		}

		// WithPrivileged restores them all, and installs no seccomp filter; the checks below
		// would see it.
		priv := Container(t, fixtures.Busybox(), WithPrivileged())
		pst := status(t, priv, -1)
		assert.Equal(t, fmt.Sprintf("%016x", all), fmt.Sprintf("%016x", pst["CapEff"]), "privileged CapEff")
		assert.Equal(t, fmt.Sprintf("%016x", all), fmt.Sprintf("%016x", pst["CapBnd"]), "privileged CapBnd")
		assert.Zero(t, pst["NoNewPrivs"], "privileged NoNewPrivs")
		assert.Equal(t, host["Seccomp"], pst["Seccomp"], "privileged Seccomp: the test process's own")
		r := priv.Run("sh", "-c", "mkdir -p /m && mount -t tmpfs none /m && umount /m")
		assert.Equal(t, 0, r.ExitCode, "a privileged container can mount: %s", r.Stderr)
	})

	t.Run("no_new_privs: setuid does not elevate", func(t *testing.T) {
		if sb.Rootless() {
			// Only uid 0 is mapped in a rootless container, so no command runs as anyone a
			// setuid binary could elevate from, and the setuid bit of a file whose owner is
			// not mapped (nobody) is ignored by exec anyway. NoNewPrivs is checked above.
			t.Skip("rootless: only root exists in the container, there is no uid for setuid to elevate from")
		}
		sb.MustRun("sh", "-c", "cp /opt/escape/escape /tmp/su && chmod 4755 /tmp/su")
		cmd := sb.Command("/tmp/su", "euid")
		cmd.UID, cmd.GID = 1000, 1000
		out, err := cmd.Output()
		require.NoError(t, err)
		assert.Equal(t, "euid: 1000\n", string(out), "a setuid-root binary run by uid 1000 stays uid 1000")
	})

	t.Run("masked /proc paths", func(t *testing.T) {
		for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/interrupts",
			"/proc/sched_debug", "/proc/latency_stats", "/proc/timer_stats"} {
			if _, err := os.Stat(p); err != nil {
				continue // not in this kernel: nothing to mask
			}
			r := sb.Run("cat", p)
			assert.Equal(t, 0, r.ExitCode, "%s: %s", p, r.Stderr)
			assert.Empty(t, r.Stdout, "%s is masked", p)
			assert.NotEqual(t, 0, sb.Run("umount", p).ExitCode, "umount %s", p)
		}
		for _, p := range []string{"/proc/acpi", "/proc/scsi", "/proc/asound", "/sys/firmware"} {
			if _, err := os.Stat(p); err != nil {
				continue
			}
			r := sb.Run("ls", "-A", p)
			assert.Empty(t, r.Stdout, "%s is masked", p)
		}
	})

	t.Run("read-only /proc and /sys", func(t *testing.T) {
		for _, p := range []string{"/proc/sys/kernel/domainname", "/proc/sys/vm/overcommit_memory",
			"/proc/sysrq-trigger", "/sys/kernel/uevent_helper", "/sys/kernel/profiling"} {
			if _, err := os.Stat(p); err != nil {
				continue
			}
			r := sb.Run("sh", "-c", "echo 0 > "+p)
			assert.NotEqual(t, 0, r.ExitCode, "writing %s", p)
			assert.Contains(t, r.Stderr, "Read-only file system", "writing %s", p)
		}
		assert.NotEqual(t, 0, sb.Run("mount", "-o", "remount,rw", "/proc/sys").ExitCode)
		assert.NotEqual(t, 0, sb.Run("mount", "-o", "remount,rw", "/sys").ExitCode)
	})

	t.Run("/dev holds only its own nodes", func(t *testing.T) {
		out := sb.MustRun("sh", "-c", "find /dev -xdev \\( -type c -o -type b \\) -exec stat -c '%n %F %t:%T' {} +")
		allowed := map[string]string{"/dev/null": "1:3", "/dev/zero": "1:5", "/dev/full": "1:7", "/dev/random": "1:8",
			"/dev/urandom": "1:9", "/dev/tty": "5:0"}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			require.GreaterOrEqual(t, len(f), 3, line)
			name, mm := f[0], f[len(f)-1]
			maj, min, _ := strings.Cut(mm, ":")
			a, _ := strconv.ParseUint(maj, 16, 32)
			b, _ := strconv.ParseUint(min, 16, 32)
			dev := fmt.Sprintf("%d:%d", a, b)
			got = append(got, name)
			assert.Equal(t, "character", f[1], "%s is a character device", name)
			assert.Equal(t, allowed[name], dev, "%s", name)
		}
		slices.Sort(got)
		assert.Equal(t, []string{"/dev/full", "/dev/null", "/dev/random", "/dev/tty", "/dev/urandom", "/dev/zero"}, got)
		// The devpts is the container's own instance: no host terminal in it.
		assert.Equal(t, "ptmx\n", sb.MustRun("ls", "/dev/pts"))

		// /dev is read-only once populated (nothing can be added to it, a device node least of
		// all); its nodes work, and /dev/shm and /dev/pts are mounts of their own, writable.
		for _, c := range []string{"mknod /dev/x c 1 3", "touch /dev/x", "mkdir /dev/x", "ln -s null /dev/x", "rm /dev/zero"} {
			r := sb.Run("sh", "-c", c)
			assert.NotEqual(t, 0, r.ExitCode, c)
			if !sb.Rootless() || !strings.HasPrefix(c, "mknod") { // rootless: EPERM comes first
				assert.Contains(t, r.Stderr, "Read-only file system", c)
			}
		}
		sb.MustRun("sh", "-c", "echo x > /dev/null && head -c 16 /dev/urandom | wc -c | grep -qx 16 && "+
			"head -c 4 /dev/zero | wc -c | grep -qx 4 && ! echo x > /dev/full && "+
			"echo shm > /dev/shm/x && cat /dev/shm/x && rm /dev/shm/x")
		// A terminal pair from the container's devpts, through the /dev/ptmx link.
		res := attempts(t, sb, "pty")
		require.Len(t, res, 1)
		for k, v := range res {
			assert.Regexp(t, `^pty /dev/pts/\d+$`, k)
			assert.Equal(t, "ok", v, k)
		}
	})

	t.Run("host devices made with mknod", func(t *testing.T) {
		// CAP_MKNOD is in Docker's set, and there is no devices cgroup (Docker's refuses the
		// open): instead every filesystem the container may write to is nodev, and /dev is
		// read-only. Try the host's terminals, its screen (vcs), a loop device, the disk that
		// holds "/", the kernel log and memory, made in every writable place: the image's root,
		// a read-write volume, a tmpfs volume, /dev/shm, /dev and /dev/pts. Each opened
		// read-only and non-blocking, nothing written.
		var st unix.Stat_t
		require.NoError(t, unix.Stat("/", &st))
		disk := fmt.Sprintf("b:%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
		specs := []string{"c:4:1", "c:7:0", "b:7:0", disk, "c:1:11", "c:1:1", "c:10:237"}
		dsb := Container(t, fixtures.Busybox(), WithVolume(bin, "/opt/escape", true),
			WithVolume(t.TempDir(), "/vol", false), WithTmpfs("/scratch"))
		dirs := []string{"/tmp", "/vol", "/scratch", "/dev/shm", "/dev", "/dev/pts"}
		res := attempts(t, dsb, append([]string{"devices", strings.Join(dirs, ",")}, specs...)...)
		for _, d := range dirs {
			for _, sp := range specs {
				mknod, open := res["mknod "+d+" "+sp], res["open "+d+" "+sp]
				assert.NotEqual(t, "ok", open, "%s %s: a host device opened", d, sp)
				switch {
				case d == "/dev":
					assert.Equal(t, "EROFS", mknod, "mknod in /dev %s", sp)
				case d == "/dev/pts":
					assert.Equal(t, "EPERM", mknod, "mknod in /dev/pts %s: devpts makes none", sp)
				case dsb.Rootless():
					// Not capable in the initial user namespace: the kernel refuses the node.
					assert.Equal(t, "EPERM", mknod, "rootless mknod in %s %s", d, sp)
				default:
					// The node is made, and nodev refuses the open.
					assert.Empty(t, mknod, "mknod in %s %s", d, sp)
					assert.Equal(t, "EACCES", open, "open of %s in %s: the mount is nodev", sp, d)
				}
			}
		}
		// The same with busybox: whatever mknod does, nothing it makes opens.
		r := dsb.Run("sh", "-c", "mknod /tmp/null c 1 3; ls -l /tmp/null; cat /tmp/null && echo OPENED")
		assert.NotContains(t, r.Stdout, "OPENED")
		if !dsb.Rootless() {
			assert.Regexp(t, `^crw`, r.Stdout, "the node is made")
			assert.Contains(t, r.Stderr, "Permission denied")
		}

		// WithPrivileged keeps device nodes usable: writable mounts are not nodev there.
		if !dsb.Rootless() {
			priv := Container(t, fixtures.Busybox(), WithVolume(bin, "/opt/escape", true), WithPrivileged())
			pres := attempts(t, priv, "devices", "/tmp,/dev", "c:1:3")
			assert.Equal(t, "ok", pres["open /tmp c:1:3"], "privileged: a node made in the image's root opens")
			assert.Equal(t, "ok", pres["open /dev c:1:3"], "privileged: /dev stays writable")
		}
	})

	t.Run("the image's own device nodes", func(t *testing.T) {
		if Rootless() {
			// An image with a device node needs mknod on the host; and an image extracted
			// rootless has empty placeholder files for its nodes (see Rootless).
			t.Skip("rootless: this process cannot make an image with a device node (mknod needs root)")
		}
		// An image (a root filesystem directory, used in place) with a node for the host's
		// kernel memory (c 1 1) and one for null: the overlay root is nodev, so neither opens.
		img := t.TempDir()
		require.NoError(t, os.Mkdir(filepath.Join(img, "nodes"), 0o755))
		require.NoError(t, unix.Mknod(filepath.Join(img, "nodes", "mem"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 1))))
		require.NoError(t, unix.Mknod(filepath.Join(img, "nodes", "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		image, err := fixtures.Open(img)
		require.NoError(t, err)
		isb := Container(t, image, WithVolume(bin, "/opt/escape", true))
		res := attempts(t, isb, "open", "/nodes/mem", "/nodes/null")
		assert.Equal(t, map[string]string{"open /nodes/mem": "EACCES", "open /nodes/null": "EACCES"}, res)
		priv := Container(t, image, WithVolume(bin, "/opt/escape", true), WithPrivileged())
		res = attempts(t, priv, "open", "/nodes/null")
		assert.Equal(t, "ok", res["open /nodes/null"], "privileged: the image's nodes open")
	})

	t.Run("the kernel keyring of root", func(t *testing.T) {
		// Keyrings belong to a uid in a user namespace; without a user namespace, root in the
		// container is root of the host's, user keyring included. The seccomp filter refuses
		// add_key, request_key and keyctl, as Docker's profile does, by every ABI the kernel
		// takes calls in: x86-64 and x32 numbers, and a 32-bit binary's.
		want := map[string]string{"keyctl": "EPERM", "add_key": "EPERM", "request_key": "EPERM", "user keyring": "-1"}
		if runtime.GOARCH == "amd64" {
			want["keyctl x32"] = "EPERM"
		}
		assert.Equal(t, want, attempts(t, sb, "keyring"))
		if compat32[runtime.GOARCH] != "" {
			r := sb.Run("/opt/escape/escape32", "keyring")
			if r.ExitCode != 0 && strings.Contains(r.Stderr+fmt.Sprint(r.Err), "exec format error") {
				t.Logf("this kernel runs no %s binaries: no 32-bit calls to try", compat32[runtime.GOARCH])
			} else {
				res := attemptsWith(t, sb, "/opt/escape/escape32", "keyring")
				assert.Equal(t, map[string]string{"keyctl": "EPERM", "add_key": "EPERM", "request_key": "EPERM",
					"user keyring": "-1"}, res, "32-bit")
			}
		}

		// WithPrivileged installs no filter: without a user namespace, that is the host root's
		// keyring.
		priv := Container(t, fixtures.Busybox(), WithVolume(bin, "/opt/escape", true), WithPrivileged())
		res := attempts(t, priv, "keyring")
		assert.Equal(t, "ok", res["keyctl"], "privileged keyctl")
		if host, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_USER_KEYRING, false); err == nil && !priv.Rootless() {
			assert.Equal(t, strconv.Itoa(host), res["user keyring"], "privileged: the host root's user keyring")
		}
	})

	t.Run("mount, umount, pivot_root", func(t *testing.T) {
		res := attempts(t, sb, "mount")
		for k, v := range res {
			assert.Contains(t, []string{"EPERM", "EACCES"}, v, "%s", k)
		}
		assert.Len(t, res, 11)
		for _, c := range [][]string{{"mount", "-t", "tmpfs", "none", "/tmp"}, {"mount", "--bind", "/", "/tmp"},
			{"umount", "-l", "/proc"}, {"umount", "/dev"}, {"pivot_root", "/tmp", "/tmp"}} {
			r := sb.Run(c[0], c[1:]...)
			assert.NotEqual(t, 0, r.ExitCode, "%v", c)
		}
	})

	t.Run("module loading", func(t *testing.T) {
		res := attempts(t, sb, "module")
		for _, k := range []string{"finit_module", "init_module", "delete_module"} {
			// ENOSYS: this kernel has no module support; the capability is not in the
			// bounding set anyway (see capabilities).
			assert.Contains(t, []string{"EPERM", "ENOSYS"}, res[k], k)
		}
		assert.NotEqual(t, 0, sb.Run("sh", "-c", "head -c 64 /bin/busybox > /tmp/m.ko && insmod /tmp/m.ko").ExitCode)
	})

	t.Run("pid 1 cannot be ptraced or read", func(t *testing.T) {
		res := attempts(t, sb, "ptrace", "1")
		assert.Equal(t, "EPERM", res["ptrace attach"])
		assert.Equal(t, "EPERM", res["process_vm_readv"])
		assert.Equal(t, "EACCES", res["read environ"])
		assert.Equal(t, "EACCES", res["readlink root"])
		for _, c := range []string{"ls /proc/1/root/", "ls /proc/1/cwd/", "readlink /proc/1/fd/0", "cat /proc/1/maps"} {
			r := sb.Run("sh", "-c", c)
			assert.NotEqual(t, 0, r.ExitCode, c)
		}
	})

	t.Run("double chroot and .. stay inside", func(t *testing.T) {
		res := attempts(t, sb, "chroot", marker)
		assert.Equal(t, "ok", res["chroot ."], "CAP_SYS_CHROOT is in the default set: the trick runs")
		assert.Equal(t, "ENOENT", res["host marker after double chroot"], "the real root is the container's")
		root := strings.Fields(sb.MustRun("ls", "/"))
		assert.ElementsMatch(t, root, strings.Fields(res["root after double chroot"]))
		for _, dir := range []string{"/../../..", "/opt/escape/../../../..", "/proc/self/root/..", "/proc/1/cwd/../.."} {
			r := sb.Run("sh", "-c", "cd -P "+dir+" && ls") // -P: resolve "..", not trim the path
			if r.ExitCode == 0 {
				assert.ElementsMatch(t, root, strings.Fields(r.Stdout), "ls in %s", dir)
			}
		}
		assert.NotEqual(t, 0, sb.Run("test", "-e", marker).ExitCode)
	})

	t.Run("no host file through /proc links or fds", func(t *testing.T) {
		// A background command, so that more processes and fds are there to try.
		bg := sb.Command("sleep", "60")
		require.NoError(t, bg.Start())
		defer bg.Signal(unix.SIGKILL)
		res := attempts(t, sb, "links", marker)
		assert.Regexp(t, `^\d+, reached the host: 0$`, res["links tried"])
		fds := sb.MustRun("sh", "-c", "ls /proc/self/fd")
		assert.Equal(t, []string{"0", "1", "2", "3"}, strings.Fields(fds), "a command holds its stdio (and ls its directory), nothing of the host's")
	})

	t.Run("open_by_handle_at (shocker)", func(t *testing.T) {
		res := attempts(t, sb, "handle", "/opt/escape")
		assert.Equal(t, "EPERM", res["open_by_handle_at"], "CAP_DAC_READ_SEARCH is not in the default set")
	})

	t.Run("host processes are invisible", func(t *testing.T) {
		out := sb.MustRun("sh", "-c", "for p in /proc/[0-9]*; do echo ${p#/proc/} $(tr '\\0' ' ' < $p/cmdline); done")
		exe, _ := os.Executable()
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			pid, cmd, _ := strings.Cut(line, " ")
			assert.NotContains(t, cmd, filepath.Base(exe), "pid %s", pid)
			n, _ := strconv.Atoi(pid)
			assert.Less(t, n, 1000, "pid %s: %s", pid, cmd)
		}
		assert.Regexp(t, regexp.MustCompile(`^1 isorun-init`), out, "pid 1 is the container's init")
		hostNS, _ := os.Readlink("/proc/self/ns/pid")
		assert.NotEqual(t, hostNS+"\n", sb.MustRun("readlink", "/proc/self/ns/pid"))
		assert.NotEqual(t, 0, sb.Run("kill", "-0", strconv.Itoa(os.Getpid())).ExitCode, "no signal to a host pid")
	})

	t.Run("network is loopback only", func(t *testing.T) {
		out := sb.MustRun("ls", "/sys/class/net")
		assert.Equal(t, "lo\n", out)
	})

	t.Run("a user namespace inside does not unmask", func(t *testing.T) {
		// The seccomp filter is no Docker profile: root in the container may create a user
		// namespace (Docker's forbids it). Inside it, the masks, read-only mounts and nodev
		// are locked, and mknod is refused.
		r := sb.Run("unshare", "-U", "-r", "-m", "sh", "-c", "echo INSIDE; mkdir -p /tmp/u; "+
			"umount /proc/interrupts && echo UNMASKED; "+
			"mount -t proc proc /tmp/u && echo PROC; "+
			"mount -o remount,rw /proc/sys && echo RW; "+
			"mount -t sysfs sysfs /tmp/u && echo SYSFS; "+
			"echo 0 > /proc/sys/vm/overcommit_memory && echo WROTE; "+
			"mount -o remount,bind,dev / && echo ROOTDEV; "+
			"mount -o remount,bind,rw /dev && echo DEVRW; "+
			"mknod /tmp/u/null c 1 3 && echo MKNOD; true")
		t.Logf("unshare -U -r -m: exit %d\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
		if !strings.Contains(r.Stdout, "INSIDE") {
			t.Log("this kernel refuses the user namespace: nothing more to try")
		}
		for _, bad := range []string{"UNMASKED", "PROC", "RW", "SYSFS", "WROTE", "ROOTDEV", "DEVRW", "MKNOD"} {
			assert.NotContains(t, r.Stdout, bad)
		}
	})
}
