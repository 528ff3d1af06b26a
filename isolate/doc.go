// Package isolate runs processes in disposable Linux containers: new mount, pid, uts, ipc and net
// namespaces, rooted (pivot_root) in an overlay of image layers, with a pid 1 that reaps and lives
// as long as the container. It knows nothing of images: it takes the layers as directories.
//
// Goals: correct on any Linux host (systemd's shared "/" included), nothing ever mounted in the
// host's mount namespace, nothing left when the test process dies, and a container cheap enough to
// start one per test. Non-goals: a security boundary for hostile code (see below), networking
// beyond loopback, OCI runtime compatibility.
//
// # How a container starts
//
// The parent (the test process) never changes namespaces: it is multi-threaded Go, where
// unshare(CLONE_NEWNS) and setns are unsound. Instead:
//
//   - A zygote, exec'd once per process, forks each container's init with
//     clone3(CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET). The zygote and the
//     init are C (init_linux.c), so a container costs a fork of a small process, not an exec: on
//     the VMs we measured an exec is 1.5-2 ms and a fork of the zygote a fraction of that. The
//     zygote is init_linux.c built on its own as a static program (zygote_static_linux.go), once
//     per machine into the cache directory with the C compiler cgo used; where that cannot be
//     built, it is this same binary, whose constructor runs the C code before the Go runtime
//     starts. As root on x86-64, the static zygote clones each init into its own memory
//     (CLONE_VM: the init runs on a stack, an arena and a thread-local block of its own, and
//     copies and tears down no address space); elsewhere, and from this binary, the init is a
//     fork, and the static program's address space is the smaller one to copy (11 mappings
//     against 25). The zygote is not dumpable, so that no container process can ptrace its
//     init, and through it the zygote. ISORUN_ZYGOTE=self asks for this binary, =static for
//     the static program or an error that says why there is none, =static-fork for the static
//     program forking its inits.
//   - The init makes "/" rslave, then runs the setup program the parent sent on its control socket
//     (proto.go): a tmpfs for the upper layer, the overlay (new mount API, "lowerdir+", index=off,
//     metacopy=off, redirect_dir=off) attached over "/", a fresh /dev (tmpfs with null, zero, full,
//     random, urandom, tty, devpts, shm; read-only at the end unless privileged), /proc and a
//     read-only /sys of its own namespaces, volumes (bind mounts resolved with RESOLVE_IN_ROOT
//     so image symlinks cannot aim them at the host), pivot_root(".", ".") with the old root
//     detached, masked and read-only /proc paths, hostname and loopback. The overlay and the
//     tmpfs exist only in the container's mount namespace (the parent gets their descriptors
//     back, to read the upper layer and the root), so when the container's processes are gone
//     the kernel frees them: a SIGKILLed test leaves no mount and no state directory.
//   - Commands are forked by the init (vfork-style clone, exec failure reported with the failing
//     step), each in its own session; the caller's stdio goes by SCM_RIGHTS. The init reaps every
//     process and reports exit statuses by request id.
//   - The parent's death closes the control sockets: the zygote kills its inits, each init kills its
//     container (pid 1 dying takes the pid namespace with it). Pdeathsig, set from a thread locked
//     for the zygote's life, is the second line.
//   - There are two zygotes, each started when first needed. The confined one forks the inits of
//     unprivileged containers (the default): it drops the capabilities outside Docker's set from
//     its bounding set and installs the keyring filter once, at its start, and every init and
//     command inherits both. A filter is compiled (JIT) when it is installed and shared when
//     inherited, so no container or command compiles one. Privileged containers come from the
//     other zygote, which holds neither; an init of the confined zygote refuses a privileged
//     setup.
//
// Without cgo (CGO_ENABLED=0, or no C compiler) the same setup and requests are served by a Go
// init (init_go_linux.go), exec'd per container; this package's init function takes over in that
// child before main runs, so callers need no hook. ISORUN_INIT=go selects it with cgo too.
//
// The zygote keeps a small pool of inits forked ahead (ISORUN_POOL, default 2, 0 for none), their
// namespaces made and "/" already rslave, waiting for a setup program: Start takes one, and the
// zygote forks a replacement while the test runs. The pool is dropped when the host's mount table
// changes (an init's copy of it would be stale), and a container with a cgroup, or a rootless one
// when the pool holds the other kind, forks its own.
//
// # Prewarmed containers
//
// From its second Start on, a Config with an ImageID (the harness passes the image's digest) has
// the next container of that Config set up in the background as Start returns one (a Config
// started once, or a process that starts one container, parks nothing): the zygote forks an init
// with the whole setup, a "parked" op first, already queued in its control socket, and the init,
// named isorun-ready, runs it on its own. The next Start with the same Config takes it and reads
// the setup's reply; the init renames itself isorun-init at the caller's first request: Start
// then costs a read, not a setup. A parked container's overlay is mounted before its Start,
// which is why ImageID is a promise that the lowers do not change; Mounts, Resources or an Upper
// of the caller's, which ask for host state at Start, are never parked. At most four Configs keep one
// parked container each, the least recently started dropped first; the last one of each is
// never used. Host mount changes and Shutdown drop them, like the pool (warm_linux.go).
//
// # Cost
//
// Measured (BenchmarkRun, BenchmarkLifecycle, bench/README.md), as ratios to a plain fork/exec of
// the same busybox binary in the same run, on a 2-vCPU VM:
//
//   - a command in a live container: 0.93-1.06x. Run, Output and CombinedOutput take one reply
//     from the init (the exit, or the failure to start), not two: their exec request carries
//     execQuiet, and the init sends no "started". No command compiles a seccomp filter: it
//     inherits the confined zygote's;
//   - a whole container (Start, `true`, diff, Close, Release): 2.03-2.59x in the peer benchmark
//     (the harness's path: parked), 2.00-2.06x in BenchmarkLifecycle parked and 2.15-2.25x not,
//     1.73-1.85x from both CPUs at once; 10-15x with the Go init, which pays an exec and the Go
//     runtime's start per container. (Two make bench runs, back to back.)
//
// The design goal was 3x. A lifecycle is bound by nearly the CPU work of all its processes
// together: on this paravirtualized guest, work moved to the other vCPU overlaps poorly (two
// fork/execs in parallel take longer each than one after another), so less work is what pays.
// bench/floor, a static C program with no runtime and no control channel that makes the same
// container (namespaces, overlay, /proc, /dev, /sys, masks, loopback, pivot_root, the command's
// confinement), costs 2.2-2.4x: isorun is 0.92-1.20x that floor, under it when the VM is quiet,
// because the floor forks a process per container, whose address space the kernel copies and
// tears down, where isorun's inits share the zygote's. The static zygote and then the shared
// memory took about 8% and 25% off a lifecycle. What is left beyond the kernel's own work is the
// test process (the control messages, the Go scheduler's wakeups, the diff, the overlay's
// teardown when Release drops the last reference) and the messages between three processes.
// bench/README.md breaks it down and lists what we would try next. A re-exec of the test binary
// per container, the tutorials' design, costs about the Go init's figure.
//
// # Resource limits
//
// Config.Resources gives a container a cgroup: a memory limit (no swap on top), a pids limit and
// a CPU quota, and the accounting that Container.Stats reads (current and peak memory, CPU time,
// processes, OOM kills, refused forks). A command's ExitState says why it died: OOMKilled (exit
// 137, the OOM killer took it at the limit) or PidsLimited (a fork was refused while it ran). A
// Config without Resources makes no cgroup and costs nothing.
//
// The container's processes are in the cgroup from their first instruction; no fork can escape
// it. On cgroup v2 the init is forked straight into it with clone3(CLONE_INTO_CGROUP) (the zygote;
// SysProcAttr.UseCgroupFD for the exec'd inits), under /sys/fs/cgroup/isorun/ with memory, pids
// and cpu enabled. On cgroup v1 and hybrid hosts the first op of the setup program has the init
// write itself into each hierarchy's cgroup, before it mounts anything, and the cgroups nest
// under our own (so the container's limits never loosen the ones we run under). Such a container
// never takes a prewarmed init (see cgroup_linux.go for why): it pays what the pool saves. The
// cgroup, named isorun-OWNERPID-OWNERSTART-ID, is removed by Close once the last process is gone;
// a killed owner's are removed by the next process that makes one, and by GC (`isorun gc`).
//
// Without the right to make cgroups (not root, no delegated cgroup) or without a controller a
// limit needs (on a hybrid host, v2 has none: they are bound to v1), Start fails saying which.
// The v1 code runs in the tests of this machine (hybrid); on v2 the tests check, on a cgroup2
// mounted in a scratch mount namespace, the making and removal of the cgroup, the placement by
// CLONE_INTO_CGROUP and the error for a missing controller, but not the limits themselves,
// which need the controllers that hybrid hosts keep in v1. ISORUN_CGROUP_ROOT moves
// /sys/fs/cgroup (the tests' v2 view uses it).
//
// The OOM killer kills the biggest process of the cgroup: the command that ran into the limit,
// as long as it has grown past the init (about 2 MB resident for the C init, 8 MB for the Go
// one, mostly the binary's pages), so a limit should leave room for both. The init cannot be
// shielded: lowering its oom_score_adj needs CAP_SYS_RESOURCE. A pids limit counts threads, the
// init's too (1 for the C init; about 9 for the Go init, whose runtime aborts if it ever needs
// a thread more and the limit refuses it: it starts a few spare ones before the container runs
// anything, so that a fork bomb that takes every free pid does not take it down).
//
// # Confinement
//
// What a command in a container gets by default, each default attacked from inside by the
// harness's confinement tests (harness/confinement_linux_test.go, both inits):
//
//   - Docker's default capabilities (chown, dac_override, fowner, fsetid, kill, setgid, setuid,
//     setpcap, net_bind_service, net_raw, sys_chroot, mknod, audit_write, setfcap) in its
//     effective, permitted and bounding sets, none ambient; none at all for another user.
//   - no_new_privs: setuid binaries and file capabilities grant nothing.
//   - A seccomp filter (seccomp_linux.go), inherited from the confined zygote (or installed
//     once by the init, or by the command right before exec, where the one before could not):
//     add_key, request_key and keyctl fail with EPERM, everything else is allowed. Without a
//     user namespace these calls would reach the host root's keyrings. It checks the ABI of each
//     call: x86-64 and its x32 numbers, i386, arm64 and 32-bit arm; any other architecture is
//     killed. (A build for another architecture has no filter, and its commands fail to start.)
//   - Its own pid, mount, uts, ipc and net namespaces: it sees no host process, mount or network
//     interface (only lo); pivot_root with the old root detached, so there is nothing above "/"
//     for chroot tricks or ".." to reach; the init is not dumpable, so /proc/1/root, its fds and
//     its memory are closed to the container (and ptrace needs CAP_SYS_PTRACE anyway).
//   - A fresh /proc with kcore, keys, timer_list, interrupts, sched_debug and friends masked and
//     /proc/sys, /proc/sysrq-trigger, /proc/bus, /proc/fs and /proc/irq read-only; /sys read-only;
//     a /dev of its own (null, zero, full, random, urandom, tty, its own devpts instance, a
//     /dev/shm tmpfs), read-only once populated (pts and shm are mounts of their own).
//   - nodev on everything it can write to: the overlay root, volumes (added to the whole bind,
//     the source's own flags kept), tmpfs volumes, /dev/shm. CAP_MKNOD is kept (it is in
//     Docker's set), but no node it makes can be opened: no devices cgroup is needed.
//   - No mount, umount, pivot_root, module loading, open_by_handle_at, setns, or unshare of a
//     mount namespace on its own: they need capabilities outside the set (but see user
//     namespaces below).
//
// Config.Privileged turns off the capability drop, no_new_privs, the filter and nodev (device
// nodes work on every mount, /dev stays writable); the namespaces and /proc masks stay. A
// rootless container (Config.Rootless) gets the same defaults as one run as root.
//
// This keeps tests from disturbing the host by accident. It is not a sandbox for hostile code,
// and it stops short of Docker's defaults in ways that matter (SECURITY.md at the repository's
// root says more):
//
//   - The seccomp filter is only the keyring one, not Docker's profile: every other system call
//     reaches the kernel. Root in the container may create user namespaces (inside them the
//     masks, read-only mounts and nodev stay locked), use io_uring, userfaultfd,
//     perf_event_open, bpf where the host's sysctls allow them.
//   - No user namespace when run as root: root in the container is the host's root held back by
//     capabilities and the filter only. Writes to read-write volumes are the host root's (a
//     device node or setuid file made there is a real one on the host, usable by the host's
//     users unless that filesystem is nodev and nosuid); a kernel bug or a capability mistake
//     is a host compromise.
//   - No LSM profile (AppArmor, SELinux).
//   - No resource limits unless asked (Config.Resources): a fork bomb or a memory hog hits the
//     host.
//   - The kernel is shared; /proc still shows host-wide figures (meminfo, cpuinfo, uptime); the
//     Host image shows the host's files read-only, by design.
package isolate
