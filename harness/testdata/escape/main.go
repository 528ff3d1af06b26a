// Command escape tries, from inside a container, the ways out that busybox has no command for,
// and prints one line per attempt: "NAME: ok" when it worked, "NAME: ERRNO" when it failed.
// The confinement tests (confinement_linux_test.go) build it static and run it as root in a
// container; it never harms the host when the confinement holds, and opens host devices only
// read-only and non-blocking when it does not.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: escape chroot|links|devices|open|mount|module|ptrace|handle|euid|keyring|pty ARG...")
		os.Exit(2)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "chroot":
		chrootEscape(args[0])
	case "links":
		links(args[0])
	case "devices":
		devices(strings.Split(args[0], ","), args[1:])
	case "open":
		for _, p := range args {
			report("open "+p, openNode(p))
		}
	case "mount":
		mounts()
	case "module":
		module()
	case "ptrace":
		ptrace(args[0])
	case "handle":
		handle(args[0])
	case "euid":
		fmt.Printf("euid: %d\n", os.Geteuid())
	case "keyring":
		keyring()
	case "pty":
		pty()
	default:
		fmt.Fprintf(os.Stderr, "escape: unknown attempt %q\n", os.Args[1])
		os.Exit(2)
	}
}

func report(name string, err error) {
	if err == nil {
		fmt.Printf("%s: ok\n", name)
		return
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		fmt.Printf("%s: %s\n", name, unix.ErrnoName(errno))
		return
	}
	fmt.Printf("%s: %v\n", name, err)
}

// chrootEscape is the classic double chroot: chroot into a subdirectory without changing into
// it, so the working directory is outside the new root, climb with "..", and chroot there. It
// reaches the real root of the mount namespace; after pivot_root with the old root detached,
// that is the container's own root. marker is a host path: reaching it means escaping.
func chrootEscape(marker string) {
	os.MkdirAll("/tmp/jail", 0o755)
	report("chroot jail", unix.Chroot("/tmp/jail"))
	for range 64 {
		unix.Chdir("..")
	}
	report("chroot .", unix.Chroot("."))
	_, err := os.Stat(marker)
	report("host marker after double chroot", err)
	ents, _ := os.ReadDir("/")
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	fmt.Printf("root after double chroot: %s\n", strings.Join(names, " "))
}

// links tries every magic link of every visible process (cwd, root, exe, fds, mapped files) as
// a way to marker, a host path: through the link and then up with "..".
func links(marker string) {
	var tried, reached int
	paths, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range paths {
		cands := []string{p + "/cwd", p + "/root", p + "/exe"}
		for _, sub := range []string{"/fd/*", "/map_files/*"} {
			m, _ := filepath.Glob(p + sub)
			cands = append(cands, m...)
		}
		for _, c := range cands {
			for _, up := range []string{"", strings.Repeat("../", 40)} {
				tried++
				if _, err := os.Stat(c + "/" + up + strings.TrimPrefix(marker, "/")); err == nil {
					reached++
					fmt.Printf("reached through %s: ok\n", c)
				}
			}
		}
	}
	fmt.Printf("links tried: %d, reached the host: %d\n", tried, reached)
}

// devices makes device nodes (TYPE:MAJOR:MINOR, TYPE b or c) in each of dirs and opens them
// read-only; it reports "mknod DIR SPEC" and, when that worked, "open DIR SPEC".
func devices(dirs, specs []string) {
	for _, dir := range dirs {
		for i, s := range specs {
			f := strings.Split(s, ":")
			maj, _ := strconv.Atoi(f[1])
			min, _ := strconv.Atoi(f[2])
			mode := uint32(unix.S_IFCHR)
			if f[0] == "b" {
				mode = unix.S_IFBLK
			}
			p := fmt.Sprintf("%s/escape-dev%d", dir, i)
			os.Remove(p)
			if err := unix.Mknod(p, mode|0o600, int(unix.Mkdev(uint32(maj), uint32(min)))); err != nil {
				report("mknod "+dir+" "+s, err)
				continue
			}
			report("open "+dir+" "+s, openNode(p))
			os.Remove(p)
		}
	}
}

// openNode opens a device node read-only and non-blocking, and closes it.
func openNode(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// keyring tries the kernel keyring calls: keyctl (the user keyring's id), add_key (to this
// process's own keyring, which goes with it) and request_key (of a key that does not exist,
// without callout info, so that no upcall runs on the host). On x86-64 it also tries keyctl by
// its x32 number (the x86-64 number with __X32_SYSCALL_BIT), which a 64-bit process may use.
func keyring() {
	id, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_USER_KEYRING, false)
	fmt.Printf("user keyring: %d\n", id)
	report("keyctl", err)
	_, err = unix.AddKey("user", "isorun-escape", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
	report("add_key", err)
	typ, _ := unix.BytePtrFromString("user")
	desc, _ := unix.BytePtrFromString("isorun-escape-none")
	_, _, errno := unix.Syscall6(unix.SYS_REQUEST_KEY, uintptr(unsafe.Pointer(typ)), uintptr(unsafe.Pointer(desc)), 0, 0, 0, 0)
	report("request_key", errnoErr(errno))
	if runtime.GOARCH == "amd64" {
		const x32Keyctl = 0x40000000 | 250
		_, _, errno = unix.Syscall(x32Keyctl, unix.KEYCTL_GET_KEYRING_ID, uintptr(0xffffffff&unix.KEY_SPEC_USER_KEYRING), 0)
		report("keyctl x32", errnoErr(errno))
	}
}

// pty opens a pseudo-terminal pair through /dev/ptmx, as a terminal program would: /dev/ptmx
// and /dev/pts must work in a read-only /dev.
func pty() {
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		report("open /dev/ptmx", err)
		return
	}
	defer unix.Close(m)
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		report("unlockpt", err)
		return
	}
	n, err := unix.IoctlGetUint32(m, unix.TIOCGPTN)
	if err != nil {
		report("ptsname", err)
		return
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	s, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err == nil {
		_, err = unix.Write(s, []byte("x"))
		unix.Close(s)
	}
	report("pty "+name, err)
}

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// mounts tries the syscalls that change mounts or namespaces.
func mounts() {
	os.MkdirAll("/tmp/m", 0o755)
	os.MkdirAll("/tmp/old", 0o755)
	report("mount tmpfs", unix.Mount("none", "/tmp/m", "tmpfs", 0, ""))
	report("bind mount /", unix.Mount("/", "/tmp/m", "", unix.MS_BIND, ""))
	report("remount /proc/sys rw", unix.Mount("", "/proc/sys", "", unix.MS_REMOUNT|unix.MS_BIND, ""))
	report("umount /proc", unix.Unmount("/proc", unix.MNT_DETACH))
	report("umount /proc/keys", unix.Unmount("/proc/keys", 0))
	report("umount /dev", unix.Unmount("/dev", unix.MNT_DETACH))
	report("pivot_root", unix.PivotRoot("/tmp", "/tmp/old"))
	_, err := unix.Fsopen("tmpfs", 0)
	report("fsopen", err)
	_, err = unix.OpenTree(unix.AT_FDCWD, "/", unix.OPEN_TREE_CLONE)
	report("open_tree clone", err)
	report("unshare mount namespace", unix.Unshare(unix.CLONE_NEWNS))
	fd, err := unix.Open("/proc/1/ns/mnt", unix.O_RDONLY, 0)
	if err == nil {
		err = unix.Setns(fd, unix.CLONE_NEWNS)
	}
	report("setns to pid 1's mount namespace", err)
}

// module tries to load a kernel module (any bytes: the permission check comes first).
func module() {
	f, err := os.Open("/proc/self/exe")
	if err == nil {
		err = unix.FinitModule(int(f.Fd()), "", 0)
	}
	report("finit_module", err)
	report("init_module", unix.InitModule([]byte("\x7fELF not a module"), ""))
	report("delete_module", unix.DeleteModule("ext4", 0))
}

// ptrace tries to attach to pid and to read its memory.
func ptrace(pidArg string) {
	pid, _ := strconv.Atoi(pidArg)
	err := unix.PtraceAttach(pid)
	if err == nil {
		unix.PtraceDetach(pid)
	}
	report("ptrace attach", err)
	buf := make([]byte, 8)
	local := []unix.Iovec{{Base: &buf[0], Len: 8}}
	remote := []unix.RemoteIovec{{Base: 0x400000, Len: 8}}
	_, err = unix.ProcessVMReadv(pid, local, remote, 0)
	report("process_vm_readv", err)
	_, err = os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	report("read environ", err)
	_, err = os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
	report("readlink root", err)
}

// handle is "shocker": open_by_handle_at with a made-up handle of inode 2 (the root directory
// of an ext2/3/4 filesystem) on the filesystem of dir (a volume, so a host filesystem). With
// CAP_DAC_READ_SEARCH it opens that filesystem's root, wherever the container's mounts end.
func handle(dir string) {
	mfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		report("open "+dir, err)
		return
	}
	var ino = struct {
		ino, gen uint32
	}{2, 0}
	h := unix.NewFileHandle(1, unsafe.Slice((*byte)(unsafe.Pointer(&ino)), 8)) // FILEID_INO32_GEN
	fd, err := unix.OpenByHandleAt(mfd, h, unix.O_RDONLY)
	if err == nil {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/self/fd/%d", fd))
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		fmt.Printf("opened by handle: %s\n", strings.Join(names, " "))
	}
	report("open_by_handle_at", err)
}
