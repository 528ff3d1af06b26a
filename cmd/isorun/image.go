package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/isorun/isorun/fixtures"
	"github.com/isorun/isorun/isolate"
)

const imageHelp = `Usage: isorun image COMMAND

Manage the image cache: every archive or layout an image comes from is unpacked once per
machine, into $ISORUN_CACHE (default: isorun in the user cache directory).

Commands:
  import REF...    unpack images into the cache now, and print their digests
  ls               list the cached images
  rm DIGEST...     remove cached images

Examples:
  isorun image import app.tar base.tar:registry/base:1.0
  isorun image ls
  isorun image rm 3f2a9c
`

func cmdImage(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, imageHelp)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Print(imageHelp)
		return 0
	case "import":
		return cmdImageImport(args[1:])
	case "ls", "list":
		return cmdImageLs(args[1:])
	case "rm", "remove":
		return cmdImageRm(args[1:])
	}
	return fail(fmt.Errorf("image: unknown command %q (import, ls or rm; see 'isorun image --help')", args[0]))
}

const importHelp = `Usage: isorun image import [OPTIONS] REF...

Unpack each image into the cache (a later run on it starts at once) and print its digest
and reference. REF is an image archive (docker save, OCI archive, root filesystem tar,
gzipped or not; ARCHIVE:TAG picks one of several) or an OCI layout directory. On a
terminal, a large import shows its progress on stderr; piped, it prints only the result.

Examples:
  isorun image import app.tar
  isorun image import images.tar:registry/app:1.0 oci-layout-dir
`

func cmdImageImport(args []string) int {
	fs := newFlags("image import")
	quiet := fs.Bool("q", false, "no progress, even on a terminal")
	if code, done := parseFlags(fs, args, importHelp); done {
		return code
	}
	if fs.NArg() == 0 {
		return fail(errors.New("image import: no image given (usage: isorun image import REF...)"))
	}
	showProgress := !*quiet && term.IsTerminal(int(os.Stderr.Fd()))
	code := 0
	for _, ref := range fs.Args() {
		img, err := fixtures.Open(ref)
		if err != nil {
			code = fail(fmt.Errorf("image import: %w", err))
			continue
		}
		var stop func()
		if showProgress {
			stop = startProgress(ref)
		}
		r, err := img.Resolve()
		if stop != nil {
			stop()
		}
		if err != nil {
			code = fail(fmt.Errorf("image import: %w", err))
			continue
		}
		fmt.Printf("%s\t%s\n", r.Digest, ref)
	}
	return code
}

// startProgress shows how far the import of ref has read on stderr, until stop is called.
// The measure is the bytes this process has read since it started (an import reads its
// archive about once), against the archive's size; it never claims 100% before the end.
func startProgress(ref string) (stop func()) {
	total := archiveSize(ref)
	base, ok := bytesRead()
	if total <= 0 || !ok {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		shown := false
		for {
			n, _ := bytesRead()
			pct := min(99, (n-base)*100/total)
			fmt.Fprintf(os.Stderr, "\rimporting %s: %3d%% of %s", ref, pct, humanBytes(total))
			shown = true
			select {
			case <-done:
				if shown {
					fmt.Fprint(os.Stderr, "\r\033[K")
				}
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// archiveSize is the size of the file ref names (ARCHIVE or ARCHIVE:TAG), or 0.
func archiveSize(ref string) int64 {
	for p := ref; p != ""; {
		if info, err := os.Stat(p); err == nil {
			if info.Mode().IsRegular() {
				return info.Size()
			}
			return 0
		}
		i := strings.LastIndexByte(p, ':')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

const lsHelp = `Usage: isorun image ls [OPTIONS]

List the images in the cache, newest first: digest, when it was unpacked, and the
reference it was first unpacked from.

Examples:
  isorun image ls
  isorun image ls -q | xargs isorun image rm      # empty the cache
  isorun image ls --json
`

func cmdImageLs(args []string) int {
	fs := newFlags("image ls")
	quiet := fs.Bool("q", false, "print only the digests")
	asJSON := fs.Bool("json", false, `print a JSON array of {"digest","source","created","config"}`)
	if code, done := parseFlags(fs, args, lsHelp); done {
		return code
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("image ls: unexpected argument %q", fs.Arg(0)))
	}
	list, err := fixtures.Cached()
	if err != nil {
		return fail(fmt.Errorf("image ls: %w", err))
	}
	switch {
	case *asJSON:
		type entry struct {
			Digest  string          `json:"digest"`
			Source  string          `json:"source"`
			Created time.Time       `json:"created"`
			Config  fixtures.Config `json:"config"`
		}
		out := make([]entry, 0, len(list))
		for _, im := range list {
			out = append(out, entry{im.Digest, im.Source, im.Created, im.Config})
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Println(string(b))
	case *quiet:
		for _, im := range list {
			fmt.Println(im.Digest)
		}
	default:
		w := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(w, "DIGEST\tCREATED\tSOURCE")
		for _, im := range list {
			fmt.Fprintf(w, "%s\t%s\t%s\n", shortDigest(im.Digest), im.Created.Local().Format("2006-01-02 15:04:05"), im.Source)
		}
		w.Flush()
	}
	return 0
}

func shortDigest(d string) string {
	hex := strings.TrimPrefix(d, "sha256:")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return hex
}

const rmHelp = `Usage: isorun image rm DIGEST...

Remove images from the cache. DIGEST is a full digest (sha256:...) or a unique prefix of
its hex, as 'isorun image ls' shows it. The next run on the image's source unpacks it
again. Remove only what no running container uses.

Examples:
  isorun image rm 3f2a9c0d1e2b
  isorun image rm sha256:3f2a9c0d1e2b...
`

func cmdImageRm(args []string) int {
	fs := newFlags("image rm")
	if code, done := parseFlags(fs, args, rmHelp); done {
		return code
	}
	if fs.NArg() == 0 {
		return fail(errors.New("image rm: no digest given (usage: isorun image rm DIGEST...)"))
	}
	list, err := fixtures.Cached()
	if err != nil {
		return fail(fmt.Errorf("image rm: %w", err))
	}
	code := 0
	for _, arg := range fs.Args() {
		dgst, err := matchDigest(list, arg)
		if err == nil {
			err = fixtures.Remove(dgst)
		}
		if err != nil {
			code = fail(fmt.Errorf("image rm: %w", err))
			continue
		}
		fmt.Println(dgst)
	}
	return code
}

// matchDigest finds the one cached image arg names: its digest, or a prefix of its hex.
func matchDigest(list []fixtures.CachedImage, arg string) (string, error) {
	prefix := strings.TrimPrefix(arg, "sha256:")
	if prefix == "" {
		return "", fmt.Errorf("%q: empty digest", arg)
	}
	var found []string
	for _, im := range list {
		if strings.HasPrefix(strings.TrimPrefix(im.Digest, "sha256:"), prefix) {
			found = append(found, im.Digest)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%q: no cached image has that digest (see 'isorun image ls')", arg)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%q: %d cached images start with it; give more of the digest", arg, len(found))
}

const gcHelp = `Usage: isorun gc

Remove what killed runs left in the image cache: unpackings cut short, and the layers
committed by processes that have ended; and the empty cgroups of their containers with
resource limits (--memory, --pids, --cpus). Images stay (see 'isorun image rm'). Prints each
directory removed. Containers themselves never need this: they die with isorun.

Example:
  isorun gc
`

func cmdGC(args []string) int {
	fs := newFlags("gc")
	if code, done := parseFlags(fs, args, gcHelp); done {
		return code
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("gc: unexpected argument %q", fs.Arg(0)))
	}
	removed, err := fixtures.GC()
	if err != nil {
		return fail(fmt.Errorf("gc: %w", err))
	}
	cgroups, err := isolate.GC()
	if err != nil {
		return fail(fmt.Errorf("gc: %w", err))
	}
	removed = append(removed, cgroups...)
	for _, d := range removed {
		fmt.Println(d)
	}
	return 0
}
