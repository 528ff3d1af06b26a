package harness

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/isorun/isorun/overlay"
)

// AssertDiff checks that got holds exactly the changes in want, no more, no fewer.
//
//	harness.AssertDiff(t, sb.Diff(), "A /greeting", "D /bin/ls")
//
// Want holds changes written as `docker diff` prints them, one per line ("A /path" added,
// "C /path" changed, "D /path" deleted). Each argument may hold one or more lines, so a
// change can be an argument of its own or a whole diff one raw string; blank lines and
// indentation are ignored. A path with control characters or leading or trailing spaces is
// written Go-quoted (A "/odd\nname"), as failure messages and golden files show it.
//
// Like testify's assert functions, the diff assertions return whether the check passed and
// report every difference in one t.Errorf: the changes missing from got, the unexpected ones,
// those of another kind (A wanted, C found), and then both diffs in full. The Require forms
// stop the test (t.FailNow) instead of returning. To leave noise out, see Ignoring; to compare
// with a file, AssertDiffGolden.
func AssertDiff(t testing.TB, got overlay.Changes, want ...string) bool {
	t.Helper()
	return DiffFilter{}.check(t, "AssertDiff", got, want, true)
}

// RequireDiff is AssertDiff that stops the test when the diff differs.
func RequireDiff(t testing.TB, got overlay.Changes, want ...string) {
	t.Helper()
	if !(DiffFilter{}).check(t, "RequireDiff", got, want, true) {
		t.FailNow()
	}
}

// AssertDiffIncludes checks that got holds at least the changes in want; other changes are
// fine.
func AssertDiffIncludes(t testing.TB, got overlay.Changes, want ...string) bool {
	t.Helper()
	return DiffFilter{}.check(t, "AssertDiffIncludes", got, want, false)
}

// RequireDiffIncludes is AssertDiffIncludes that stops the test when a change is missing.
func RequireDiffIncludes(t testing.TB, got overlay.Changes, want ...string) {
	t.Helper()
	if !(DiffFilter{}).check(t, "RequireDiffIncludes", got, want, false) {
		t.FailNow()
	}
}

// DiffFilter leaves the changes at paths matching some globs out of diff assertions, for the
// noise a program makes besides its real work (a shell's history, temporary files, caches).
// Make it with Ignoring; its methods are the package's diff assertions on the diff without the
// ignored changes. The zero DiffFilter ignores nothing.
//
//	var noise = harness.Ignoring("/root/.ash_history", "/tmp/**")
//
//	noise.AssertDiff(t, sb.Diff(), "A /etc/app.conf")
type DiffFilter struct {
	globs []string
}

// Ignoring returns a DiffFilter that ignores the changes whose path matches one of globs.
//
// A glob is an absolute path whose components are matched as by path.Match ("*" any run of
// characters but "/", "?" one character, "[a-z]" a class), and in which a whole component "**"
// matches any number of components, none included. So "/tmp/**" ignores /tmp itself and
// everything below it (a program that creates /tmp/x may also have created, or deleted, /tmp),
// "/tmp/*/**" ignores what is below /tmp but not /tmp, "/var/log/*.log" ignores the logs
// directly in /var/log, and "/root/.ash_history" that one file. A glob without "**" matches
// only its own path, not what is below it.
//
// A malformed glob, or a wanted change that a glob ignores (which would make the assertion
// vacuous), fails the assertion that uses the filter.
func Ignoring(globs ...string) DiffFilter {
	return DiffFilter{globs: append([]string(nil), globs...)}
}

// Ignoring returns a filter that ignores what f ignores and also the paths matching globs.
func (f DiffFilter) Ignoring(globs ...string) DiffFilter {
	return DiffFilter{globs: append(append([]string(nil), f.globs...), globs...)}
}

// Filter returns the changes of c that f does not ignore, in order. Malformed globs match
// nothing here; the assertions report them.
func (f DiffFilter) Filter(c overlay.Changes) overlay.Changes {
	return c.Filter(func(ch overlay.Change) bool { return f.ignoredBy(ch.Path) == "" })
}

// AssertDiff is the package's AssertDiff on the changes f does not ignore.
func (f DiffFilter) AssertDiff(t testing.TB, got overlay.Changes, want ...string) bool {
	t.Helper()
	return f.check(t, "AssertDiff", got, want, true)
}

// RequireDiff is AssertDiff that stops the test when the diff differs.
func (f DiffFilter) RequireDiff(t testing.TB, got overlay.Changes, want ...string) {
	t.Helper()
	if !f.check(t, "RequireDiff", got, want, true) {
		t.FailNow()
	}
}

// AssertDiffIncludes is the package's AssertDiffIncludes on the changes f does not ignore.
func (f DiffFilter) AssertDiffIncludes(t testing.TB, got overlay.Changes, want ...string) bool {
	t.Helper()
	return f.check(t, "AssertDiffIncludes", got, want, false)
}

// RequireDiffIncludes is AssertDiffIncludes that stops the test when a change is missing.
func (f DiffFilter) RequireDiffIncludes(t testing.TB, got overlay.Changes, want ...string) {
	t.Helper()
	if !f.check(t, "RequireDiffIncludes", got, want, false) {
		t.FailNow()
	}
}

// ignoredBy returns the first glob of f that matches p, or "".
func (f DiffFilter) ignoredBy(p string) string {
	for _, g := range f.globs {
		if ok, err := matchGlob(g, p); err == nil && ok {
			return g
		}
	}
	return ""
}

// badGlobs describes the globs of f that are malformed.
func (f DiffFilter) badGlobs() []string {
	var bad []string
	for _, g := range f.globs {
		if err := checkGlob(g); err != nil {
			bad = append(bad, err.Error())
		}
	}
	return bad
}

// check runs a diff assertion and reports its failure; exact says whether changes beyond want
// are failures.
func (f DiffFilter) check(t testing.TB, name string, got overlay.Changes, want []string, exact bool) bool {
	t.Helper()
	w, problems := parseWant(want)
	problems = append(f.badGlobs(), problems...)
	r := f.compare(got, w, exact)
	r.problems = append(problems, r.problems...)
	if r.ok() {
		return true
	}
	t.Errorf("%s", r.message(name, f, w, exact))
	return false
}

// wantChange is one expected change and where it was written, for messages.
type wantChange struct {
	overlay.Change
	where string // "want[2] line 3", "testdata/x.diff:3"
}

// parseWant parses the want arguments of the assertions: each holds lines of changes.
func parseWant(want []string) ([]wantChange, []string) {
	var out []wantChange
	var problems []string
	for i, block := range want {
		where := fmt.Sprintf("want[%d]", i)
		ws, ps := parseDiffText(block, func(line int) string {
			if strings.Contains(strings.TrimSpace(block), "\n") {
				return fmt.Sprintf("%s line %d", where, line)
			}
			return where
		})
		// testify's habit of a message after the values lands here: say so.
		if i == len(want)-1 && i > 0 && len(ws) == 0 && len(ps) == 1 && !strings.Contains(strings.TrimSpace(block), "\n") {
			ps[0] += "; a message? diff assertions take none, only changes"
		}
		out = append(out, ws...)
		problems = append(problems, ps...)
	}
	return out, problems
}

// parseDiffText parses text in `docker diff` form; where names a line for messages.
func parseDiffText(text string, where func(line int) string) ([]wantChange, []string) {
	var out []wantChange
	var problems []string
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		c, err := parseChangeLine(line)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", where(n+1), err))
			continue
		}
		out = append(out, wantChange{Change: c, where: where(n + 1)})
	}
	return out, problems
}

// parseChangeLine parses "A /path" (or A "/quoted\npath").
func parseChangeLine(line string) (overlay.Change, error) {
	bad := fmt.Errorf("%q is not a diff line (want \"A /path\", \"C /path\" or \"D /path\")", line)
	k, p, ok := strings.Cut(line, " ")
	if !ok {
		return overlay.Change{}, bad
	}
	var kind overlay.Kind
	if err := kind.UnmarshalText([]byte(k)); err != nil {
		return overlay.Change{}, bad
	}
	p = strings.TrimSpace(p)
	if strings.HasPrefix(p, `"`) {
		u, err := strconv.Unquote(p)
		if err != nil {
			return overlay.Change{}, fmt.Errorf("%q: bad quoted path: %w", line, err)
		}
		p = u
	} else if p != "" && p[0] != '/' {
		return overlay.Change{}, fmt.Errorf("%q: path %q is not absolute", line, p)
	}
	if !path.IsAbs(p) {
		return overlay.Change{}, fmt.Errorf("%q: path %q is not absolute", line, p)
	}
	return overlay.Change{Kind: kind, Path: path.Clean(p)}, nil
}

// formatChange writes a change as a diff line that parseChangeLine reads back: the path as is
// when it can be, else Go-quoted.
func formatChange(c overlay.Change) string {
	return c.Kind.String() + " " + formatPath(c.Path)
}

func formatPath(p string) string {
	needQuote := p == "" || p[0] == '"' || strings.TrimSpace(p) != p
	for _, r := range p {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			needQuote = true
			break
		}
	}
	if needQuote {
		return strconv.Quote(p)
	}
	return p
}

// formatChanges writes changes one per line, sorted by path, each ending in a newline: the
// golden file form, which is `docker diff`'s but for quoted odd paths.
func formatChanges(c overlay.Changes) string {
	s := append(overlay.Changes(nil), c...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].Path < s[j].Path })
	var b strings.Builder
	for _, ch := range s {
		b.WriteString(formatChange(ch))
		b.WriteByte('\n')
	}
	return b.String()
}

// diffReport is every difference an assertion found.
type diffReport struct {
	got        overlay.Changes // after the filter
	ignored    int             // changes the filter left out
	missing    []wantChange
	unexpected overlay.Changes
	wrongKind  []kindMismatch
	problems   []string // the assertion's own input is wrong
}

type kindMismatch struct {
	want wantChange
	got  overlay.Kind
}

func (r *diffReport) ok() bool {
	return len(r.missing) == 0 && len(r.unexpected) == 0 && len(r.wrongKind) == 0 && len(r.problems) == 0
}

// compare compares got, less what f ignores, with want.
func (f DiffFilter) compare(got overlay.Changes, want []wantChange, exact bool) *diffReport {
	r := &diffReport{}
	gotKind := map[string]overlay.Kind{}
	for _, c := range got {
		if f.ignoredBy(c.Path) != "" {
			r.ignored++
			continue
		}
		r.got = append(r.got, c)
		gotKind[c.Path] = c.Kind
	}
	wanted := map[string]wantChange{}
	for _, w := range want {
		if prev, ok := wanted[w.Path]; ok {
			if prev.Kind != w.Kind {
				r.problems = append(r.problems, fmt.Sprintf("%s: %s contradicts %s (%s)", w.where, formatChange(w.Change), formatChange(prev.Change), prev.where))
			}
			continue
		}
		wanted[w.Path] = w
		if g := f.ignoredBy(w.Path); g != "" {
			r.problems = append(r.problems, fmt.Sprintf("%s: %s is wanted but ignored by %q", w.where, formatChange(w.Change), g))
			continue
		}
		k, ok := gotKind[w.Path]
		switch {
		case !ok:
			r.missing = append(r.missing, w)
		case k != w.Kind:
			r.wrongKind = append(r.wrongKind, kindMismatch{want: w, got: k})
		}
	}
	byPath := func(a, b wantChange) int { return strings.Compare(a.Path, b.Path) }
	slices.SortStableFunc(r.missing, byPath)
	slices.SortStableFunc(r.wrongKind, func(a, b kindMismatch) int { return byPath(a.want, b.want) })
	if exact {
		for _, c := range r.got {
			if _, ok := wanted[c.Path]; !ok {
				r.unexpected = append(r.unexpected, c)
			}
		}
	}
	return r
}

// message is the failure report: a summary line, each difference, then both diffs in full.
func (r *diffReport) message(name string, f DiffFilter, want []wantChange, exact bool) string {
	var b strings.Builder
	var counts []string
	add := func(n int, what string) {
		if n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(len(r.missing), "missing")
	add(len(r.unexpected), "unexpected")
	add(len(r.wrongKind), "of another kind")
	add(len(r.problems), "bad input")
	what := "the diff is not the one wanted"
	if !exact {
		what = "the diff lacks wanted changes"
	}
	fmt.Fprintf(&b, "harness: %s: %s (%s)\n", name, what, strings.Join(counts, ", "))
	if len(r.problems) > 0 {
		b.WriteString("bad assertion input:\n")
		for _, p := range r.problems {
			fmt.Fprintf(&b, "\t%s\n", p)
		}
	}
	if len(r.missing) > 0 {
		b.WriteString("missing (wanted, not in the diff):\n")
		for _, m := range r.missing {
			fmt.Fprintf(&b, "\t%s\n", formatChange(m.Change))
		}
	}
	if len(r.unexpected) > 0 {
		b.WriteString("unexpected (in the diff, not wanted):\n")
		for _, c := range r.unexpected {
			fmt.Fprintf(&b, "\t%s\n", formatChange(c))
		}
	}
	if len(r.wrongKind) > 0 {
		b.WriteString("of another kind (want -> got):\n")
		for _, m := range r.wrongKind {
			fmt.Fprintf(&b, "\t%s -> %s\n", formatChange(m.want.Change), m.got)
		}
	}
	if exact {
		b.WriteString("want:\n")
	} else {
		b.WriteString("want at least:\n")
	}
	writeIndented(&b, wantChanges(want))
	b.WriteString("got:\n")
	writeIndented(&b, r.got)
	if len(f.globs) > 0 {
		fmt.Fprintf(&b, "ignoring %s: %d change(s) left out\n", strings.Join(quoteAll(f.globs), ", "), r.ignored)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func wantChanges(want []wantChange) overlay.Changes {
	seen := map[overlay.Change]bool{}
	var c overlay.Changes
	for _, w := range want {
		if !seen[w.Change] {
			seen[w.Change] = true
			c = append(c, w.Change)
		}
	}
	return c
}

func writeIndented(b *strings.Builder, c overlay.Changes) {
	if len(c) == 0 {
		b.WriteString("\t(no changes)\n")
		return
	}
	for _, line := range strings.SplitAfter(formatChanges(c), "\n") {
		if line != "" {
			b.WriteString("\t" + line)
		}
	}
}

func quoteAll(s []string) []string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return q
}

// checkGlob says what is wrong with a glob, if anything.
func checkGlob(g string) error {
	if !strings.HasPrefix(g, "/") {
		return fmt.Errorf("ignore glob %q: not an absolute path", g)
	}
	for _, part := range strings.Split(path.Clean(g)[1:], "/") {
		if _, err := path.Match(part, ""); err != nil {
			return fmt.Errorf("ignore glob %q: %w", g, err)
		}
	}
	return nil
}

// matchGlob reports whether the absolute path p matches the glob g (see Ignoring).
func matchGlob(g, p string) (bool, error) {
	if err := checkGlob(g); err != nil {
		return false, err
	}
	return matchParts(splitPath(path.Clean(g)), splitPath(p)), nil
}

// splitPath splits an absolute path into its components; "/" has none.
func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

func matchParts(glob, parts []string) bool {
	for len(glob) > 0 {
		if glob[0] == "**" {
			// "**" takes zero or more components: try each split.
			for i := 0; i <= len(parts); i++ {
				if matchParts(glob[1:], parts[i:]) {
					return true
				}
			}
			return false
		}
		if len(parts) == 0 {
			return false
		}
		if ok, _ := path.Match(glob[0], parts[0]); !ok {
			return false
		}
		glob, parts = glob[1:], parts[1:]
	}
	return len(parts) == 0
}
