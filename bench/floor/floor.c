// floor: what the kernel alone charges for the container isorun makes, without isorun. A static
// C program (no runtime, the smallest process there can be) that, N times: clones a child in new
// mount, pid, uts, ipc and net namespaces; in it makes "/" a slave, mounts a tmpfs for the upper
// layer, the overlay (the same options as isorun) and a /proc, pivot_roots into the overlay and
// detaches the old root, vforks and execs /bin/true there, waits for it; the parent waits for
// the child. No control channel and no diff. It prints one line per lifecycle, in nanoseconds.
//
// Options, before N, add what the other rows of bench/peers need:
//
//	-full     the rest of the setup issue 4 asks of a container, as isorun does it: a /dev tmpfs
//	          with null, zero, full, random, urandom and tty, the fd links, a devpts and a
//	          /dev/shm; a read-only sysfs; the twelve masked and five read-only /proc and /sys
//	          paths (isolate/config.go); loopback up; a hostname.
//	-confine  isorun's confinement of the command on top: its own session, no_new_privs,
//	          Docker's capability set, the keyring seccomp filter (isolate/init_linux.c).
//	-ahead    set up ahead, as isorun's parked containers are: the next container is cloned and
//	          set up while the current one runs. A lifecycle is then: start the next one's setup,
//	          tell the current one to run /bin/true, wait for its word, kill it, reap it.
//
// bench/peers builds and runs it (the "kernel floor" rows); by hand:
//
//	cc -O2 -static -o /tmp/floor bench/floor/floor.c && sudo /tmp/floor -full 100 LOWER SCRATCHDIR
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *lower, *scratch;
static int full, confine, ahead;
static int go_fd = -1, done_fd = -1; // -ahead: the child waits on go_fd, reports on done_fd

static void die(const char *what) {
	perror(what);
	_exit(1);
}

// The same lists as isolate/config.go.
static const char *masked[] = {"/proc/acpi",        "/proc/asound",  "/proc/interrupts", "/proc/kcore",
			       "/proc/keys",        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
			       "/proc/sched_debug", "/proc/scsi",    "/sys/firmware",    "/sys/devices/virtual/powercap"};
static const char *readonly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};

// The keyring filter of isolate/init_linux.c, for x86-64 only: the cost of installing a filter
// of this size, not its coverage, is what is measured.
static struct sock_filter filter[] = {
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 248, 0, 1),
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 249, 0, 1),
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 250, 0, 1),
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
};
static const int kept_caps[] = {CAP_CHOWN,      CAP_DAC_OVERRIDE, CAP_FOWNER,     CAP_FSETID,
				CAP_KILL,       CAP_SETGID,       CAP_SETUID,     CAP_SETPCAP,
				CAP_NET_BIND_SERVICE, CAP_NET_RAW, CAP_SYS_CHROOT, CAP_MKNOD,
				CAP_AUDIT_WRITE, CAP_SETFCAP};

static int kept(int c) {
	for (size_t i = 0; i < sizeof kept_caps / sizeof kept_caps[0]; i++)
		if (kept_caps[i] == c) return 1;
	return 0;
}

static int run_true(void *arg) {
	(void)arg;
	char *argv[] = {"true", NULL}, *envp[] = {"PATH=/bin", NULL};
	if (confine) {
		setsid();
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs");
		for (int c = 0; c <= CAP_LAST_CAP; c++)
			if (!kept(c) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) die("drop a capability");
		struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
		struct __user_cap_data_struct d[2];
		memset(d, 0, sizeof d);
		for (size_t i = 0; i < sizeof kept_caps / sizeof kept_caps[0]; i++) {
			int c = kept_caps[i];
			d[c / 32].effective |= 1u << (c % 32);
			d[c / 32].permitted |= 1u << (c % 32);
			d[c / 32].inheritable |= 1u << (c % 32);
		}
		if (syscall(SYS_capset, &h, d) < 0) die("capset");
		struct sock_fprog prog = {sizeof filter / sizeof filter[0], filter};
		if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0) die("seccomp");
	}
	execve("/bin/true", argv, envp);
	_exit(127);
}

static void mount_at(const char *src, const char *root, const char *dir, const char *type, unsigned long flags,
		     const char *opts) {
	char p[4096];
	snprintf(p, sizeof p, "%s%s", root, dir);
	if (mkdir(p, 0755) < 0 && errno != EEXIST) die(p);
	if (mount(src, p, type, flags, opts) < 0) die(p);
}

// make_dev fills the /dev tmpfs at dir as isolate's make_dev does.
static void make_dev(const char *dir) {
	int dev = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dev < 0) die("open /dev");
	static const struct {
		const char *name;
		int major, minor;
	} nodes[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
	for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++)
		if (mknodat(dev, nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) < 0 ||
		    fchmodat(dev, nodes[i].name, 0666, 0) < 0)
			die("mknod");
	static const char *links[][2] = {{"/proc/self/fd", "fd"},     {"/proc/self/fd/0", "stdin"},
					 {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
					 {"pts/ptmx", "ptmx"},          {"/proc/kcore", "core"}};
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
		if (symlinkat(links[i][0], dev, links[i][1]) < 0) die("symlink");
	if (mkdirat(dev, "pts", 0755) < 0 || mkdirat(dev, "shm", 01777) < 0) die("mkdir /dev/pts, /dev/shm");
	close(dev);
}

static void finish_setup(void) {
	for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++) {
		struct stat st;
		if (lstat(masked[i], &st) < 0) continue;
		int r = S_ISDIR(st.st_mode) ? mount("tmpfs", masked[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
					    : mount("/dev/null", masked[i], NULL, MS_BIND, NULL);
		if (r < 0) die(masked[i]);
	}
	for (size_t i = 0; i < sizeof readonly / sizeof readonly[0]; i++) {
		if (mount(readonly[i], readonly[i], NULL, MS_BIND | MS_REC, NULL) < 0) {
			if (errno == ENOENT) continue;
			die(readonly[i]);
		}
		if (mount(readonly[i], readonly[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, NULL) < 0) die(readonly[i]);
	}
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0) die("lo");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) die("lo up");
	close(s);
	if (sethostname("floor", 5) < 0) die("sethostname");
}

static char spawn_stack[1 << 16] __attribute__((aligned(16)));

static int child(void *arg) {
	(void)arg;
	char upper[4096], work[4096], merged[4096], opts[16384], p[8192];
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) die("make / a slave");
	if (mount("tmpfs", scratch, "tmpfs", 0, "mode=0755") < 0) die("mount the scratch tmpfs");
	snprintf(upper, sizeof upper, "%s/upper", scratch);
	snprintf(work, sizeof work, "%s/work", scratch);
	snprintf(merged, sizeof merged, "%s/merged", scratch);
	if (mkdir(upper, 0755) < 0 || mkdir(work, 0755) < 0 || mkdir(merged, 0755) < 0) die("mkdir");
	snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s,index=off,metacopy=off,redirect_dir=off", lower,
		 upper, work);
	if (mount("overlay", merged, "overlay", 0, opts) < 0) die("mount the overlay");
	mount_at("proc", merged, "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	if (full) {
		mount_at("tmpfs", merged, "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=65536k");
		snprintf(p, sizeof p, "%s/dev", merged);
		make_dev(p);
		mount_at("devpts", merged, "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5");
		mount_at("tmpfs", merged, "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
		mount_at("sysfs", merged, "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	}
	if (chdir(merged) < 0) die("chdir");
	if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root");
	if (umount2(".", MNT_DETACH) < 0) die("detach the old root");
	if (chdir("/") < 0) die("chdir /");
	if (full) finish_setup();
	char c;
	if (ahead && read(go_fd, &c, 1) != 1) _exit(1);
	pid_t pid = clone(run_true, spawn_stack + sizeof spawn_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, NULL);
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) < 0 || st != 0) die("run /bin/true");
	if (ahead) {
		// Report, and live on as an init does until it is killed.
		if (write(done_fd, "", 1) != 1) _exit(1);
		for (;;) pause();
	}
	return 0;
}

static char stack[1 << 16] __attribute__((aligned(16)));
static const unsigned long ns = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET;

static long long now(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

struct prepared {
	pid_t pid;
	int go, done;
};

// prepare clones a container that sets itself up and waits for the word to run /bin/true.
static struct prepared prepare(void) {
	int g[2], d[2];
	if (pipe2(g, O_CLOEXEC) < 0 || pipe2(d, O_CLOEXEC) < 0) die("pipe");
	go_fd = g[0];
	done_fd = d[1];
	// The child gets a copy of our memory, the stack included: one stack serves every clone.
	pid_t pid = clone(child, stack + sizeof stack, ns | SIGCHLD, NULL);
	if (pid < 0) die("clone");
	close(g[0]);
	close(d[1]);
	return (struct prepared){pid, g[1], d[0]};
}

int main(int argc, char **argv) {
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-full")) full = 1;
		else if (!strcmp(argv[i], "-confine")) confine = 1;
		else if (!strcmp(argv[i], "-ahead")) ahead = 1;
		else break;
	}
	if (argc - i != 3) {
		fprintf(stderr, "usage: floor [-full] [-confine] [-ahead] N LOWER SCRATCHDIR\n");
		return 2;
	}
	int n = atoi(argv[i]);
	lower = argv[i + 1];
	scratch = argv[i + 2];
	struct prepared next = {-1, -1, -1};
	if (ahead) next = prepare();
	for (int k = 0; k < n; k++) {
		long long t0 = now();
		int st;
		if (ahead) {
			struct prepared cur = next;
			if (k + 1 < n) next = prepare();
			char c = 1;
			if (write(cur.go, &c, 1) != 1 || read(cur.done, &c, 1) != 1) {
				fprintf(stderr, "floor: lifecycle %d: the container died\n", k);
				return 1;
			}
			kill(cur.pid, SIGKILL);
			if (waitpid(cur.pid, &st, 0) < 0) die("waitpid");
			close(cur.go);
			close(cur.done);
		} else {
			pid_t pid = clone(child, stack + sizeof stack, ns | SIGCHLD, NULL);
			if (pid < 0) die("clone");
			if (waitpid(pid, &st, 0) < 0 || st != 0) {
				fprintf(stderr, "floor: lifecycle %d failed (status %#x)\n", k, st);
				return 1;
			}
		}
		printf("%lld\n", now() - t0);
	}
	return 0;
}
