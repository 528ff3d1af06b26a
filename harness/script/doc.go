// Package script gives testscript (github.com/rogpeppe/go-internal/testscript) scenarios real
// containers: a .txtar file starts containers, runs commands in them, moves files in and out,
// and checks their diffs, with testscript's own stdout, stderr, cmp and grep doing the asserting.
//
//	func TestScripts(t *testing.T) {
//		testscript.Run(t, script.Params("testdata/scripts"))
//	}
//
// or, for Params of your own, add Commands() to Params.Cmds and Condition to Params.Condition.
// The isorun CLI runs the same scenarios outside `go test`: `isorun script testdata/scripts/*.txtar`.
// This repository's own scenarios, testdata/scripts/*.txtar at the module root, run as
// TestScenarios in this package's tests (go test ./harness/script -run TestScenarios/NAME).
//
// A scenario:
//
//	container app busybox -v data:/data
//	cexec app sh -c 'echo hi > /greeting; rm /bin/ls; echo saved > /data/out'
//	stdout ''
//	cdiff app
//	cmp stdout want.diff
//	exists data/out
//
//	-- want.diff --
//	D /bin/ls
//	A /greeting
//
// # Commands
//
// Paths on the host (SRC, DST, FILE, volume hosts, image archives) are relative to the script's
// current directory, $WORK at the start; paths in a container are absolute.
//
//	container NAME [IMAGE] [OPTION...]
//	    Start a container called NAME on IMAGE: busybox (the default), host, an image archive
//	    or directory (any fixtures.Open reference), or the IMAGENAME of an earlier ccommit.
//	    Options: -v HOST:CTR[:ro] (a volume; a colon in a path is written \:), -e KEY=VAL,
//	    -w DIR, -u USER, -hostname NAME, -tmpfs DIR, -privileged, and the resource limits
//	    -memory SIZE (64m), -pids N, -cpus F (a command the OOM killer ends says "out of memory"
//	    on stderr); each may come before or after NAME and IMAGE, and -v, -e and -tmpfs repeat. `! container` wants the start to fail (a
//	    missing image, a bad volume spec), with the reason on stderr.
//	[!] cexec NAME CMD [ARG...] [&ID&]
//	    Run CMD in container NAME (argv as is, no shell); its stdout and stderr become the
//	    script's. It must exit 0, or with `!` must not (a command that cannot start, exit code
//	    127 or 126, counts as not exiting 0, its reason on stderr). A last argument & or &ID&
//	    runs it in the background: see cwait and ckill.
//	cwait [ID]
//	    Wait for every background cexec, or for the one called ID. Their stdout and stderr,
//	    in the order they were started, become the script's; each must have ended as its `!`
//	    said, unless ckill ended it.
//	ckill [-SIGNAL] [ID]
//	    Send SIGNAL (KILL by default; INT, TERM, HUP, QUIT, USR1, USR2) to every background
//	    cexec still running, or to the one called ID, with its process group.
//	cstatus CODE
//	    The last cexec (or the only command of the last cwait) exited with CODE: 128+N when
//	    signal N killed it, 127 when it was not found.
//	cdiff NAME
//	    Print the container's changes to its image to stdout, in `docker diff` form:
//	    "A /path", "C /path", "D /path", one per line, sorted.
//	cput NAME SRC DST
//	    Copy the host file SRC into the container as DST (a path ending in / or an existing
//	    directory gets SRC's base name), with SRC's permission bits.
//	cget NAME SRC DST
//	    Copy the container's file SRC to the host file DST.
//	[!] cfile NAME PATH FILE
//	    The container's file PATH has exactly the content of the host file FILE (a diff is
//	    shown when not); with `!`, it differs or is missing.
//	[!] cexists NAME PATH...
//	    Each path exists in the container (or, with `!`, none does).
//	ccommit NAME IMAGENAME
//	    Commit the container's filesystem as it is now as the image IMAGENAME, which later
//	    container lines (and csave) use. It lasts as long as the process running the scripts.
//	csave IMAGE FILE
//	    Write IMAGE (an IMAGENAME or any container IMAGE) as an OCI image archive FILE (with
//	    docker's manifest.json), which `container NAME FILE`, docker, podman and skopeo load.
//	cstop NAME
//	    End the container's processes now; cdiff, cget, cfile and ccommit still work.
//
// Every container (and background command) ends with the script, pass or fail.
//
// # Conditions
//
//	[containers]  containers can run here (Linux, and root): `[!containers] skip`
//	[root]        running as root
//	[userns]      user namespaces are available (a rootless run could use them)
//	[overlay]     the kernel has overlayfs
//	[rootless]    containers run rootless (not root, or ISORUN_ROOTLESS=1): only root is
//	              mapped in them, and the host image cannot run (see harness.Rootless)
//	[limits]      resource limits (-memory, -pids, -cpus) work here: root, or a delegated
//	              cgroup this user may write
//
// Usage errors read like testscript's own ("usage: cexec NAME CMD [ARG...]") and fail the
// script whatever the `!`.
//
// # Non-goals
//
// This is not a shell: no pipes or redirections between host and container (run `sh -c` in
// the container, copy files with cput and cget). Containers have loopback only, so a server
// started with `cexec NAME CMD &` is reached from another cexec in the same container on
// 127.0.0.1.
package script
