package script

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/diff"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/isorun/isorun/fixtures"
	"github.com/isorun/isorun/harness"
	"github.com/isorun/isorun/isolate"
)

// Params returns testscript parameters that run the scripts in dir (*.txtar, *.txt) with the
// container commands and conditions. Change the fields as with any testscript.Params; to add
// commands, add them to its Cmds.
//
// Its Setup passes this process's ISORUN_* variables (ISORUN_CACHE, ISORUN_KEEP, ...) into the
// scripts' environment, which testscript otherwise starts empty, so that a program the script
// runs with exec (isorun itself, say) uses the same image cache as the container commands.
func Params(dir string) testscript.Params {
	return testscript.Params{
		Dir:       dir,
		Cmds:      Commands(),
		Condition: Condition,
		Setup:     Setup,
	}
}

// Setup is Params' Setup: it passes the ISORUN_* environment variables on to the script.
func Setup(env *testscript.Env) error {
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "ISORUN_") {
			env.Setenv(k, v)
		}
	}
	return nil
}

// Commands returns the container commands, for testscript.Params.Cmds.
func Commands() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"container": cmdContainer,
		"cexec":     cmdCexec,
		"cwait":     cmdCwait,
		"ckill":     cmdCkill,
		"cstatus":   cmdCstatus,
		"cdiff":     cmdCdiff,
		"cput":      cmdCput,
		"cget":      cmdCget,
		"cfile":     cmdCfile,
		"cexists":   cmdCexists,
		"ccommit":   cmdCcommit,
		"csave":     cmdCsave,
		"cstop":     cmdCstop,
	}
}

// startTimeout bounds a container's start (the image's first import included).
const startTimeout = 5 * time.Minute

// waitDelay bounds how long cexec waits for a command's output once it has exited: a daemon
// it started (`sh -c 'httpd &'`) holds the pipes.
const waitDelay = 500 * time.Millisecond

// state is one script's containers, images and background commands. Commands run on the
// script's goroutine; mu guards what background commands' goroutines touch.
type state struct {
	containers map[string]*harness.Engine
	order      []string
	images     map[string]fixtures.Image
	bg         []*bgCmd
	lastCode   int
	haveCode   bool
}

// states holds each running script's state: testscript gives commands no per-script storage
// unless Params.Setup makes it, and Commands must work with anyone's Params.
var states sync.Map // *testscript.TestScript -> *state

func stateOf(ts *testscript.TestScript) *state {
	if v, ok := states.Load(ts); ok {
		return v.(*state)
	}
	st := &state{containers: map[string]*harness.Engine{}, images: map[string]fixtures.Image{}}
	states.Store(ts, st)
	ts.Defer(func() {
		st.end()
		states.Delete(ts)
	})
	return st
}

// end kills what is still running and frees every container, newest first.
func (st *state) end() {
	for _, b := range st.bg {
		if !b.finished() {
			b.cmd.Signal(syscall.SIGKILL)
		}
	}
	for i := len(st.order) - 1; i >= 0; i-- {
		st.containers[st.order[i]].Release()
	}
	for _, b := range st.bg {
		<-b.done
	}
}

func (st *state) container(ts *testscript.TestScript, name string) *harness.Engine {
	e, ok := st.containers[name]
	if !ok {
		if len(st.order) == 0 {
			ts.Fatalf("no container %q (start one with: container %s [IMAGE])", name, name)
		}
		ts.Fatalf("no container %q (have: %s)", name, strings.Join(st.order, ", "))
	}
	return e
}

// image resolves an image reference as written in a script: a committed image's name, the
// built-ins, or a path relative to the script's directory.
func (st *state) image(ts *testscript.TestScript, ref string) (fixtures.Image, error) {
	if img, ok := st.images[ref]; ok {
		return img, nil
	}
	switch ref {
	case "busybox", "host":
		return fixtures.Open(ref)
	}
	if !filepath.IsAbs(ref) {
		ref = ts.MkAbs(ref)
	}
	return fixtures.Open(ref)
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

const containerUsage = "usage: container NAME [IMAGE] [-v HOST:CTR[:ro]]... [-e KEY=VAL]... [-w DIR] [-u USER] [-hostname NAME] [-tmpfs DIR]... [-privileged] [-memory SIZE] [-pids N] [-cpus F]"

func cmdContainer(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("container", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var vols, envs, tmpfs multiFlag
	fs.Var(&vols, "v", "")
	fs.Var(&envs, "e", "")
	fs.Var(&tmpfs, "tmpfs", "")
	dir := fs.String("w", "", "")
	user := fs.String("u", "", "")
	hostname := fs.String("hostname", "", "")
	privileged := fs.Bool("privileged", false, "")
	memory := fs.String("memory", "", "")
	pids := fs.Int64("pids", 0, "")
	cpus := fs.Float64("cpus", 0, "")
	// Options may come before or after NAME and IMAGE: parse, take a word, parse again.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			ts.Fatalf("container: %v\n%s", err, containerUsage)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	if len(pos) < 1 || len(pos) > 2 {
		ts.Fatalf("%s", containerUsage)
	}
	name, ref := pos[0], "busybox"
	if len(pos) == 2 {
		ref = pos[1]
	}
	st := stateOf(ts)
	if _, ok := st.containers[name]; ok {
		ts.Fatalf("container %q already exists", name)
	}
	var opts []harness.Option
	for _, e := range envs {
		if !strings.Contains(e, "=") {
			ts.Fatalf("container: -e %q: want KEY=VAL", e)
		}
	}
	if len(envs) > 0 {
		opts = append(opts, harness.WithEnv(envs...))
	}
	if *dir != "" {
		opts = append(opts, harness.WithWorkdir(*dir))
	}
	if *user != "" {
		opts = append(opts, harness.WithUser(*user))
	}
	if *hostname != "" {
		opts = append(opts, harness.WithHostname(*hostname))
	}
	for _, d := range tmpfs {
		opts = append(opts, harness.WithTmpfs(d))
	}
	if *privileged {
		opts = append(opts, harness.WithPrivileged())
	}
	if *memory != "" {
		n, err := harness.ParseMemory(*memory)
		if err != nil {
			ts.Fatalf("container: -memory: %v", err)
		}
		opts = append(opts, harness.WithMemory(n))
	}
	if *pids != 0 {
		opts = append(opts, harness.WithPids(*pids))
	}
	if *cpus != 0 {
		opts = append(opts, harness.WithCPU(*cpus))
	}
	e, err := func() (*harness.Engine, error) {
		for _, spec := range vols {
			v, err := harness.ParseVolume(spec)
			if err != nil {
				return nil, err
			}
			if !filepath.IsAbs(v.Host) {
				v.Host = ts.MkAbs(v.Host)
			}
			opts = append(opts, v.Option())
		}
		img, err := st.image(ts, ref)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		return harness.Start(ctx, img, opts...)
	}()
	if err != nil {
		fmt.Fprintf(ts.Stderr(), "container %s: %v\n", name, err)
		if !neg {
			ts.Fatalf("container %s: %v", name, err)
		}
		return
	}
	st.containers[name] = e
	st.order = append(st.order, name)
	if neg {
		ts.Fatalf("container %s: unexpected success: it started", name)
	}
}

// background is the last word of a background cexec: & or &ID&.
var background = regexp.MustCompile(`^&([a-zA-Z_0-9]+&)?$`)

// exitCode is how a command ended, as a shell would say it, and the message to show when it
// could not run. ok is false when the container itself has gone.
func exitCode(err error) (code int, msg string, ok bool) {
	var ee *isolate.ExitError
	var se *isolate.Error
	switch {
	case err == nil:
		return 0, "", true
	case errors.As(err, &ee):
		if ee.OOMKilled() {
			// Say why, so that a scenario can: stderr 'out of memory'
			return ee.ExitCode(), ee.Error(), true
		}
		return ee.ExitCode(), "", true
	case errors.As(err, &se):
		return se.ExitCode(), se.Error(), true
	}
	return -1, err.Error(), false
}

func cmdCexec(ts *testscript.TestScript, neg bool, args []string) {
	bgName, isBg := "", false
	if n := len(args); n > 0 && background.MatchString(args[n-1]) {
		bgName, isBg = strings.Trim(args[n-1], "&"), true
		args = args[:n-1]
	}
	if len(args) < 2 {
		ts.Fatalf("usage: cexec NAME CMD [ARG...]")
	}
	st := stateOf(ts)
	e := st.container(ts, args[0])
	cmd := e.Command(args[1], args[2:]...)
	cmd.WaitDelay = waitDelay
	if isBg {
		st.startBackground(ts, neg, bgName, args, cmd)
		return
	}
	cmd.Stdout, cmd.Stderr = ts.Stdout(), ts.Stderr()
	err := cmd.Run()
	code, msg, ok := exitCode(err)
	if msg != "" {
		fmt.Fprintln(ts.Stderr(), msg)
	}
	if !ok {
		ts.Fatalf("cexec %s: %v", args[0], err)
	}
	st.lastCode, st.haveCode = code, true
	if code != 0 {
		ts.Logf("[exit status %d]", code)
	}
	switch {
	case neg && code == 0:
		ts.Fatalf("unexpected command success")
	case !neg && code != 0:
		ts.Fatalf("unexpected command failure")
	}
}

// bgCmd is a cexec running in the background.
type bgCmd struct {
	name           string
	args           []string
	neg            bool
	cmd            *harness.Cmd
	stdout, stderr bytes.Buffer // written by the command's copiers until done
	done           chan struct{}
	err            error

	mu     sync.Mutex
	killed bool
}

func (b *bgCmd) finished() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

func (st *state) startBackground(ts *testscript.TestScript, neg bool, name string, args []string, cmd *harness.Cmd) {
	if name != "" {
		for _, b := range st.bg {
			if b.name == name {
				ts.Fatalf("cexec: a background command is already called %q", name)
			}
		}
	}
	b := &bgCmd{name: name, args: args, neg: neg, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &b.stdout, &b.stderr
	st.bg = append(st.bg, b)
	if err := cmd.Start(); err != nil {
		b.err = err
		close(b.done)
		return
	}
	go func() {
		b.err = cmd.Wait()
		close(b.done)
	}()
}

func cmdCwait(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! cwait")
	}
	if len(args) > 1 {
		ts.Fatalf("usage: cwait [ID]")
	}
	st := stateOf(ts)
	var wait []*bgCmd
	if len(args) == 1 {
		for _, b := range st.bg {
			if b.name == args[0] {
				wait = append(wait, b)
			}
		}
		if len(wait) == 0 {
			ts.Fatalf("cwait: no background command %q", args[0])
		}
	} else {
		wait, st.bg = st.bg, nil
	}
	var failed []string
	for _, b := range wait {
		<-b.done
		code, msg, ok := exitCode(b.err)
		ts.Stdout().Write(b.stdout.Bytes())
		ts.Stderr().Write(b.stderr.Bytes())
		if msg != "" {
			fmt.Fprintln(ts.Stderr(), msg)
		}
		b.mu.Lock()
		killed := b.killed
		b.mu.Unlock()
		ts.Logf("[background] cexec %s: exit status %d", strings.Join(b.args, " "), code)
		st.lastCode, st.haveCode = code, len(wait) == 1
		switch {
		case !ok:
			failed = append(failed, fmt.Sprintf("cexec %s: %v", strings.Join(b.args, " "), b.err))
		case killed:
		case b.neg && code == 0:
			failed = append(failed, fmt.Sprintf("cexec %s: unexpected command success", strings.Join(b.args, " ")))
		case !b.neg && code != 0:
			failed = append(failed, fmt.Sprintf("cexec %s: unexpected command failure", strings.Join(b.args, " ")))
		}
	}
	if len(args) == 1 {
		keep := st.bg[:0]
		for _, b := range st.bg {
			if b.name != args[0] {
				keep = append(keep, b)
			}
		}
		st.bg = keep
	}
	if len(failed) > 0 {
		ts.Fatalf("%s", strings.Join(failed, "\n"))
	}
}

var signals = map[string]syscall.Signal{
	"KILL": syscall.SIGKILL, "INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "HUP": syscall.SIGHUP,
	"QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
}

func cmdCkill(ts *testscript.TestScript, neg bool, args []string) {
	const usage = "usage: ckill [-SIGNAL] [ID]"
	if neg {
		ts.Fatalf("unsupported: ! ckill")
	}
	sig := syscall.SIGKILL
	if len(args) > 0 && strings.HasPrefix(args[0], "-") {
		s, ok := signals[strings.TrimPrefix(strings.TrimPrefix(args[0], "-"), "SIG")]
		if !ok {
			ts.Fatalf("ckill: unknown signal %q (KILL, INT, TERM, HUP, QUIT, USR1 or USR2)\n%s", args[0], usage)
		}
		sig, args = s, args[1:]
	}
	if len(args) > 1 {
		ts.Fatalf("%s", usage)
	}
	st := stateOf(ts)
	n := 0
	for _, b := range st.bg {
		if len(args) == 1 && b.name != args[0] {
			continue
		}
		n++
		if b.finished() {
			continue
		}
		b.mu.Lock()
		b.killed = true
		b.mu.Unlock()
		b.cmd.Signal(sig)
	}
	if len(args) == 1 && n == 0 {
		ts.Fatalf("ckill: no background command %q", args[0])
	}
}

func cmdCstatus(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! cstatus")
	}
	if len(args) != 1 {
		ts.Fatalf("usage: cstatus CODE")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("cstatus: %q is not a number\nusage: cstatus CODE", args[0])
	}
	st := stateOf(ts)
	if !st.haveCode {
		ts.Fatalf("cstatus: no status to check: no cexec has ended yet, or the last cwait waited for several")
	}
	if st.lastCode != want {
		ts.Fatalf("cstatus: exit status %d, want %d", st.lastCode, want)
	}
}

func cmdCdiff(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! cdiff")
	}
	if len(args) != 1 {
		ts.Fatalf("usage: cdiff NAME")
	}
	ch, err := stateOf(ts).container(ts, args[0]).Diff()
	ts.Check(err)
	io.WriteString(ts.Stdout(), ch.String())
}

func cmdCput(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! cput")
	}
	if len(args) != 3 {
		ts.Fatalf("usage: cput NAME SRC DST")
	}
	e := stateOf(ts).container(ts, args[0])
	src, dst := ts.MkAbs(args[1]), args[2]
	info, err := os.Stat(src)
	ts.Check(err)
	data, err := os.ReadFile(src)
	ts.Check(err)
	if strings.HasSuffix(dst, "/") {
		dst = path.Join(dst, filepath.Base(src))
	} else if di, err := e.Stat(dst); err == nil && di.IsDir() {
		dst = path.Join(dst, filepath.Base(src))
	}
	ts.Check(e.WriteFile(dst, data, info.Mode().Perm()))
}

func cmdCget(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! cget")
	}
	if len(args) != 3 {
		ts.Fatalf("usage: cget NAME SRC DST")
	}
	data, err := stateOf(ts).container(ts, args[0]).ReadFile(args[1])
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[2]), data, 0o666))
}

func cmdCfile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: cfile NAME PATH FILE")
	}
	got, err := stateOf(ts).container(ts, args[0]).ReadFile(args[1])
	want, werr := os.ReadFile(ts.MkAbs(args[2]))
	ts.Check(werr)
	switch {
	case neg && err != nil:
		return // missing: it differs
	case err != nil:
		ts.Fatalf("cfile: %v", err)
	case neg && bytes.Equal(got, want):
		ts.Fatalf("%s in container %s and %s do not differ", args[1], args[0], args[2])
	case !neg && !bytes.Equal(got, want):
		ts.Logf("[diff -%s +%s]\n%s", args[1], args[2], diff.Diff(args[1], got, args[2], want))
		ts.Fatalf("%s in container %s and %s differ", args[1], args[0], args[2])
	}
}

func cmdCexists(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: cexists NAME PATH...")
	}
	e := stateOf(ts).container(ts, args[0])
	for _, p := range args[1:] {
		_, err := e.Stat(p)
		switch {
		case neg && err == nil:
			ts.Fatalf("%s unexpectedly exists in container %s", p, args[0])
		case !neg && err != nil:
			ts.Fatalf("%s does not exist in container %s: %v", p, args[0], err)
		}
	}
}

func cmdCcommit(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! ccommit")
	}
	if len(args) != 2 {
		ts.Fatalf("usage: ccommit NAME IMAGENAME")
	}
	st := stateOf(ts)
	img, err := st.container(ts, args[0]).Commit()
	ts.Check(err)
	st.images[args[1]] = img
}

func cmdCsave(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! csave")
	}
	if len(args) != 2 {
		ts.Fatalf("usage: csave IMAGE FILE")
	}
	st := stateOf(ts)
	img, err := st.image(ts, args[0])
	ts.Check(err)
	var opts []fixtures.ArchiveOption
	if _, ok := st.images[args[0]]; ok {
		opts = append(opts, fixtures.ArchiveName(args[0]))
	}
	dst := ts.MkAbs(args[1])
	f, err := os.Create(dst)
	ts.Check(err)
	err = fixtures.WriteArchive(f, img, opts...)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		ts.Fatalf("csave: %v", err)
	}
}

func cmdCstop(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! cstop")
	}
	if len(args) != 1 {
		ts.Fatalf("usage: cstop NAME")
	}
	ts.Check(stateOf(ts).container(ts, args[0]).Close())
}
