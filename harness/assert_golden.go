package harness

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isorun/isorun/overlay"
)

// AssertDiffGolden checks that got is exactly the diff stored in testdata/<name>.diff (in the
// package directory, where go test runs), one change per line in `docker diff` form. Run the
// tests with -update (registered by Main unless the package defines it) or with
// ISORUN_UPDATE=1 (for packages without Main) to write the file from got instead; review the
// change in version control like any other. A missing file fails with a message saying so.
//
// Name may hold slashes ("installer/exact") but must stay inside testdata; a trailing ".diff"
// is optional.
func AssertDiffGolden(t testing.TB, got overlay.Changes, name string) bool {
	t.Helper()
	return DiffFilter{}.golden(t, "AssertDiffGolden", got, name)
}

// RequireDiffGolden is AssertDiffGolden that stops the test when the diff differs.
func RequireDiffGolden(t testing.TB, got overlay.Changes, name string) {
	t.Helper()
	if !(DiffFilter{}).golden(t, "RequireDiffGolden", got, name) {
		t.FailNow()
	}
}

// AssertDiffGolden is the package's AssertDiffGolden on the changes f does not ignore; with
// -update it writes them, without the ignored ones.
func (f DiffFilter) AssertDiffGolden(t testing.TB, got overlay.Changes, name string) bool {
	t.Helper()
	return f.golden(t, "AssertDiffGolden", got, name)
}

// RequireDiffGolden is AssertDiffGolden that stops the test when the diff differs.
func (f DiffFilter) RequireDiffGolden(t testing.TB, got overlay.Changes, name string) {
	t.Helper()
	if !f.golden(t, "RequireDiffGolden", got, name) {
		t.FailNow()
	}
}

// updateGolden says whether golden files are to be rewritten: the -update flag (Main's, or the
// package's own flag of that name, which means the same in every golden-file library) or
// ISORUN_UPDATE=1.
func updateGolden() bool {
	if os.Getenv("ISORUN_UPDATE") == "1" {
		return true
	}
	f := flag.Lookup("update")
	if f == nil {
		return false
	}
	if g, ok := f.Value.(flag.Getter); ok {
		if b, ok := g.Get().(bool); ok {
			return b
		}
	}
	return f.Value.String() == "true"
}

// goldenPath is testdata/<name>.diff, refusing names that would leave testdata.
func goldenPath(name string) (string, error) {
	if name == "" {
		return "", errors.New("golden file: empty name")
	}
	if !strings.HasSuffix(name, ".diff") {
		name += ".diff"
	}
	if filepath.IsAbs(name) || !filepath.IsLocal(name) {
		return "", fmt.Errorf("golden file %q: want a name inside testdata, like \"installer\"", name)
	}
	return filepath.Join("testdata", name), nil
}

func (f DiffFilter) golden(t testing.TB, name string, got overlay.Changes, file string) bool {
	t.Helper()
	p, err := goldenPath(file)
	if err != nil {
		t.Errorf("harness: %s: %v", name, err)
		return false
	}
	if bad := f.badGlobs(); len(bad) > 0 {
		t.Errorf("harness: %s: %s", name, strings.Join(bad, "; "))
		return false
	}
	kept := f.Filter(got)
	if updateGolden() {
		if err := writeGolden(p, formatChanges(kept)); err != nil {
			t.Errorf("harness: %s: update: %v", name, err)
			return false
		}
		t.Logf("harness: %s: wrote %s (%d changes)", name, p, len(kept))
		return true
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		var b strings.Builder
		writeIndented(&b, kept)
		t.Errorf("harness: %s: golden file %s does not exist; run `go test -update` (or `ISORUN_UPDATE=1 go test` in a package without harness.Main) to write it from this diff:\n%s",
			name, p, strings.TrimSuffix(b.String(), "\n"))
		return false
	}
	if err != nil {
		t.Errorf("harness: %s: read golden file: %v", name, err)
		return false
	}
	want, problems := parseDiffText(string(data), func(line int) string { return fmt.Sprintf("%s:%d", p, line) })
	r := f.compare(got, want, true)
	r.problems = append(problems, r.problems...)
	if r.ok() {
		return true
	}
	t.Errorf("%s\n(want is %s; run `go test -update` to accept the new diff)", r.message(name, f, want, true), p)
	return false
}

// writeGolden writes a golden file, and its directory when missing; it leaves an equal file
// alone so that -update touches only what changed.
func writeGolden(p, content string) error {
	if old, err := os.ReadFile(p); err == nil && string(old) == content {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(content), 0o644)
}
