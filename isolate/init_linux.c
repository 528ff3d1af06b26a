//go:build linux && cgo

// The fast path of package isolate, in C because neither process below may start the Go runtime:
//
//   zygote: one per parent process, exec'd once from the parent's own binary. It forks a container
//           init per request (clone3 with the new namespaces), so a container costs a fork of a tiny
//           process instead of an exec (an exec is ~1.5 ms on a VM; a fork of the zygote ~0.2 ms).
//   init:   pid 1 of the container. Runs the parent's setup program (mounts, pivot_root, ...), then
//           serves exec/kill requests on its control socket, reaps every child, and kills the whole
//           container when the control socket closes (the parent died or closed it).
//
// A constructor runs before main (and before the Go runtime) in any binary that links this package
// and turns the process into one of the two when the parent asked for it in the environment. The wire
// format (NUL-terminated tokens on a SOCK_SEQPACKET socket, fds by SCM_RIGHTS) is described in
// proto.go; the Go fallback in init_linux.go implements the same program.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <stddef.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#if defined(ISORUN_STANDALONE) && defined(__x86_64__)
#include <elf.h>
#include <link.h>
#include <sys/auxv.h>
// The static zygote's inits share its memory (see "inits that share the zygote's memory").
#define VM_INITS 1
#endif

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_pivot_root
#define SYS_pivot_root 155
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

#define OPEN_TREE_CLONE_ 1
#define OPEN_TREE_CLOEXEC_ O_CLOEXEC
#define AT_RECURSIVE_ 0x8000
#define MOVE_MOUNT_F_EMPTY_PATH_ 0x00000004
#define MOVE_MOUNT_T_EMPTY_PATH_ 0x00000040
#define FSOPEN_CLOEXEC_ 1
#define FSCONFIG_SET_FLAG_ 0
#define FSCONFIG_SET_STRING_ 1
#define FSCONFIG_CMD_CREATE_ 6
#define FSMOUNT_CLOEXEC_ 1
#define MOUNT_ATTR_RDONLY_ 0x1
#define MOUNT_ATTR_NOSUID_ 0x2
#define MOUNT_ATTR_NODEV_ 0x4
#define MOUNT_ATTR_NOEXEC_ 0x8
#define RESOLVE_NO_MAGICLINKS_ 0x02
#define RESOLVE_IN_ROOT_ 0x10
#define CLONE_PIDFD_ 0x1000
#define CLONE_INTO_CGROUP_ 0x200000000ULL

// Flags of an exec request; keep in sync with proto.go.
#define EXEC_STDIN 1
#define EXEC_STDOUT 2
#define EXEC_STDERR 4
#define EXEC_TTY 8
#define EXEC_PRIVILEGED 16
#define EXEC_QUIET 32 // no "started": the parent waits for the exit (Run)

#define MAXFDS 64
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct open_how_ {
	uint64_t flags, mode, resolve;
};
struct mount_attr_ {
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};
struct clone_args_ {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
	    set_tid_size, cgroup;
};

static int fsopen_(const char *name, unsigned flags) { return syscall(SYS_fsopen, name, flags); }
static int fsconfig_(int fd, unsigned cmd, const char *key, const void *val, int aux) {
	return syscall(SYS_fsconfig, fd, cmd, key, val, aux);
}
static int fsmount_(int fd, unsigned flags, unsigned attrs) { return syscall(SYS_fsmount, fd, flags, attrs); }
static int move_mount_(int from, const char *fp, int to, const char *tp, unsigned flags) {
	return syscall(SYS_move_mount, from, fp, to, tp, flags);
}
static int open_tree_(int dfd, const char *path, unsigned flags) { return syscall(SYS_open_tree, dfd, path, flags); }
// openat2_ retries EAGAIN: with RESOLVE_IN_ROOT, a ".." in the path (an image symlink like
// "../../tmp") fails so whenever a rename or mount anywhere on the system raced the lookup, which
// on a busy host (other tests mounting) is often. openat2(2) says to retry.
static int openat2_(int dfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
	struct open_how_ how = {flags, mode, resolve};
	int fd, tries = 0;
	do fd = syscall(SYS_openat2, dfd, path, &how, sizeof how);
	while (fd < 0 && errno == EAGAIN && ++tries < 1000);
	return fd;
}

// ---- memory ---------------------------------------------------------------------------------------
//
// An init of the static zygote shares the zygote's memory (fork_init), and so its heap: it may not
// use malloc, which runs unlocked in a single-threaded process. Each such init gets an arena of
// its own instead, in its slot, which it empties before each request it serves; allocations
// outlive no request, and the jobs table has a place of its own in the slot (grow_jobs).
// Nothing is mapped elsewhere: what an init leaves in the zygote's memory when it dies is its
// slot, which the next init gets. In any other process these are malloc's.
//
// Every global an init writes is per init (PER_INIT, thread-local: such an init gets a copy of
// the zygote's thread-local block as its own).

#define PER_INIT __thread

static PER_INIT char *arena, *arena_top, *arena_end; // arena == NULL: use malloc
#define ARENA_HDR 16 // each allocation's size (header included), for xrealloc

// xmalloc fails (NULL, ENOMEM) when the arena is full: it holds megabytes, and one request
// (a datagram: the socket's buffer is its limit) needs kilobytes.
static void *xmalloc(size_t n) {
	if (!arena) return malloc(n);
	size_t need = (n + ARENA_HDR + 15) & ~(size_t)15;
	if (n > SIZE_MAX / 2 || (size_t)(arena_end - arena_top) < need) {
		errno = ENOMEM;
		return NULL;
	}
	char *p = arena_top;
	arena_top += need;
	*(size_t *)p = need;
	return p + ARENA_HDR;
}

static void *xcalloc(size_t k, size_t n) {
	if (!arena) return calloc(k, n);
	if (n && k > SIZE_MAX / n) return NULL;
	void *p = xmalloc(k * n);
	if (p) memset(p, 0, k * n);
	return p;
}

static void *xrealloc(void *p, size_t n) {
	if (!arena) return realloc(p, n);
	if (!p) return xmalloc(n);
	size_t old = *(size_t *)((char *)p - ARENA_HDR) - ARENA_HDR;
	void *q = xmalloc(n);
	if (q) memcpy(q, p, old < n ? old : n);
	return q;
}

static void xfree(void *p) {
	if (!arena) free(p);
}

static char *xstrdup(const char *s) {
	size_t l = strlen(s) + 1;
	char *p = xmalloc(l);
	if (p) memcpy(p, s, l);
	return p;
}

// arena_reset frees everything allocated since the arena was set up or last reset. What a large
// request touched beyond the first MiB goes back to the kernel (the slot outlives the init).
#define ARENA_KEEP (1UL << 20)
static void arena_reset(void) {
	if ((size_t)(arena_top - arena) > ARENA_KEEP) madvise(arena + ARENA_KEEP, arena_top - arena - ARENA_KEEP, MADV_DONTNEED);
	arena_top = arena;
}

// ---- messages -------------------------------------------------------------------------------------

struct msg {
	char *buf;
	size_t len, off;
	int fds[MAXFDS];
	int nfds;
};

// recv_msg reads one datagram and its fds. It returns 0 on EOF, -1 on error, 1 on success.
static int recv_msg(int sock, struct msg *m) {
	memset(m, 0, sizeof *m);
	ssize_t n;
	for (;;) {
		n = recv(sock, NULL, 0, MSG_PEEK | MSG_TRUNC);
		if (n < 0 && errno == EINTR) continue;
		break;
	}
	if (n <= 0) return n == 0 ? 0 : -1;
	m->buf = xmalloc(n + 1);
	if (!m->buf) return -1;
	char cbuf[CMSG_SPACE(MAXFDS * sizeof(int))];
	struct iovec iov = {m->buf, n};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
	do n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n <= 0) return n == 0 ? 0 : -1;
	m->buf[n] = 0;
	m->len = n;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (int i = 0; i < k && m->nfds < MAXFDS; i++) m->fds[m->nfds++] = ((int *)CMSG_DATA(c))[i];
		}
	}
	return 1;
}

static void free_msg(struct msg *m) {
	xfree(m->buf);
	m->buf = NULL;
}

// tok returns the next NUL-terminated token, or NULL at the end of the message.
static const char *tok(struct msg *m) {
	if (m->off >= m->len) return NULL;
	const char *s = m->buf + m->off;
	size_t l = strnlen(s, m->len - m->off);
	m->off += l + 1;
	return s;
}

static long tokn(struct msg *m) {
	const char *s = tok(m);
	return s ? strtol(s, NULL, 10) : -1;
}

// A reply under construction. Its buffer grows on the heap as needed: replies are a few bytes,
// and a fixed 64 KiB one on the stack cost a fresh init (and the zygote, after each fork made its
// stack copy-on-write) a page fault per 4 KiB it zeroed.
#define OUT_MAX 65536 // the parent's read buffer
struct out {
	char *buf;
	size_t len, cap;
	int fds[MAXFDS];
	int nfds;
};

static void put(struct out *o, const char *s) {
	size_t l = strlen(s) + 1;
	if (o->len + l > OUT_MAX) return;
	if (o->len + l > o->cap) {
		size_t c = o->cap ? o->cap : 256;
		while (c < o->len + l) c *= 2;
		char *b = xrealloc(o->buf, c);
		if (!b) return;
		o->buf = b;
		o->cap = c;
	}
	memcpy(o->buf + o->len, s, l);
	o->len += l;
}

static void putn(struct out *o, long long n) {
	char b[32];
	snprintf(b, sizeof b, "%lld", n);
	put(o, b);
}

// send_out sends the reply and frees its buffer (its fds stay the caller's to close).
static int send_out(int sock, struct out *o) {
	struct iovec iov = {o->buf, o->len};
	char cbuf[CMSG_SPACE(MAXFDS * sizeof(int))];
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (o->nfds > 0) {
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(o->nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(o->nfds * sizeof(int));
		memcpy(CMSG_DATA(c), o->fds, o->nfds * sizeof(int));
	}
	ssize_t n;
	do n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	xfree(o->buf);
	o->buf = NULL;
	o->len = o->cap = 0;
	return n < 0 ? -1 : 0;
}

// ---- init: setup ------------------------------------------------------------------------------------

static PER_INIT int ctrl = 3;
static char *argv0;
static size_t argv0_cap; // the length of argv[0] as exec'd: what name_init may overwrite
static void name_init(const char *name);

// fail reports a setup error to the parent and exits: the parent turns it into
// "isolate: <step>: <strerror>" (plus the detail when there is one).
static void __attribute__((noreturn)) fail(const char *step, int err, const char *detail) {
	struct out *o = xcalloc(1, sizeof *o);
	if (o) {
		put(o, "err");
		put(o, step);
		putn(o, err);
		put(o, detail ? detail : "");
		send_out(ctrl, o);
	}
	_exit(1);
}

static void set_options(int fs, const char *opts, const char *type);

static const char *step(const char *fmt, const char *a, const char *b) {
	char *buf = xmalloc(8192);
	if (!buf) return "(no memory for the step's name)";
	snprintf(buf, 8192, fmt, a, b ? b : "");
	return buf;
}

static PER_INIT int rootfd = -1;    // the overlay's root (a mount fd)
static PER_INIT int scratchfd = -1; // the tmpfs holding upper/ and work/, when the init made it
static PER_INIT int pivoted;
static PER_INIT int parked; // named isorun-ready until the parent's first request
static PER_INIT int last_cap = -1;
static PER_INIT int bset_dropped; // the init dropped the non-default capabilities from its bounding set
static PER_INIT int filtered;     // the keyring filter is on the init, and so on every command it forks
static PER_INIT int zygote_bset;     // the confined zygote dropped the non-default caps from its bounding set
static PER_INIT int zygote_filtered; // the confined zygote has the keyring filter, which its inits inherit
static PER_INIT int groups_denied; // setgroups is denied in our user namespace: commands keep our groups
static PER_INIT int ids_known;     // last_cap and groups_denied are read (read_ids)
static PER_INIT int nodev;     // the nodev op: device nodes on writable mounts cannot be opened
static PER_INIT int devfd = -1; // the container's /dev (a mount fd), made read-only at the end with nodev
static PER_INIT struct out *created;
// What a pooled init did before it had a container to set up (see prewarm).
static PER_INIT int pre_rslave, pre_lo, pre_dev = -1, pre_pts = -1, pre_shm = -1, pre_scratch = -1;
static PER_INIT int pre_userns, pre_dev_rootless; // a pooled rootless init mapped itself; its /dev binds the host's nodes // mount points the setup had to create, reported with "ok"

static void write_file(const char *path, const char *data) {
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) fail(step("open %s", path, NULL), errno, NULL);
	ssize_t n = write(fd, data, strlen(data));
	int err = errno;
	close(fd);
	if (n < 0) fail(step("write %s", path, NULL), err, data);
}

// make_fs creates a detached mount of a new filesystem instance. opts holds key=value pairs
// separated by commas; a key without '=' is a flag.
static int make_fs(const char *type, const char *opts, unsigned attrs, const char *label) {
	int fs = fsopen_(type, FSOPEN_CLOEXEC_);
	if (fs < 0) fail(step("create %s for %s", type, label), errno, NULL);
	if (opts && *opts) set_options(fs, opts, type);
	if (fsconfig_(fs, FSCONFIG_CMD_CREATE_, NULL, NULL, 0) < 0) fail(step("create %s for %s", type, label), errno, NULL);
	int m = fsmount_(fs, FSMOUNT_CLOEXEC_, attrs);
	if (m < 0) fail(step("mount %s for %s", type, label), errno, NULL);
	close(fs);
	return m;
}

// note_created reports a mount point the setup made, name in dir, by the path where it really is:
// the image's symlinks may have led elsewhere than the path asked for (/link/x made /x), and the
// parent leaves these paths out of the container's diff. The overlay is stacked on our "/", so
// the kernel's name for dir is its path in the container.
static void note_created(int dir, const char *name, const char *asked) {
	if (!created) return;
	char fdpath[64], real[PATH_MAX], full[PATH_MAX];
	snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", dir);
	ssize_t n = readlink(fdpath, real, sizeof real - 1);
	if (n <= 0 || real[0] != '/') {
		put(created, asked);
		return;
	}
	real[n] = 0;
	snprintf(full, sizeof full, "%s/%s", strcmp(real, "/") ? real : "", name);
	put(created, full);
}

// open_target opens the mount point path (absolute inside the container) for move_mount,
// resolving every component inside the container's root so that a symlink in the image cannot
// point the mount at the host, and creating what is missing (directories, or an empty file for
// the last component when file is set). Created paths are reported to the parent, which leaves
// them out of the container's diff.
static int open_target(const char *path, int file) {
	uint64_t res = RESOLVE_IN_ROOT_ | RESOLVE_NO_MAGICLINKS_;
	int fd = openat2_(rootfd, path, O_PATH | O_CLOEXEC, 0, res);
	if (fd >= 0) return fd;
	if (errno != ENOENT) fail(step("open mount point %s", path, NULL), errno, NULL);
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s", path);
	size_t n = strlen(p);
	for (size_t i = 1; i <= n; i++) {
		if (i < n && p[i] != '/') continue;
		char c = p[i];
		p[i] = 0;
		int last = i == n;
		int e = openat2_(rootfd, p, O_PATH | O_CLOEXEC, 0, res);
		if (e >= 0) {
			close(e);
		} else if (errno == ENOENT) {
			char *slash = strrchr(p, '/');
			*slash = 0;
			int dir = openat2_(rootfd, *p ? p : "/", O_PATH | O_DIRECTORY | O_CLOEXEC, 0, res);
			*slash = '/';
			if (dir < 0) fail(step("open parent of mount point %s", path, NULL), errno, NULL);
			int r;
			if (last && file) {
				r = openat(dir, slash + 1, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
				if (r >= 0) close(r);
			} else {
				r = mkdirat(dir, slash + 1, 0755);
			}
			int err = errno;
			if (r >= 0) note_created(dir, slash + 1, p);
			close(dir);
			if (r < 0 && err != EEXIST) fail(step("create mount point %s", p, NULL), err, NULL);
		} else {
			fail(step("open mount point %s", p, NULL), errno, NULL);
		}
		p[i] = c;
	}
	fd = openat2_(rootfd, path, O_PATH | O_CLOEXEC, 0, res);
	if (fd < 0) fail(step("open mount point %s", path, NULL), errno, NULL);
	return fd;
}

static void attach(int mnt, const char *target, int file, const char *what) {
	int t = open_target(target, file);
	// An image symlink can lead a target to the root itself ("/link" -> "/../.."); a mount there
	// would sit under the pivot and never be seen. Say so rather than drop it silently.
	struct stat ts, rs;
	if (fstat(t, &ts) == 0 && fstat(rootfd, &rs) == 0 && ts.st_dev == rs.st_dev && ts.st_ino == rs.st_ino)
		fail(step("mount %s on %s", what, target), EINVAL, "the mount point resolves to the container's root");
	if (move_mount_(mnt, "", t, "", MOVE_MOUNT_F_EMPTY_PATH_ | MOVE_MOUNT_T_EMPTY_PATH_) < 0)
		fail(step("mount %s on %s", what, target), errno, NULL);
	close(t);
	close(mnt);
}

// fsconfig refuses string values over 255 bytes: a longer path goes by a descriptor's name.
// Overlay also unescapes backslashes in these values (and older kernels split on ',' and ':'):
// a path holding any of them goes by a descriptor's name too.
static const char *short_path(const char *p, char *buf, size_t n) {
	if (strlen(p) <= 255 && !strpbrk(p, "\\,:")) return p;
	int fd = open(p, O_PATH | O_CLOEXEC);
	if (fd < 0) fail(step("open %s", p, NULL), errno, NULL);
	snprintf(buf, n, "/proc/self/fd/%d", fd);
	return buf;
}

static void set_options(int fs, const char *opts, const char *type) {
	char *copy = xstrdup(opts), *save = NULL;
	if (!copy) fail(step("%s options", type, NULL), ENOMEM, NULL);
	for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		int r;
		if (eq) {
			*eq = 0;
			r = fsconfig_(fs, FSCONFIG_SET_STRING_, kv, eq + 1, 0);
			*eq = '=';
		} else {
			r = fsconfig_(fs, FSCONFIG_SET_FLAG_, kv, NULL, 0);
		}
		if (r < 0) fail(step("%s option %s", type, kv), errno, NULL);
	}
	xfree(copy);
}

// overlay_fs configures an overlay context; with plus unset (kernels before 6.8, without
// "lowerdir+") the lowers go as one lowerdir string of descriptor names, which need no escaping.
static int overlay_fs(long n, const char **lowers, const char *upper, const char *work, const char *opts, int plus) {
	int fs = fsopen_("overlay", FSOPEN_CLOEXEC_);
	if (fs < 0) fail("create overlay", errno, NULL);
	char b[64];
	if (plus) {
		for (long i = 0; i < n; i++)
			if (fsconfig_(fs, FSCONFIG_SET_STRING_, "lowerdir+", short_path(lowers[i], b, sizeof b), 0) < 0) {
				if (errno == EINVAL && i == 0) {
					close(fs);
					return -1;
				}
				fail(step("overlay lowerdir+ %s", lowers[i], NULL), errno, NULL);
			}
	} else {
		size_t cap = n * 32 + 1, len = 0;
		char *all = xcalloc(cap, 1);
		if (!all) fail("overlay lowerdir", ENOMEM, NULL);
		for (long i = 0; i < n; i++) {
			int fd = open(lowers[i], O_PATH | O_CLOEXEC);
			if (fd < 0) fail(step("open lower %s", lowers[i], NULL), errno, NULL);
			len += snprintf(all + len, cap - len, "%s/proc/self/fd/%d", i ? ":" : "", fd);
		}
		if (len > 255)
			fail("overlay lowerdir", E2BIG, "too many lowers for a kernel without lowerdir+ (linux 6.8)");
		if (fsconfig_(fs, FSCONFIG_SET_STRING_, "lowerdir", all, 0) < 0) fail("overlay lowerdir", errno, all);
		xfree(all);
	}
	if (fsconfig_(fs, FSCONFIG_SET_STRING_, "upperdir", short_path(upper, b, sizeof b), 0) < 0)
		fail(step("overlay upperdir %s", upper, NULL), errno, NULL);
	if (fsconfig_(fs, FSCONFIG_SET_STRING_, "workdir", short_path(work, b, sizeof b), 0) < 0)
		fail(step("overlay workdir %s", work, NULL), errno, NULL);
	set_options(fs, opts, "overlay");
	if (fsconfig_(fs, FSCONFIG_CMD_CREATE_, NULL, NULL, 0) < 0) {
		if (plus && errno == EINVAL) {
			// Kernels before 6.5 take any key at fsconfig time and refuse lowerdir+ only here.
			close(fs);
			return -1;
		}
		fail("mount overlay", errno, lowers[0]);
	}
	return fs;
}

static void op_overlay(struct msg *m) {
	long n = tokn(m);
	if (n < 1 || n > 4096) fail("overlay", EINVAL, "bad lower count");
	const char **lowers = xcalloc(n, sizeof *lowers);
	if (!lowers) fail("overlay", ENOMEM, NULL);
	for (long i = 0; i < n; i++) lowers[i] = tok(m);
	const char *upper = tok(m), *work = tok(m), *opts = tok(m);
	if (!opts) fail("overlay", EINVAL, "short message");
	// A missing lower, or a file, is the caller's mistake: name it, rather than leave the kernel's
	// EINVAL for the whole mount (which also sends us to the fallback below, whose message names
	// descriptors, not paths).
	for (long i = 0; i < n; i++) {
		int d = open(lowers[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (d < 0) fail(step("open lower %s", lowers[i], NULL), errno, NULL);
		close(d);
	}
	char up[64], wk[64];
	if (!*upper) {
		if (scratchfd < 0) fail("overlay", EINVAL, "no upper and no scratch");
		snprintf(up, sizeof up, "/proc/self/fd/%d/upper", scratchfd);
		snprintf(wk, sizeof wk, "/proc/self/fd/%d/work", scratchfd);
		upper = up;
		work = wk;
	}
	int fs = overlay_fs(n, lowers, upper, work, opts, 1);
	if (fs < 0) fs = overlay_fs(n, lowers, upper, work, opts, 0);
	rootfd = fsmount_(fs, FSMOUNT_CLOEXEC_, nodev ? MOUNT_ATTR_NODEV_ : 0);
	if (rootfd < 0) fail("mount overlay", errno, NULL);
	close(fs);
	xfree(lowers);
	// Stack the overlay on top of "/" of our (private) mount namespace: "/" is the one directory
	// that always exists, and pivot_root moves us into it next.
	if (move_mount_(rootfd, "", AT_FDCWD, "/", MOVE_MOUNT_F_EMPTY_PATH_) < 0) fail("attach overlay", errno, NULL);
}

static int make_scratch(const char *opts) {
	int fd = make_fs("tmpfs", opts, 0, "the upper layer");
	if (mkdirat(fd, "upper", 0755) < 0 || mkdirat(fd, "work", 0755) < 0) fail("create upper and work", errno, NULL);
	return fd;
}

#define DEFAULT_SCRATCH "mode=0755"

static void op_scratch(struct msg *m) {
	const char *opts = tok(m);
	if (!opts) fail("scratch", EINVAL, "short message");
	if (pre_scratch >= 0 && !strcmp(opts, DEFAULT_SCRATCH)) {
		scratchfd = pre_scratch;
	} else {
		if (pre_scratch >= 0) close(pre_scratch);
		scratchfd = make_scratch(opts);
	}
	pre_scratch = -1;
}

static void op_bind(struct msg *m) {
	const char *src = tok(m), *dst = tok(m), *flags = tok(m);
	if (!flags) fail("bind", EINVAL, "short message");
	int mnt = open_tree_(AT_FDCWD, src, OPEN_TREE_CLONE_ | OPEN_TREE_CLOEXEC_ | AT_RECURSIVE_);
	if (mnt < 0) fail(step("bind %s on %s", src, dst), errno, NULL);
	// Flags are added, never cleared, to the whole tree: those the source's mounts have (locked
	// ones in a user namespace included) stay.
	struct mount_attr_ a = {.attr_set = (strchr(flags, 'r') ? MOUNT_ATTR_RDONLY_ : 0) | (nodev ? MOUNT_ATTR_NODEV_ : 0)};
	if (a.attr_set && syscall(SYS_mount_setattr, mnt, "", AT_EMPTY_PATH | AT_RECURSIVE_, &a, sizeof a) < 0)
		fail(step(strchr(flags, 'r') ? "make volume %s read-only" : "make volume %s nodev", dst, NULL), errno, NULL);
	attach(mnt, dst, strchr(flags, 'f') != NULL, src);
}

static void op_tmpfs(struct msg *m) {
	const char *dst = tok(m), *opts = tok(m);
	if (!opts) fail("tmpfs", EINVAL, "short message");
	attach(make_fs("tmpfs", opts, MOUNT_ATTR_NOSUID_ | MOUNT_ATTR_NODEV_, dst), dst, 0, "tmpfs");
}

#define DEV_ATTRS (MOUNT_ATTR_NOSUID_ | MOUNT_ATTR_NOEXEC_)
#define PTS_OPTS "newinstance,ptmxmode=0666,mode=0620"
#define SHM_OPTS "mode=1777,size=65536k"
#define SHM_ATTRS (MOUNT_ATTR_NOSUID_ | MOUNT_ATTR_NODEV_ | MOUNT_ATTR_NOEXEC_)

// make_dev builds a container's /dev as a detached tmpfs, and its devpts and shm, not yet
// attached anywhere.
static void make_dev(int rootless, int *dev_, int *pts_, int *shm_) {
	int dev = make_fs("tmpfs", "mode=0755,size=65536k", DEV_ATTRS, "/dev");
	static const struct {
		const char *name;
		int major, minor;
	} nodes[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
	for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
		if (rootless) {
			// mknod is refused in a user namespace: bind the host's node onto an empty file.
			int f = openat(dev, nodes[i].name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
			if (f < 0) fail(step("create /dev/%s", nodes[i].name, NULL), errno, NULL);
			close(f);
			char host[64];
			snprintf(host, sizeof host, "/dev/%s", nodes[i].name);
			int t = open_tree_(AT_FDCWD, host, OPEN_TREE_CLONE_ | OPEN_TREE_CLOEXEC_);
			if (t < 0) fail(step("bind %s", host, NULL), errno, NULL);
			if (move_mount_(t, "", dev, nodes[i].name, MOVE_MOUNT_F_EMPTY_PATH_) < 0)
				fail(step("bind %s", host, NULL), errno, NULL);
			close(t);
		} else {
			if (mknodat(dev, nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) < 0 ||
			    fchmodat(dev, nodes[i].name, 0666, 0) < 0)
				fail(step("mknod /dev/%s", nodes[i].name, NULL), errno, NULL);
		}
	}
	static const char *links[][2] = {{"/proc/self/fd", "fd"},     {"/proc/self/fd/0", "stdin"},
					 {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
					 {"pts/ptmx", "ptmx"},          {"/proc/kcore", "core"}};
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
		if (symlinkat(links[i][0], dev, links[i][1]) < 0) fail(step("symlink /dev/%s", links[i][1], NULL), errno, NULL);
	if (mkdirat(dev, "pts", 0755) < 0 || mkdirat(dev, "shm", 01777) < 0 || fchmodat(dev, "shm", 01777, 0) < 0)
		fail("create /dev/pts and /dev/shm", errno, NULL);
	*dev_ = dev;
	// gid 5 (tty) is not mapped in a user namespace.
	*pts_ = make_fs("devpts", rootless ? PTS_OPTS : PTS_OPTS ",gid=5", DEV_ATTRS, "/dev/pts");
	*shm_ = make_fs("tmpfs", SHM_OPTS, SHM_ATTRS, "/dev/shm");
}

static void op_dev(struct msg *m) {
	const char *dst = tok(m), *rootless = tok(m);
	if (!rootless) fail("dev", EINVAL, "short message");
	int dev = pre_dev, pts = pre_pts, shm = pre_shm;
	pre_dev = pre_pts = pre_shm = -1;
	if (dev >= 0 && pre_dev_rootless != (*rootless == '1')) {
		close(dev);
		close(pts);
		close(shm);
		dev = -1;
	}
	if (dev < 0) make_dev(*rootless == '1', &dev, &pts, &shm);
	int t = open_target(dst, 0);
	if (move_mount_(dev, "", t, "", MOVE_MOUNT_F_EMPTY_PATH_ | MOVE_MOUNT_T_EMPTY_PATH_) < 0)
		fail(step("mount tmpfs on %s", dst, NULL), errno, NULL);
	close(t);
	// /dev is now attached: its pts and shm resolve through it.
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/pts", dst);
	attach(pts, p, 0, "devpts");
	snprintf(p, sizeof p, "%s/shm", dst);
	attach(shm, p, 0, "shm");
	if (devfd >= 0) close(devfd);
	devfd = dev;
}

static void op_pivot(void) {
	int old = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (old < 0) fail("open old root", errno, NULL);
	if (fchdir(rootfd) < 0) fail("chdir into the new root", errno, NULL);
	// pivot_root(".", ".") stacks the old root on top of the new one, so no put_old directory has
	// to exist in (and land in the upper layer of) the image.
	if (syscall(SYS_pivot_root, ".", ".") < 0) fail("pivot_root", errno, NULL);
	// The old root is stacked on "/" now: detach it before anything can walk into it (a ".." from
	// the root fd the parent reads files through would). It is already a slave (rslave ran
	// first), so detaching it cannot propagate an unmount to the host.
	if (fchdir(old) < 0) fail("chdir into the old root", errno, NULL);
	// The scratch tmpfs (the upper layer's) is a detached mount: the last close of its mount
	// descriptor, in the parent at Release, would unmount it, and an unmount waits for an
	// expedited RCU grace period (a few hundred microseconds when the other CPUs are busy).
	// Attached inside the old root, it is detached with it, in the grace period that detach
	// waits for anyway; the descriptors keep it readable, and closing them only drops
	// references. Not on the old root itself: "." would then name the scratch, not the old
	// root. /proc is there (the setup read /proc/self/fd). If this fails, nothing is lost but
	// the grace period.
	if (scratchfd >= 0) move_mount_(scratchfd, "", old, "proc", MOVE_MOUNT_F_EMPTY_PATH_);
	if (umount2(".", MNT_DETACH) < 0) fail("detach the old root", errno, NULL);
	if (chdir("/") < 0) fail("chdir /", errno, NULL);
	close(old);
	pivoted = 1;
}

static void op_mask(struct msg *m) {
	const char *path = tok(m);
	if (!path) fail("mask", EINVAL, "short message");
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT) return;
		fail(step("mask %s", path, NULL), errno, NULL);
	}
	int r = S_ISDIR(st.st_mode) ? mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
				    : mount("/dev/null", path, NULL, MS_BIND, NULL);
	if (r < 0 && errno != ENOENT) fail(step("mask %s", path, NULL), errno, NULL);
}

static void op_ro(struct msg *m) {
	const char *path = tok(m);
	if (!path) fail("ro", EINVAL, "short message");
	if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
		if (errno == ENOENT) return;
		fail(step("make %s read-only", path, NULL), errno, NULL);
	}
	if (mount(path, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, NULL) < 0)
		fail(step("make %s read-only", path, NULL), errno, NULL);
}

static void op_lo(void) {
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) fail("bring up lo", errno, NULL);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) fail("bring up lo", errno, NULL);
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) fail("bring up lo", errno, NULL);
	close(s);
}

// map_ids maps root in our new user namespace to uid and gid outside, the only mapping an
// unprivileged creator may write itself: one line each, setgroups denied first (else gid_map is
// refused). We have every capability in the namespace (we made it and exec'd nothing), and
// become its root.
static void map_ids(const char *uid, const char *gid) {
	char map[64];
	snprintf(map, sizeof map, "0 %s 1\n", uid);
	write_file("/proc/self/uid_map", map);
	write_file("/proc/self/setgroups", "deny");
	groups_denied = 1;
	snprintf(map, sizeof map, "0 %s 1\n", gid);
	write_file("/proc/self/gid_map", map);
	if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) fail("become root in the user namespace", errno, NULL);
}

static char zygote_uid[24], zygote_gid[24]; // the zygote's ids, for a pooled init to map itself

static void op_userns(struct msg *m) {
	const char *uid = tok(m), *gid = tok(m);
	if (!gid) fail("userns", EINVAL, "short message");
	if (pre_userns) {
		// A pooled init mapped itself to the zygote's ids, which are the parent's.
		if (strcmp(uid, zygote_uid) || strcmp(gid, zygote_gid))
			fail("userns", EINVAL, "a prewarmed init is mapped to other ids");
		return;
	}
	map_ids(uid, gid);
}

// in_userns says whether we are in a user namespace other than the initial one (whose uid_map
// maps the whole range onto itself).
static int in_userns(void) {
	char b[128];
	int fd = open("/proc/self/uid_map", O_RDONLY | O_CLOEXEC);
	if (fd < 0) return 0;
	ssize_t n = read(fd, b, sizeof b - 1);
	close(fd);
	if (n <= 0) return 0;
	b[n] = 0;
	unsigned long a, c, l;
	return !(sscanf(b, "%lu %lu %lu", &a, &c, &l) == 3 && a == 0 && c == 0 && l == 4294967295UL);
}

// op_sysfs mounts a sysfs of our net namespace read-only. In a user namespace the kernel may
// refuse it (a host /sys with mounts hiding parts of it is "too revealing" to remount): the
// host's /sys, bound read-only with everything below it, is then the next best thing.
static void op_sysfs(struct msg *m) {
	const char *dst = tok(m);
	if (!dst) fail("sysfs", EINVAL, "short message");
	unsigned attrs = MOUNT_ATTR_NOSUID_ | MOUNT_ATTR_NODEV_ | MOUNT_ATTR_NOEXEC_ | MOUNT_ATTR_RDONLY_;
	int mnt = -1, err = 0;
	int fs = fsopen_("sysfs", FSOPEN_CLOEXEC_);
	if (fs >= 0 && fsconfig_(fs, FSCONFIG_CMD_CREATE_, NULL, NULL, 0) == 0) mnt = fsmount_(fs, FSMOUNT_CLOEXEC_, attrs);
	err = errno;
	if (fs >= 0) close(fs);
	if (mnt < 0 && (err == EPERM || err == EACCES) && in_userns()) {
		mnt = open_tree_(AT_FDCWD, "/sys", OPEN_TREE_CLONE_ | OPEN_TREE_CLOEXEC_ | AT_RECURSIVE_);
		if (mnt < 0) fail("bind the host's /sys", errno, NULL);
		struct mount_attr_ a = {.attr_set = MOUNT_ATTR_RDONLY_ | MOUNT_ATTR_NOSUID_ | MOUNT_ATTR_NODEV_ | MOUNT_ATTR_NOEXEC_};
		if (syscall(SYS_mount_setattr, mnt, "", AT_EMPTY_PATH | AT_RECURSIVE_, &a, sizeof a) < 0)
			fail("make the host's /sys read-only", errno, NULL);
	}
	if (mnt < 0) fail(step("mount sysfs for %s", dst, NULL), err, NULL);
	attach(mnt, dst, 0, "sysfs");
}

static void op_cgroup(struct msg *m) {
	// cgroup v1 (or no clone3): join by writing our pid; there is no command yet, so nothing of
	// the container ever runs outside its cgroup.
	const char *procs = tok(m);
	if (!procs) fail("cgroup", EINVAL, "short message");
	write_file(procs, "0");
}

static void rslave(void) {
	// Before any mount: on systemd hosts "/" is shared, and our mounts would propagate to the
	// host (and pivot_root would fail with EINVAL).
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) fail("make / rslave", errno, NULL);
}

// prewarm does, in an init the zygote forks ahead of demand, the part of every setup that
// depends on nothing the parent will say: the container then costs only what is its own.
static void prewarm(int userns) {
	if (userns) {
		map_ids(zygote_uid, zygote_gid);
		pre_userns = 1;
	}
	rslave();
	pre_rslave = 1;
	op_lo();
	pre_lo = 1;
	make_dev(userns, &pre_dev, &pre_pts, &pre_shm);
	pre_dev_rootless = userns;
	pre_scratch = make_scratch(DEFAULT_SCRATCH);
}

static void setup(void) {
	struct msg m;
	int r = recv_msg(ctrl, &m);
	if (r <= 0) _exit(1);
	const char *verb = tok(&m);
	if (!verb || strcmp(verb, "setup")) fail("setup", EPROTO, verb);
	name_init("isorun-init");
	created = xcalloc(1, sizeof *created);
	if (!created) _exit(1);
	put(created, "ok");
	for (const char *op; (op = tok(&m));) {
		if (!strcmp(op, "parked")) {
			// A container set up ahead of its Start (warm_linux.go): ready, not yet anyone's,
			// until the parent's first request.
			name_init("isorun-ready");
			parked = 1;
		} else if (!strcmp(op, "userns")) op_userns(&m);
		else if (!strcmp(op, "cgroup")) op_cgroup(&m);
		else if (!strcmp(op, "rslave")) {
			if (!pre_rslave) rslave();
		} else if (!strcmp(op, "nodev")) {
			nodev = 1;
		} else if (!strcmp(op, "hostname")) {
			const char *h = tok(&m);
			if (!h || sethostname(h, strlen(h)) < 0) fail("sethostname", h ? errno : EINVAL, h);
		} else if (!strcmp(op, "scratch")) op_scratch(&m);
		else if (!strcmp(op, "overlay")) op_overlay(&m);
		else if (!strcmp(op, "bind")) op_bind(&m);
		else if (!strcmp(op, "tmpfs")) op_tmpfs(&m);
		else if (!strcmp(op, "dev")) op_dev(&m);
		else if (!strcmp(op, "proc")) {
			const char *dst = tok(&m);
			if (!dst) fail("proc", EINVAL, "short message");
			attach(make_fs("proc", NULL, MOUNT_ATTR_NOSUID_ | MOUNT_ATTR_NODEV_ | MOUNT_ATTR_NOEXEC_, dst), dst, 0, "proc");
		} else if (!strcmp(op, "sysfs")) op_sysfs(&m);
		else if (!strcmp(op, "pivot")) op_pivot();
		else if (!strcmp(op, "mask")) op_mask(&m);
		else if (!strcmp(op, "ro")) op_ro(&m);
		else if (!strcmp(op, "lo")) {
			if (!pre_lo) op_lo();
		} else fail("setup", EPROTO, op);
	}
	for (int i = 0; i < m.nfds; i++) close(m.fds[i]);
	free_msg(&m);
	if (!pivoted) fail("setup", EPROTO, "no pivot");
	// A privileged container must not have the confinement the confined zygote passed on.
	if (!nodev && (zygote_bset || zygote_filtered))
		fail("setup", EPROTO, "a privileged container from the confined zygote");
	if (devfd >= 0) {
		// Its nodes are made and every mount below it is attached: with nodev, nothing may be
		// added to it (a node made there would open). Not recursive: /dev/pts and /dev/shm,
		// and a rootless container's bound nodes, stay writable.
		struct mount_attr_ a = {.attr_set = MOUNT_ATTR_RDONLY_};
		if (nodev && syscall(SYS_mount_setattr, devfd, "", AT_EMPTY_PATH, &a, sizeof a) < 0)
			fail("make /dev read-only", errno, NULL);
		close(devfd);
		devfd = -1;
	}
	int unused[] = {pre_dev, pre_pts, pre_shm, pre_scratch};
	for (size_t i = 0; i < sizeof unused / sizeof unused[0]; i++)
		if (unused[i] >= 0) close(unused[i]);
	// Our stdio was the host's /dev/null: use the container's own from here on.
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup3(null, 0, 0);
		dup3(null, 1, 0);
		dup3(null, 2, 0);
		close(null);
	}
	// Processes in the container must not ptrace or read the memory of their init.
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (scratchfd >= 0) created->fds[created->nfds++] = scratchfd;
	if (rootfd >= 0) created->fds[created->nfds++] = rootfd;
	if (send_out(ctrl, created) < 0) _exit(1);
	if (scratchfd >= 0) close(scratchfd);
	// rootfd stays: it keeps nothing alive that the mount namespace doesn't.
	xfree(created);
	created = NULL;
}

// ---- init: commands --------------------------------------------------------------------------------

struct job {
	pid_t pid;
	char id[32];
};
static PER_INIT struct job *jobs;
static PER_INIT size_t njobs, capjobs;

// Docker's default capability set: what a command keeps unless the container is privileged.
static const int default_caps[] = {CAP_CHOWN,      CAP_DAC_OVERRIDE, CAP_FOWNER,           CAP_FSETID, CAP_KILL,
				   CAP_SETGID,     CAP_SETUID,       CAP_SETPCAP,          CAP_NET_BIND_SERVICE,
				   CAP_NET_RAW,    CAP_SYS_CHROOT,   CAP_MKNOD,            CAP_AUDIT_WRITE,
				   CAP_SETFCAP};

static int is_default_cap(int c) {
	for (size_t i = 0; i < sizeof default_caps / sizeof default_caps[0]; i++)
		if (default_caps[i] == c) return 1;
	return 0;
}

// drop_bounding_set drops every capability outside Docker's set from the bounding set: 1 if
// each drop succeeded (or the kernel has no such capability).
static int drop_bounding_set(void) {
	for (int c = 0; c <= last_cap; c++)
		if (!is_default_cap(c) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL) return 0;
	return 1;
}

struct spawn {
	const char *dir;
	char **argv, **envp;
	const char *path; // PATH from envp
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	int ngroups;
	int flags;
	int fd[3];
	// written by the child (it shares our memory until exec):
	int err;
	int stage;
	char failed[PATH_MAX];
};

enum { ST_STDIO = 1, ST_CHDIR, ST_CREDS, ST_CAPS, ST_LOOKUP, ST_EXEC, ST_TTY, ST_SECCOMP };

// The seccomp filter of a non-privileged command: add_key, request_key and keyctl fail with EPERM,
// every other system call is allowed. Without a user namespace, root in the container is the
// host's root as far as the kernel's keyrings go (they belong to a uid), so these calls would
// reach the host root's user keyring. The filter knows the ABIs a process on an x86-64 or arm64
// kernel can call the kernel with: x86-64 and its x32 numbers (the same calls, with
// __X32_SYSCALL_BIT), i386 (int 0x80, or a 32-bit binary), arm64 and 32-bit arm; any other
// architecture in seccomp_data is killed. keyringFilter in seccomp_linux.go is the same program
// (TestKeyringFilterSame).
#define X32_BIT 0x40000000u
#define SC_LD(field) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, field))
#define SC_DENY(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM)
// SC_ARCH skips the n instructions of an architecture's block when the call is not of a.
#define SC_ARCH(a, n) SC_LD(arch), BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (a), 0, (n))
#define SC_ALLOW BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
static struct sock_filter keyring_filter[] = {
	// x86-64: add_key 248, request_key 249, keyctl 250; x32: the same | X32_BIT.
	SC_ARCH(AUDIT_ARCH_X86_64, 14),
	SC_LD(nr),
	SC_DENY(248),
	SC_DENY(249),
	SC_DENY(250),
	SC_DENY(X32_BIT | 248),
	SC_DENY(X32_BIT | 249),
	SC_DENY(X32_BIT | 250),
	SC_ALLOW,
	// i386: add_key 286, request_key 287, keyctl 288.
	SC_ARCH(AUDIT_ARCH_I386, 8),
	SC_LD(nr),
	SC_DENY(286),
	SC_DENY(287),
	SC_DENY(288),
	SC_ALLOW,
	// arm64 (asm-generic numbers): add_key 217, request_key 218, keyctl 219.
	SC_ARCH(AUDIT_ARCH_AARCH64, 8),
	SC_LD(nr),
	SC_DENY(217),
	SC_DENY(218),
	SC_DENY(219),
	SC_ALLOW,
	// 32-bit arm (EABI): add_key 309, request_key 310, keyctl 311.
	SC_ARCH(AUDIT_ARCH_ARM, 8),
	SC_LD(nr),
	SC_DENY(309),
	SC_DENY(310),
	SC_DENY(311),
	SC_ALLOW,
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
};

// isorun_keyring_filter gives Go the filter, for the test that it is the Go init's.
struct sock_filter *isorun_keyring_filter(unsigned *n) {
	*n = sizeof keyring_filter / sizeof keyring_filter[0];
	return keyring_filter;
}

// install_keyring_filter installs keyring_filter on the calling thread (which must have
// no_new_privs set, or CAP_SYS_ADMIN in its user namespace, as an init has). On a build for
// another architecture it fails with ENOSYS rather than run the command unfiltered (or kill it:
// its own calls would be of an architecture the filter does not know).
static int install_keyring_filter(void) {
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__arm__)
	struct sock_fprog prog = {sizeof keyring_filter / sizeof keyring_filter[0], keyring_filter};
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
#else
	errno = ENOSYS;
	return -1;
#endif
}

static int spawn_child(void *arg) {
	struct spawn *s = arg;
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setsid(); // its own session and process group: kill reaches what it starts in the background
	// Move the fds out of the way of 0..2 first, then dup into place (CLOEXEC is cleared by dup2).
	int fd[3], null = -1;
	for (int i = 0; i < 3; i++) {
		if (s->fd[i] >= 0) fd[i] = fcntl(s->fd[i], F_DUPFD_CLOEXEC, 10);
		else fd[i] = null = null >= 0 ? null : open("/dev/null", O_RDWR | O_CLOEXEC); // one open serves all three
		if (fd[i] < 0) goto stdio;
	}
	for (int i = 0; i < 3; i++)
		if (dup2(fd[i], i) < 0) goto stdio;
	if ((s->flags & EXEC_TTY) && ioctl(0, TIOCSCTTY, 0) < 0) {
		s->stage = ST_TTY;
		s->err = errno;
		_exit(127);
	}
	if (!(s->flags & EXEC_PRIVILEGED)) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) goto caps;
		if (!bset_dropped && !drop_bounding_set()) goto caps;
	}
	if ((!groups_denied && setgroups(s->ngroups, s->groups) < 0) || setresgid(s->gid, s->gid, s->gid) < 0 ||
	    setresuid(s->uid, s->uid, s->uid) < 0) {
		s->stage = ST_CREDS;
		s->err = errno;
		_exit(127);
	}
	// As the user, as os/exec and runc do: a directory the user may not enter is an error, not a
	// place root quietly puts them.
	if (s->dir && *s->dir && chdir(s->dir) < 0) {
		s->stage = ST_CHDIR;
		s->err = errno;
		snprintf(s->failed, sizeof s->failed, "%s", s->dir);
		_exit(127);
	}
	if (!(s->flags & EXEC_PRIVILEGED) && s->uid == 0) {
		struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
		struct __user_cap_data_struct d[2];
		memset(d, 0, sizeof d);
		for (size_t i = 0; i < sizeof default_caps / sizeof default_caps[0]; i++) {
			int c = default_caps[i];
			d[c / 32].effective |= 1u << (c % 32);
			d[c / 32].permitted |= 1u << (c % 32);
			d[c / 32].inheritable |= 1u << (c % 32);
		}
		if (syscall(SYS_capset, &h, d) < 0) goto caps;
	}
	// Unless the init has it already (see init_main). Last, so that nothing above runs under
	// it; no_new_privs lets us install it without CAP_SYS_ADMIN, which the command no longer has.
	if (!(s->flags & EXEC_PRIVILEGED) && !filtered && install_keyring_filter() < 0) {
		s->stage = ST_SECCOMP;
		s->err = errno;
		snprintf(s->failed, sizeof s->failed, "%s", errno == ENOSYS ? "no filter for this architecture" : "");
		_exit(127);
	}
	const char *name = s->argv[0];
	if (strchr(name, '/')) {
		execve(name, s->argv, s->envp);
		s->stage = ST_EXEC;
		s->err = errno;
		snprintf(s->failed, sizeof s->failed, "%s", name);
		_exit(127);
	}
	// PATH search as execvp does it, but over the command's PATH, not ours.
	int eacces = 0;
	const char *p = s->path;
	char buf[PATH_MAX];
	while (*name) {
		const char *colon = strchr(p, ':');
		size_t dl = colon ? (size_t)(colon - p) : strlen(p);
		if (dl == 0) snprintf(buf, sizeof buf, "%s", name);
		else snprintf(buf, sizeof buf, "%.*s/%s", (int)dl, p, name);
		execve(buf, s->argv, s->envp);
		if (errno == EACCES) {
			eacces = 1;
			snprintf(s->failed, sizeof s->failed, "%s", buf);
		} else if (errno != ENOENT && errno != ENOTDIR) {
			s->stage = ST_EXEC;
			s->err = errno;
			snprintf(s->failed, sizeof s->failed, "%s", buf);
			_exit(127);
		}
		if (!colon) break;
		p = colon + 1;
	}
	s->stage = ST_LOOKUP;
	s->err = eacces ? EACCES : ENOENT;
	if (!eacces) snprintf(s->failed, sizeof s->failed, "%s", name);
	_exit(127);
stdio:
	s->stage = ST_STDIO;
	s->err = errno;
	_exit(127);
caps:
	s->stage = ST_CAPS;
	s->err = errno;
	_exit(127);
}

// The stack a command runs on between its clone and its exec (the init waits meanwhile): this
// one in a process of its own, the init's own in one that shares the zygote's memory.
static char spawn_stack[256 * 1024] __attribute__((aligned(16)));
static PER_INIT char *spawn_top = spawn_stack + sizeof spawn_stack;

// grow_jobs makes room for one more job. The table outlives requests: in an arena's init it is
// the slot's, of a fixed size (SLOT_JOBS: over 100,000 commands running at once).
static int grow_jobs(void) {
	if (njobs < capjobs) return 0;
	if (arena) {
		errno = ENOMEM;
		return -1;
	}
	size_t cap = capjobs ? capjobs * 2 : 16;
	struct job *j = realloc(jobs, cap * sizeof *jobs);
	if (!j) return -1;
	jobs = j;
	capjobs = cap;
	return 0;
}

static void do_exec(struct msg *m) {
	const char *id = tok(m);
	long flags = tokn(m), uid = tokn(m), gid = tokn(m), ng = tokn(m);
	struct out o = {0};
	if (!id || flags < 0 || ng < 0 || ng > 65536) return;
	struct spawn s;
	memset(&s, 0, sizeof s);
	s.flags = flags;
	s.uid = uid;
	s.gid = gid;
	s.ngroups = ng;
	s.groups = xcalloc(ng + 1, sizeof(gid_t));
	if (!s.groups) goto nomem;
	for (long i = 0; i < ng; i++) s.groups[i] = tokn(m);
	s.dir = tok(m);
	long argc = tokn(m);
	if (argc < 1) goto bad;
	s.argv = xcalloc(argc + 1, sizeof(char *));
	if (!s.argv) goto nomem;
	for (long i = 0; i < argc; i++) s.argv[i] = (char *)tok(m);
	long envc = tokn(m);
	if (envc < 0) goto bad;
	s.envp = xcalloc(envc + 1, sizeof(char *));
	if (!s.envp || grow_jobs() < 0) goto nomem;
	s.path = DEFAULT_PATH;
	for (long i = 0; i < envc; i++) {
		s.envp[i] = (char *)tok(m);
		if (s.envp[i] && !strncmp(s.envp[i], "PATH=", 5)) s.path = s.envp[i] + 5;
	}
	if (!s.argv[argc - 1] || (envc > 0 && !s.envp[envc - 1])) goto bad;
	int k = 0;
	for (int i = 0; i < 3; i++) s.fd[i] = (flags & (1 << i)) && k < m->nfds ? m->fds[k++] : -1;
	s.stage = 0;
	pid_t pid = clone(spawn_child, spawn_top, CLONE_VM | CLONE_VFORK | SIGCHLD, &s);
	if (pid < 0) {
		s.stage = ST_EXEC;
		s.err = errno;
		snprintf(s.failed, sizeof s.failed, "fork");
	}
	if (pid < 0 || s.stage) {
		// The child is gone (or never was); its exit status is not news.
		if (pid > 0) waitpid(pid, NULL, 0);
		put(&o, "failed");
		put(&o, id);
		putn(&o, s.stage);
		putn(&o, s.err);
		put(&o, s.failed);
	} else {
		jobs[njobs].pid = pid; // grow_jobs made room
		snprintf(jobs[njobs].id, sizeof jobs[njobs].id, "%s", id);
		njobs++;
		if (!(flags & EXEC_QUIET)) {
			put(&o, "started");
			put(&o, id);
			putn(&o, pid);
		}
	}
	xfree(s.groups);
	xfree(s.argv);
	xfree(s.envp);
	if (o.len) send_out(ctrl, &o);
	return;
nomem:
	put(&o, "failed");
	put(&o, id);
	putn(&o, ST_EXEC);
	putn(&o, ENOMEM);
	put(&o, "fork");
	goto out;
bad:
	put(&o, "failed");
	put(&o, id);
	putn(&o, 0);
	putn(&o, EPROTO);
	put(&o, "bad exec request");
out:
	xfree(s.groups);
	xfree(s.argv);
	xfree(s.envp);
	send_out(ctrl, &o);
}

static void do_kill(struct msg *m) {
	const char *id = tok(m);
	long sig = tokn(m);
	if (!id || sig < 0) return;
	for (size_t i = 0; i < njobs; i++) {
		if (strcmp(jobs[i].id, id)) continue;
		if (kill(-jobs[i].pid, sig) < 0) kill(jobs[i].pid, sig);
	}
}

static void reap(void) {
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (size_t i = 0; i < njobs; i++) {
			if (jobs[i].pid != pid) continue;
			struct out o = {0};
			put(&o, "exit");
			put(&o, jobs[i].id);
			putn(&o, st);
			jobs[i] = jobs[--njobs];
			if (send_out(ctrl, &o) < 0) {
				kill(-1, SIGKILL);
				_exit(0);
			}
			break;
		}
	}
}

// read_ids reads the highest capability number and whether setgroups is denied in our user
// namespace. The zygote reads them once, at its start, and its inits inherit them: the first is
// the kernel's, the second that of the zygote's user namespace, unless the init mapped a user
// namespace of its own (map_ids, which denies setgroups and says so).
static void read_ids(void) {
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (!f || fscanf(f, "%d", &last_cap) != 1) last_cap = 63;
	if (f) fclose(f);
	char sg[16] = "";
	if ((f = fopen("/proc/self/setgroups", "re"))) {
		if (!fgets(sg, sizeof sg, f)) sg[0] = 0;
		fclose(f);
	}
	groups_denied = !strncmp(sg, "deny", 4);
	ids_known = 1;
}

static void __attribute__((noreturn)) init_main(void) {
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	setup();
	if (!ids_known) read_ids();
	if (nodev) {
		// An unprivileged container (nodev is the setup's word for it): no command of it may
		// have more than the default capabilities, so the init drops the others from its
		// bounding set once, which its commands inherit, rather than each command doing so. Its
		// own effective set is untouched. If a drop fails, each command tries, and says why.
		// An init of the confined zygote has its bounding set already, unless a user namespace
		// of its own gave it a full one.
		bset_dropped =
			(zygote_bset && prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) == 0) || drop_bounding_set();
		// The same for the keyring filter: inherited from the confined zygote, or installed
		// here once, and shared by every command (a filter is compiled when it is installed,
		// then inherited) rather than compiled for each. The init itself makes no keyring
		// call. If this fails, each command tries, and says why.
		filtered = zygote_filtered || install_keyring_filter() == 0;
	}
	struct pollfd p[2] = {{ctrl, POLLIN, 0}, {sfd, POLLIN, 0}};
	for (;;) {
		if (arena) arena_reset(); // nothing allocated outlives a request
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR) continue;
			break;
		}
		if (p[1].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) > 0) {
			}
			reap();
		}
		if (p[0].revents & POLLIN) {
			struct msg m;
			int r = recv_msg(ctrl, &m);
			if (r <= 0) break;
			const char *verb = tok(&m);
			if (parked) {
				// Taken: whatever the parent asks first, the container is its caller's now.
				name_init("isorun-init");
				parked = 0;
			}
			if (verb && !strcmp(verb, "exec")) do_exec(&m);
			else if (verb && !strcmp(verb, "kill")) do_kill(&m);
			for (int i = 0; i < m.nfds; i++) close(m.fds[i]);
			free_msg(&m);
		} else if (p[0].revents & (POLLHUP | POLLERR)) {
			break;
		}
	}
	// The parent closed the control socket or died: end the container. Killing everything
	// else first means no process outlives us even for an instant.
	kill(-1, SIGKILL);
	_exit(0);
}


// name_init makes ps say what pid 1 is: "isorun-init", or "isorun-ready" while it is a
// prewarmed init no container has taken yet (leak checks skip those: they are the pool's).
static void name_init(const char *name) {
	prctl(PR_SET_NAME, name, 0, 0, 0);
	// The command line is the address space's: an init that shares the zygote's has the
	// zygote's, which the zygote was exec'd with (isorun-init) and which is not ours to change.
	if (argv0 && argv0_cap >= strlen(name) && !arena) {
		memset(argv0, 0, argv0_cap);
		memcpy(argv0, name, strlen(name));
	}
}

// ---- zygote -----------------------------------------------------------------------------------------

static pid_t *kids;
static size_t nkids, capkids;
static int use_clone3 = 1;

static void add_kid(pid_t pid) {
	if (nkids == capkids) {
		size_t cap = capkids ? capkids * 2 : 16;
		pid_t *k = realloc(kids, cap * sizeof *kids);
		if (!k) return; // not killed at our exit: its control socket's EOF still ends it
		kids = k;
		capkids = cap;
	}
	kids[nkids++] = pid;
}

static void __attribute__((noreturn)) become_init(unsigned long long flags, int ctrl_fd, int warm);

#ifdef VM_INITS
// ---- inits that share the zygote's memory -----------------------------------------------------------
//
// A fork copies the zygote's address space for each init, and the init's exit tears the copy
// down: on the VMs we measured, that and the copy-on-write faults on both sides were the largest
// cost a container had beyond the kernel's own work (bench/README.md). So the static zygote
// clones its inits with CLONE_VM: an init runs in the zygote's memory, on a stack, an arena
// (xmalloc) and a thread-local block of its own, a slot, which the zygote reuses once the init
// is reaped (and with it every process of its pid namespace). What the init writes is in its slot
// or thread-local (PER_INIT); it uses no libc that keeps state elsewhere (malloc, stdio).
//
// The thread-local block is a copy of the zygote's, made at the clone (so the init starts with
// the zygote's values, as after a fork): on x86-64 the static program's block lies just below the
// thread pointer (glibc's variant II layout, found from the PT_TLS header) and glibc's thread
// descriptor just above, whose self pointers the copy gets right.
//
// The memory being the zygote's, a command in the container that could ptrace its init could
// write into the zygote, which lives in the host's namespaces: the zygote makes itself (its
// memory, so every init) not dumpable at its start, so that only CAP_SYS_PTRACE in the host's
// user namespace reaches it, which no unprivileged container has. (A privileged container has
// the host's root anyway.) A rootless zygote forks its inits (vm_prepare says why). And the command line is the memory's too: every init shows the
// zygote's, isorun-init; comm tells them apart (isorun-zygote, isorun-ready, isorun-init).

#define SLOT_SIZE (16UL << 20) // reserved, not committed: a page costs once, when first touched
#define SLOT_GUARD 4096UL
#define SLOT_STACK (1UL << 20)
#define SLOT_SPAWN (256UL << 10)
#define SLOT_JOBS (4UL << 20)

struct slot {
	char *base;
	pid_t pid; // its init, 0 when free
};
static struct slot *slots;
static size_t nslots;
static size_t tls_size, tcb_size; // the thread-local block below the thread pointer, and what we copy above it
static int vm_ok;                 // the zygote clones its inits with CLONE_VM

struct vm_start {
	unsigned long long flags;
	int ctrl_fd, warm;
	char *arena, *arena_end, *spawn_top;
	struct job *jobs;
};

static char *thread_pointer(void) {
	char *tp;
	__asm__("mov %%fs:0, %0" : "=r"(tp));
	return tp;
}

// vm_prepare finds the zygote's thread-local block; without it the zygote forks its inits.
static void vm_prepare(void) {
	if (getenv("_ISORUN_FORK_INITS")) {
		unsetenv("_ISORUN_FORK_INITS");
		return;
	}
	// Not for a rootless zygote: not dumpable, it could not write its inits' uid_map (their
	// /proc files would be the host root's), and dumpable, a command running as its user could
	// ptrace its init, and so the zygote.
	if (geteuid() != 0) return;
	const ElfW(Phdr) *ph = (const ElfW(Phdr) *)getauxval(AT_PHDR);
	size_t n = getauxval(AT_PHNUM), memsz = 0, align = 0;
	for (size_t i = 0; ph && i < n; i++)
		if (ph[i].p_type == PT_TLS) {
			memsz = ph[i].p_memsz;
			align = ph[i].p_align ? ph[i].p_align : 1;
		}
	if (!align || align > 64) return;
	tls_size = (memsz + align - 1) / align * align;
	// glibc allocates a static program's block and thread descriptor at the start of its heap:
	// copy the descriptor, up to a page, within the heap.
	char *tp = thread_pointer(), *end = sbrk(0);
	if (end == (char *)-1 || tp >= end || (size_t)(end - tp) < 64) return;
	tcb_size = end - tp < 4096 ? (size_t)(end - tp) : 4096;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) return;
	vm_ok = 1;
}

static struct slot *get_slot(void) {
	for (size_t i = 0; i < nslots; i++)
		if (!slots[i].pid) return &slots[i];
	char *b = mmap(NULL, SLOT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (b == MAP_FAILED) return NULL;
	// Guards below the init's stack and below the command's.
	struct slot *ns = NULL;
	if (mprotect(b, SLOT_GUARD, PROT_NONE) < 0 || mprotect(b + SLOT_GUARD + SLOT_STACK, SLOT_GUARD, PROT_NONE) < 0 ||
	    !(ns = realloc(slots, (nslots + 1) * sizeof *slots))) {
		munmap(b, SLOT_SIZE);
		return NULL;
	}
	slots = ns;
	slots[nslots].base = b;
	slots[nslots].pid = 0;
	return &slots[nslots++];
}

static void free_slot(pid_t pid) {
	for (size_t i = 0; i < nslots; i++)
		if (slots[i].pid == pid) slots[i].pid = 0;
}

static int vm_init_child(void *p) {
	struct vm_start *st = p;
	arena = arena_top = st->arena;
	arena_end = st->arena_end;
	spawn_top = st->spawn_top;
	jobs = st->jobs;
	capjobs = SLOT_JOBS / sizeof *jobs;
	njobs = 0;
	become_init(st->flags, st->ctrl_fd, st->warm);
}

// clone_vm_init clones an init into a free slot; -1 (and the slot still free) if it cannot.
static pid_t clone_vm_init(unsigned long long flags, int ctrl_fd, int warm, int *pidfd) {
	struct slot *sl = get_slot();
	if (!sl) return -1;
	char *b = sl->base;
	char *stack_top = b + SLOT_GUARD + SLOT_STACK;
	char *spawn = b + 2 * SLOT_GUARD + SLOT_STACK + SLOT_SPAWN;
	char *tp = (char *)(((uintptr_t)spawn + tls_size + 63) & ~(uintptr_t)63);
	memcpy(tp - tls_size, thread_pointer() - tls_size, tls_size + tcb_size);
	((char **)tp)[0] = tp; // tcbhead_t's tcb and self
	((char **)tp)[2] = tp;
	struct vm_start *st = (struct vm_start *)(((uintptr_t)tp + tcb_size + 63) & ~(uintptr_t)63);
	st->flags = flags;
	st->ctrl_fd = ctrl_fd;
	st->warm = warm;
	st->spawn_top = spawn;
	st->jobs = (struct job *)(((uintptr_t)(st + 1) + 63) & ~(uintptr_t)63);
	st->arena = (char *)st->jobs + SLOT_JOBS;
	st->arena_end = b + SLOT_SIZE;
	pid_t pid = clone(vm_init_child, stack_top, (int)(flags | CLONE_VM | CLONE_SETTLS | CLONE_PIDFD_ | SIGCHLD), st,
			  pidfd, tp, NULL);
	if (pid > 0) sl->pid = pid;
	return pid;
}
#endif

// fork_init forks a container's init with the namespaces in flags (into the cgroup cg, if not
// -1), with ctrl_fd as its control socket. A prewarmed init does the setup work that depends on
// nothing the parent says before it reads the setup (the parent keeps such inits ready, so that
// a container costs only its own setup). In the zygote it returns the pid (and *pidfd).
static pid_t fork_init(unsigned long long flags, int cg, int ctrl_fd, int warm, int *pidfd) {
	pid_t pid = -1;
	*pidfd = -1;
#ifdef VM_INITS
	// No CLONE_INTO_CGROUP for these: glibc's clone has no clone3 form.
	if (vm_ok && cg < 0 && flags <= 0x7fffffffULL) {
		pid = clone_vm_init(flags, ctrl_fd, warm, pidfd);
		if (pid > 0) {
			add_kid(pid);
			return pid;
		}
		*pidfd = -1; // and fork it instead, which says why if it fails too
	}
#endif

	if (use_clone3) {
		struct clone_args_ ca;
		memset(&ca, 0, sizeof ca);
		ca.flags = flags | CLONE_PIDFD_;
		ca.pidfd = (uint64_t)(uintptr_t)pidfd;
		ca.exit_signal = SIGCHLD;
		if (cg >= 0) {
			ca.flags |= CLONE_INTO_CGROUP_;
			ca.cgroup = cg;
		}
		pid = syscall(SYS_clone3, &ca, sizeof ca);
		if (pid < 0 && errno == ENOSYS) use_clone3 = 0;
	}
	if (!use_clone3 && cg >= 0) {
		errno = ENOSYS; // clone would put the init outside its cgroup
		return -1;
	}
	if (!use_clone3) pid = syscall(SYS_clone, (unsigned long)(flags | SIGCHLD), 0, 0, 0, 0);
	if (pid != 0) {
		if (pid > 0) add_kid(pid);
		return pid;
	}
	become_init(flags, ctrl_fd, warm);
}

// become_init turns a new child of the zygote into the container's init. Keep nothing of ours
// but the control socket, as fd 3, and keep it close-on-exec: a command that inherited it could
// read the parent's requests or forge the init's replies.
static void __attribute__((noreturn)) become_init(unsigned long long flags, int ctrl_fd, int warm) {
	if (ctrl_fd != 3 && dup3(ctrl_fd, 3, O_CLOEXEC) < 0) _exit(1);
	syscall(SYS_close_range, 4, ~0U, 0);
	ctrl = 3;
	sigset_t all;
	sigemptyset(&all);
	sigaddset(&all, SIGCHLD);
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() == 1) _exit(1); // the zygote died between clone and prctl
	name_init(warm ? "isorun-ready" : "isorun-init");
	if (warm) prewarm((flags & CLONE_NEWUSER) != 0);
	init_main();
}

// park makes a parked container (warm_linux.go): the rest of the request is its setup, which
// goes into a new control socket before the init is forked, so that the init, once prewarmed,
// goes straight on to the setup, with nobody waiting on it. The reply hands the parent the
// socket's other end and the init's pidfd; the parent reads the setup's "ok" when it takes the
// container.
static void park(struct msg *m, const char *id, unsigned long long flags, struct out *o) {
	int sp[2] = {-1, -1}, pidfd = -1;
	const char *step = "socketpair";
	pid_t pid = -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == 0) {
		step = "send setup";
		if (m->off < m->len && send(sp[0], m->buf + m->off, m->len - m->off, MSG_NOSIGNAL) >= 0) {
			step = "clone";
			pid = fork_init(flags, -1, sp[1], 1, &pidfd);
		}
	}
	int err = errno;
	if (sp[1] >= 0) close(sp[1]);
	if (pid < 0 || pidfd < 0) {
		if (pid > 0) kill(pid, SIGKILL);
		if (pidfd >= 0) close(pidfd);
		if (sp[0] >= 0) close(sp[0]);
		put(o, "err");
		put(o, id);
		put(o, step);
		putn(o, pid > 0 ? ENOSYS : err); // a pid but no pidfd: clone3 is missing
		return;
	}
	put(o, "pid");
	put(o, id);
	putn(o, pid);
	o->fds[o->nfds++] = pidfd;
	o->fds[o->nfds++] = sp[0];
}

// confine_zygote makes this zygote the confined one (zygote_linux.go): what every command of an
// unprivileged container gets and no init needs, it does once, and its inits inherit it. Each
// part that fails is left to the inits, which say why when they fail too.
static void confine_zygote(void) {
	zygote_bset = drop_bounding_set();
	// Without CAP_SYS_ADMIN (a rootless zygote) a filter needs no_new_privs, which an
	// unprivileged container's commands have anyway; the inits never exec.
	zygote_filtered = install_keyring_filter() == 0 ||
			  (errno == EACCES && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && install_keyring_filter() == 0);
}

static void __attribute__((noreturn)) zygote_main(int sock) {
	// Exec'd as a static binary from a descriptor (zygote_static_linux.go), the kernel named us
	// after the descriptor's number.
	prctl(PR_SET_NAME, "isorun-zygote", 0, 0, 0);
	read_ids();
#ifdef VM_INITS
	vm_prepare();
#endif
	if (getenv("_ISORUN_CONFINED")) {
		unsetenv("_ISORUN_CONFINED");
		confine_zygote();
	}
	snprintf(zygote_uid, sizeof zygote_uid, "%u", (unsigned)geteuid());
	snprintf(zygote_gid, sizeof zygote_gid, "%u", (unsigned)getegid());
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	struct pollfd p[2] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}};
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR) continue;
			break;
		}
		if (p[1].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) > 0) {
			}
			pid_t pid;
			while ((pid = waitpid(-1, NULL, WNOHANG)) > 0) {
				for (size_t i = 0; i < nkids; i++)
					if (kids[i] == pid) {
						kids[i] = kids[--nkids];
						break;
					}
#ifdef VM_INITS
				free_slot(pid);
#endif
			}
		}
		if (!(p[0].revents & POLLIN)) {
			if (p[0].revents & (POLLHUP | POLLERR)) break;
			continue;
		}
		struct msg m;
		if (recv_msg(sock, &m) <= 0) break;
		const char *verb = tok(&m), *id = tok(&m), *fl = tok(&m);
		unsigned long long flags = fl ? strtoull(fl, NULL, 10) : 0;
		struct out o = {0};
		if (verb && id && fl && !strcmp(verb, "park")) {
			park(&m, id, flags, &o);
			send_out(sock, &o);
			for (int i = 0; i < o.nfds; i++) close(o.fds[i]);
			for (int i = 0; i < m.nfds; i++) close(m.fds[i]);
			free_msg(&m);
			continue;
		}
		long cg = tokn(&m);   // index of a cgroup fd among the fds, or -1
		long warm = tokn(&m); // 1: prewarm
		if (!verb || strcmp(verb, "spawn") || !id || m.nfds < 1) {
			put(&o, "err");
			put(&o, id ? id : "");
			put(&o, "spawn");
			putn(&o, EPROTO);
		} else {
			int pidfd;
			pid_t pid = fork_init(flags, cg >= 0 && cg < m.nfds ? m.fds[cg] : -1, m.fds[0], warm == 1, &pidfd);
			if (pid < 0) {
				put(&o, "err");
				put(&o, id);
				put(&o, "clone");
				putn(&o, errno);
			} else {
				put(&o, "pid");
				put(&o, id);
				putn(&o, pid);
				if (pidfd >= 0) o.fds[o.nfds++] = pidfd;
			}
		}
		send_out(sock, &o);
		for (int i = 0; i < o.nfds; i++) close(o.fds[i]);
		for (int i = 0; i < m.nfds; i++) close(m.fds[i]);
		free_msg(&m);
	}
	// Our parent is gone (or shut us down): take every container with us, and wait for them, so
	// that our own exit means they are all gone.
	for (size_t i = 0; i < nkids; i++) kill(kids[i], SIGKILL);
	for (size_t i = 0; i < nkids; i++) waitpid(kids[i], NULL, 0);
	_exit(0);
}

// glibc passes main's arguments to constructors.
__attribute__((constructor)) static void isorun_init_ctor(int argc, char **argv) {
	argv0 = argc > 0 ? argv[0] : NULL;
	argv0_cap = argv0 ? strlen(argv0) : 0;
	const char *z = getenv("_ISORUN_ZYGOTE");
	if (z) {
		unsetenv("_ISORUN_ZYGOTE");
		zygote_main(atoi(z));
	}
	const char *i = getenv("_ISORUN_INIT");
	// "c:N" asks for this init; anything else is left to the Go fallback.
	if (i && i[0] == 'c' && i[1] == ':') {
		ctrl = atoi(i + 2);
		if (ctrl != 3) {
			if (dup3(ctrl, 3, O_CLOEXEC) < 0) _exit(1);
			ctrl = 3;
		}
		// Commands must inherit neither the control socket nor whatever descriptors the parent
		// process leaked to us without close-on-exec (a pipe of its own parent, a host directory
		// that would lead out of the container's root).
		if (fcntl(3, F_SETFD, FD_CLOEXEC) < 0) _exit(1);
		syscall(SYS_close_range, 4, ~0U, 0);
		name_init("isorun-init");
		init_main();
	}
}

#ifdef ISORUN_STANDALONE
// The static zygote (zygote_static_linux.go) is this file compiled on its own; the constructor
// above turns it into the zygote, so main runs only when something else exec'd it.
int main(void) {
	static const char msg[] = "isorun-zygote: started by isolate, not by hand\n";
	if (write(2, msg, sizeof msg - 1) < 0) return 2;
	return 2;
}
#endif
