// Command isorun runs a command in a disposable container and says what it changed, runs
// testscript scenarios with container commands, and manages the image cache.
//
//	isorun run [--image REF] [-v HOST:CTR[:ro]]... [-e KEY=VAL]... [-w DIR] [--hostname NAME]
//	           [--timeout DUR] [--memory SIZE] [--pids N] [--cpus F] [--diff] [--json]
//	           [--commit OUT.tar] [-i] [-t] [--] CMD [ARG...]
//	isorun script FILE.txtar...
//	isorun image import|ls|rm ...
//	isorun gc
//	isorun version
//
// `run` exits with the command's status (128+N when signal N killed it); isorun's own errors
// exit 125 with "isorun: ..." on stderr, as docker does. Every command takes --help.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// exitUsage is isorun's own failure: bad flags, bad input, a container that could not start.
const exitUsage = 125

// version is set at link time (-ldflags "-X main.version=v1.2.3"); otherwise the module's.
var version = ""

func main() {
	os.Exit(isorun(os.Args[1:]))
}

const mainHelp = `isorun runs commands in disposable Linux containers and shows what they changed.

Usage:
  isorun run [OPTIONS] [--] CMD [ARG...]   run a command in a new container
  isorun script FILE.txtar...             run testscript scenarios with container commands
  isorun image import|ls|rm ...           manage the image cache
  isorun gc                               remove what killed runs left (cache, cgroups)
  isorun version                          print the version

Examples:
  isorun run -- sh -c 'make install'                  # on the host's own files; changes vanish
  isorun run --image busybox --diff -- sh -c 'echo hi > /x'
  isorun run --image app.tar -v "$PWD:/src:ro" -w /src -- make test
  isorun run -it --image busybox -- sh
  isorun script testdata/scripts/*.txtar

Run 'isorun COMMAND --help' for a command's options.
`

// isorun is the CLI: it returns the exit code.
func isorun(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, mainHelp)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-h", "-help", "--help":
		fmt.Print(mainHelp)
		return 0
	case "help":
		if len(rest) == 0 {
			fmt.Print(mainHelp)
			return 0
		}
		return isorun(append(rest[:1:1], "--help"))
	case "run":
		return cmdRun(rest)
	case "script":
		return cmdScript(rest)
	case "image":
		return cmdImage(rest)
	case "gc":
		return cmdGC(rest)
	case "version", "-version", "--version":
		return cmdVersion(rest)
	}
	return fail(fmt.Errorf("unknown command %q (see 'isorun --help')", cmd))
}

// fail reports one of isorun's own errors and returns its exit code.
func fail(err error) int {
	msg := err.Error()
	if !strings.HasPrefix(msg, "isorun: ") {
		msg = "isorun: " + msg
	}
	fmt.Fprintln(os.Stderr, msg)
	return exitUsage
}

// newFlags makes a subcommand's flag set: errors are returned, not printed (parseFlags
// reports them, and shows the help for -h and --help).
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args; done is true when the caller should return code (help was shown,
// or the flags were bad).
func parseFlags(fs *flag.FlagSet, args []string, help string) (code int, done bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		fmt.Print(help)
		if defaults := flagDefaults(fs); defaults != "" {
			fmt.Print("\nOptions:\n" + defaults)
		}
		return 0, true
	}
	return fail(fmt.Errorf("%s: %v (see 'isorun %s --help')", fs.Name(), err, fs.Name())), true
}

// flagDefaults is the options list, with -- spelled for the long names as users type them.
func flagDefaults(fs *flag.FlagSet) string {
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		dash := "-"
		if len(f.Name) > 1 {
			dash = "--"
		}
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "  %s%s", dash, f.Name)
		if name != "" {
			fmt.Fprintf(&b, " %s", name)
		}
		fmt.Fprintf(&b, "\n    \t%s", strings.ReplaceAll(usage, "\n", "\n    \t"))
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" && f.DefValue != "0s" {
			fmt.Fprintf(&b, " (default %q)", f.DefValue)
		}
		b.WriteString("\n")
	})
	return b.String()
}

const versionHelp = `Usage: isorun version

Print isorun's version, the Go version it was built with, and the platform.

Example:
  isorun version
`

func cmdVersion(args []string) int {
	fs := newFlags("version")
	if code, done := parseFlags(fs, args, versionHelp); done {
		return code
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("version: unexpected argument %q", fs.Arg(0)))
	}
	v := version
	if v == "" {
		v = "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			v = bi.Main.Version
		}
	}
	fmt.Printf("isorun %s %s %s/%s\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}
