package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isorun/isorun/fixtures"
	"github.com/isorun/isorun/harness"
	"github.com/isorun/isorun/isolate"
)

const runHelp = `Usage: isorun run [OPTIONS] [--] CMD [ARG...]

Run CMD in a new container on an image and exit with its status: 128+N when signal N
killed it, 127 when it was not found, 126 when it could not run. isorun's own errors
(bad options, a bad image, a container that could not start) exit 125 with "isorun: ..."
on stderr. The container and everything it wrote are gone when isorun exits; --diff,
--json and --commit say or keep what changed. Options stop at the first word that is not
one (or at --), so the command's own options need no --.

IMAGE is busybox, host (the default: this machine's own root, read-only below the
container's writes), a tar archive (docker export, docker save or OCI archive) or a
directory (a root filesystem or an OCI layout); ARCHIVE:TAG picks one image of several.

A volume is HOST:CTR or HOST:CTR:ro; a colon, space or backslash inside a path is written
with a backslash before it (/data\:2024:/in). A missing host directory is made. Neither a
volume's or --tmpfs's content nor the mount point made for it is part of the diff or the commit.

SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to isorun go to the command.

Examples:
  isorun run --diff -- sh -c 'dpkg -i ./pkg.deb'            # on the host's files
  isorun run --image busybox --diff -- sh -c 'echo hi > /greeting && rm /bin/ls'
  isorun run --image busybox --json -- touch /x            # [{"kind":"A","path":"/x"}]
  isorun run --image app.tar -v "$PWD:/src:ro" -v /tmp/out:/out -w /src -- make test
  isorun run --image busybox --commit base.tar -- sh -c 'mkdir /opt/tool'
  isorun run --image base.tar -- ls /opt
  isorun run --timeout 30s --image busybox -- sh -c 'sleep 60'  # killed: exit 137
  isorun run --memory 64m --pids 100 --cpus 0.5 --image busybox -- tail /dev/zero  # OOM: 137
  isorun run -it --image busybox --diff -- sh               # an interactive shell
`

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// runOptions are run's flags.
type runOptions struct {
	image      string
	volumes    multiFlag
	env        multiFlag
	tmpfs      multiFlag
	dir        string
	user       string
	hostname   string
	timeout    time.Duration
	diff       bool
	json       bool
	commit     string
	stdin      bool
	tty        bool
	privileged bool
	memory     string
	pids       int64
	cpus       float64
}

// valueFlags are the flags that take a value: expandShort must not split their values.
var valueFlags = []string{"image", "v", "volume", "e", "env", "w", "workdir", "u", "user", "hostname", "timeout", "commit", "tmpfs", "memory", "pids", "cpus"}

// expandShort spells docker's combined -it and -ti as -i -t, up to the command.
func expandShort(args []string) []string {
	out := make([]string, 0, len(args)+1)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			return append(out, args[i:]...)
		}
		if a == "-it" || a == "-ti" {
			out = append(out, "-i", "-t")
			continue
		}
		out = append(out, a)
		name := strings.TrimLeft(a, "-")
		if !strings.Contains(name, "=") && slices.Contains(valueFlags, name) && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}

func cmdRun(args []string) int {
	var o runOptions
	fs := newFlags("run")
	fs.StringVar(&o.image, "image", "host", "the image `REF`: busybox, host, an image archive or a directory")
	fs.Var(&o.volumes, "v", "a volume, `HOST:CTR[:ro]` (repeatable)")
	fs.Var(&o.volumes, "volume", "same as -v `HOST:CTR[:ro]`")
	fs.Var(&o.env, "e", "set `KEY=VAL` in the command's environment; KEY alone passes isorun's (repeatable)")
	fs.Var(&o.env, "env", "same as -e `KEY=VAL`")
	fs.StringVar(&o.dir, "w", "", "the command's working `DIR` (default: the image's, else /)")
	fs.StringVar(&o.dir, "workdir", "", "same as -w `DIR`")
	fs.StringVar(&o.user, "u", "", "run as `USER`: name, uid, name:group or uid:gid, from the image's /etc/passwd")
	fs.StringVar(&o.user, "user", "", "same as -u `USER`")
	fs.StringVar(&o.hostname, "hostname", "", "the container's host `NAME` (default: its ID)")
	fs.DurationVar(&o.timeout, "timeout", 0, "kill the command after `DUR` (e.g. 30s; exits 137); none by default")
	fs.BoolVar(&o.diff, "diff", false, "print the changes to the image after the command's output, as docker diff does")
	fs.BoolVar(&o.json, "json", false, "print the changes as JSON: [{\"kind\":\"A\",\"path\":\"/x\"}] (implies --diff)")
	fs.StringVar(&o.commit, "commit", "", "write the final filesystem as an image archive `OUT.tar` that --image runs")
	fs.BoolVar(&o.stdin, "i", false, "pass isorun's stdin to the command")
	fs.BoolVar(&o.stdin, "interactive", false, "same as -i")
	fs.BoolVar(&o.tty, "t", false, "give the command a terminal (a pty); with -i, an interactive session")
	fs.BoolVar(&o.tty, "tty", false, "same as -t")
	fs.Var(&o.tmpfs, "tmpfs", "mount an empty tmpfs at `DIR`, not part of the diff (repeatable)")
	fs.BoolVar(&o.privileged, "privileged", false, "keep every capability for the command, without no_new_privs or the seccomp filter; device nodes open on every mount")
	fs.StringVar(&o.memory, "memory", "", "limit the container's memory to `SIZE` (64m, 1g; no swap): past it the OOM killer ends the command (137)")
	fs.Int64Var(&o.pids, "pids", 0, "limit the container to `N` processes (threads included)")
	fs.Float64Var(&o.cpus, "cpus", 0, "limit the container to `F` CPUs' worth of time (0.5, 2)")
	if code, done := parseFlags(fs, expandShort(args), runHelp); done {
		return code
	}
	if fs.NArg() == 0 {
		return fail(errors.New("run: no command given (usage: isorun run [OPTIONS] [--] CMD [ARG...]; see 'isorun run --help')"))
	}
	if o.tty && !slices.ContainsFunc(o.env, func(kv string) bool { return kv == "TERM" || strings.HasPrefix(kv, "TERM=") }) {
		// A terminal without TERM is a dumb one to most programs; say what isorun's is.
		t := os.Getenv("TERM")
		if t == "" {
			t = "xterm"
		}
		o.env = append(o.env, "TERM="+t)
	}
	return run(o, fs.Args())
}

// run runs argv in a container as o says and returns the exit code.
func run(o runOptions, argv []string) int {
	opts, err := o.harnessOptions()
	if err != nil {
		return fail(err)
	}
	img, err := fixtures.Open(o.image)
	if err != nil {
		return fail(err)
	}
	if o.commit != "" {
		if err := checkCommittable(img); err != nil {
			return fail(err)
		}
	}

	// Until the command runs, a signal ends isorun (after undoing the start).
	startCtx, stopStart := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	e, err := harness.Start(startCtx, img, opts...)
	stopStart()
	if err != nil {
		return fail(err)
	}
	defer func() {
		e.Release()
		if dir := e.KeepDir(); dir != "" {
			fmt.Fprintf(os.Stderr, "isorun: ISORUN_KEEP: container %s kept its upper layer in %s/upper\n", e.ID(), dir)
		}
	}()

	ctx := context.Background()
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	cmd := e.CommandContext(ctx, argv[0], argv[1:]...)
	if o.stdin {
		cmd.Stdin = os.Stdin
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	var term *terminal
	if o.tty {
		if term, err = openTerminal(cmd, o.stdin); err != nil {
			return fail(err)
		}
		defer term.restore()
	}

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		if term != nil {
			term.restore()
		}
		var se *isolate.Error
		if errors.As(err, &se) {
			fmt.Fprintf(os.Stderr, "isorun: %v\n", err)
			return se.ExitCode()
		}
		return fail(err)
	}
	if term != nil {
		term.started()
	}
	stopForward := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				if sig, ok := s.(unix.Signal); ok {
					cmd.Signal(sig)
				}
			case <-stopForward:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(stopForward)
	code, timedOut := 0, false
	var ee *isolate.ExitError
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		code, timedOut = 128+int(unix.SIGKILL), true
		if st := cmd.State(); st != nil {
			code = st.ExitCode()
		}
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		e.Close()
		if term != nil {
			term.restore()
		}
		return fail(fmt.Errorf("container %s: %w", e.ID(), err))
	}
	// Whatever the command left running goes now, so nothing writes after the diff.
	e.Close()
	if term != nil {
		term.finish()
	}
	if timedOut {
		fmt.Fprintf(os.Stderr, "isorun: timeout: %s killed after --timeout %v\n", argv[0], o.timeout)
	}
	if st := cmd.State(); st != nil && st.OOMKilled() {
		fmt.Fprintf(os.Stderr, "isorun: out of memory: %s was OOM-killed at --memory %s\n", argv[0], o.memory)
	} else if st != nil && st.PidsLimited() {
		fmt.Fprintf(os.Stderr, "isorun: --pids %d refused a fork while %s ran\n", o.pids, argv[0])
	}

	if o.diff || o.json {
		ch, err := e.Diff()
		if err != nil {
			return fail(err)
		}
		if o.json {
			b, err := json.Marshal(ch)
			if err != nil {
				return fail(err)
			}
			os.Stdout.Write(append(b, '\n'))
		} else {
			os.Stdout.WriteString(ch.String())
		}
	}
	if o.commit != "" {
		if err := commit(e, o.commit); err != nil {
			return fail(err)
		}
	}
	return code
}

// forwarded are the signals isorun passes to the command rather than dying of them.
var forwarded = []os.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2}

// harnessOptions turns the flags into the harness's options; a bad volume spec or environment
// entry is an error that names it.
func (o runOptions) harnessOptions() ([]harness.Option, error) {
	var opts []harness.Option
	for _, spec := range o.volumes {
		v, err := harness.ParseVolume(spec)
		if err != nil {
			return nil, err
		}
		if !filepath.IsAbs(v.Host) {
			abs, err := filepath.Abs(v.Host)
			if err != nil {
				return nil, fmt.Errorf("volume %q: %w", spec, err)
			}
			v.Host = abs
		}
		opts = append(opts, v.Option())
	}
	var env []string
	for _, kv := range o.env {
		k, _, ok := strings.Cut(kv, "=")
		switch {
		case k == "":
			return nil, fmt.Errorf("bad environment entry %q: want KEY=VAL or KEY", kv)
		case ok:
			env = append(env, kv)
		default:
			// docker's -e KEY: this process's value, if it has one.
			if v, set := os.LookupEnv(k); set {
				env = append(env, k+"="+v)
			}
		}
	}
	if len(env) > 0 {
		opts = append(opts, harness.WithEnv(env...))
	}
	if o.dir != "" {
		opts = append(opts, harness.WithWorkdir(o.dir))
	}
	if o.user != "" {
		opts = append(opts, harness.WithUser(o.user))
	}
	if o.hostname != "" {
		opts = append(opts, harness.WithHostname(o.hostname))
	}
	for _, d := range o.tmpfs {
		opts = append(opts, harness.WithTmpfs(d))
	}
	if o.privileged {
		opts = append(opts, harness.WithPrivileged())
	}
	if o.memory != "" {
		n, err := harness.ParseMemory(o.memory)
		if err != nil {
			return nil, fmt.Errorf("--memory: %w", err)
		}
		opts = append(opts, harness.WithMemory(n))
	}
	if o.pids < 0 {
		return nil, fmt.Errorf("--pids %d: want a positive number of processes", o.pids)
	}
	if o.pids > 0 {
		opts = append(opts, harness.WithPids(o.pids))
	}
	if o.cpus < 0 {
		return nil, fmt.Errorf("--cpus %v: want a positive number of CPUs", o.cpus)
	}
	if o.cpus > 0 {
		opts = append(opts, harness.WithCPU(o.cpus))
	}
	return opts, nil
}

// checkCommittable refuses --commit before anything runs when the image cannot be written:
// the host's root is the whole machine.
func checkCommittable(img fixtures.Image) error {
	r, err := img.Resolve()
	if err != nil {
		return err
	}
	if r.Digest == "host" || slices.Contains(r.Lowers, "/") {
		return fmt.Errorf("--commit: image %q is the host's own root filesystem, which cannot be written as an archive; run on --image busybox or an image archive to commit", img.Ref())
	}
	return nil
}

// commit writes the container's filesystem as an image archive at out, whole or not at all.
func commit(e *harness.Engine, out string) error {
	img, err := e.Commit()
	if err != nil {
		return fmt.Errorf("--commit %s: %w", out, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return fmt.Errorf("--commit %s: %w", out, err)
	}
	err = fixtures.WriteArchive(tmp, img)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), out)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("--commit %s: %w", out, err)
	}
	return nil
}
