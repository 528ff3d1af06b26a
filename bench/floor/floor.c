// floor: what the kernel alone charges for the container isorun makes, without isorun. A static
// C program (no runtime, the smallest process there can be) that, N times: clones a child in new
// mount, pid, uts, ipc and net namespaces; in it makes "/" a slave, mounts a tmpfs for the upper
// layer, the overlay (the same options as isorun) and a /proc, pivot_roots into the overlay and
// detaches the old root, vforks and execs /bin/true there, waits for it; the parent waits for
// the child. No /dev, /sys, masks, loopback, capabilities or seccomp, no control channel, no diff.
// It prints one line per lifecycle, in nanoseconds. bench/peers builds and runs it (the "kernel
// floor" row); by hand:
//
//	cc -O2 -static -o /tmp/floor bench/floor/floor.c && sudo /tmp/floor 100 LOWER SCRATCHDIR
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *lower, *scratch;

static void die(const char *what) {
	perror(what);
	_exit(1);
}

static int child(void *arg) {
	(void)arg;
	char upper[4096], work[4096], merged[4096], proc[4096], opts[16384];
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) die("make / a slave");
	if (mount("tmpfs", scratch, "tmpfs", 0, "mode=0755") < 0) die("mount the scratch tmpfs");
	snprintf(upper, sizeof upper, "%s/upper", scratch);
	snprintf(work, sizeof work, "%s/work", scratch);
	snprintf(merged, sizeof merged, "%s/merged", scratch);
	snprintf(proc, sizeof proc, "%s/merged/proc", scratch);
	if (mkdir(upper, 0755) < 0 || mkdir(work, 0755) < 0 || mkdir(merged, 0755) < 0) die("mkdir");
	snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s,index=off,metacopy=off,redirect_dir=off", lower,
		 upper, work);
	if (mount("overlay", merged, "overlay", 0, opts) < 0) die("mount the overlay");
	if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) die("mount /proc");
	if (chdir(merged) < 0) die("chdir");
	if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root");
	if (umount2(".", MNT_DETACH) < 0) die("detach the old root");
	if (chdir("/") < 0) die("chdir /");
	char *argv[] = {"true", NULL}, *envp[] = {"PATH=/bin", NULL};
	pid_t pid = vfork();
	if (pid == 0) {
		execve("/bin/true", argv, envp);
		_exit(127);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) < 0 || st != 0) die("run /bin/true");
	return 0;
}

static char stack[1 << 16] __attribute__((aligned(16)));

int main(int argc, char **argv) {
	if (argc != 4) {
		fprintf(stderr, "usage: floor N LOWER SCRATCHDIR\n");
		return 2;
	}
	int n = atoi(argv[1]);
	lower = argv[2];
	scratch = argv[3];
	for (int i = 0; i < n; i++) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		pid_t pid = clone(child, stack + sizeof stack,
				  CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | SIGCHLD, NULL);
		if (pid < 0) die("clone");
		int st;
		if (waitpid(pid, &st, 0) < 0 || st != 0) {
			fprintf(stderr, "floor: lifecycle %d failed (status %#x)\n", i, st);
			return 1;
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		printf("%lld\n", (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
	}
	return 0;
}
