package overlay

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Kind says how a path differs between the lower view and the merged view.
// The zero Kind is invalid, so a Change built without a Kind shows up as a
// bug instead of silently reading as "added".
type Kind int

const (
	Added    Kind = iota + 1 // "A": in the merged view, not in the lowers
	Modified                 // "C": in both, with different type, content or metadata
	Deleted                  // "D": in the lowers, hidden in the merged view
)

// String returns the letter `docker diff` prints: "A", "C" or "D".
func (k Kind) String() string {
	switch k {
	case Added:
		return "A"
	case Modified:
		return "C"
	case Deleted:
		return "D"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// MarshalText encodes k as its letter, which is also its JSON form.
func (k Kind) MarshalText() ([]byte, error) {
	switch k {
	case Added, Modified, Deleted:
		return []byte(k.String()), nil
	}
	return nil, fmt.Errorf("overlay: marshal kind: invalid kind %d", int(k))
}

// UnmarshalText accepts the letters "A", "C" and "D".
func (k *Kind) UnmarshalText(b []byte) error {
	switch string(b) {
	case "A":
		*k = Added
	case "C":
		*k = Modified
	case "D":
		*k = Deleted
	default:
		return fmt.Errorf("overlay: unmarshal kind: %q is not one of A, C, D", b)
	}
	return nil
}

// Change is one path that differs. Path is absolute inside the container,
// e.g. "/etc/passwd", and may hold any byte but NUL (spaces, commas,
// newlines): the text form prints it as is, JSON escapes it.
type Change struct {
	Kind Kind   `json:"kind"`
	Path string `json:"path"`
}

// String returns the `docker diff` line without its newline: "A /x".
func (c Change) String() string { return c.Kind.String() + " " + c.Path }

// Changes is a diff. Diff returns it sorted by path; String and MarshalJSON
// sort a copy, so a hand-built value prints the same way.
type Changes []Change

// String returns one `docker diff` line per change, sorted by path, each
// ending in a newline; "" when there are none.
func (c Changes) String() string {
	var b strings.Builder
	for _, ch := range c.sorted() {
		b.WriteString(ch.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// MarshalJSON writes `[{"kind":"A","path":"/x"}, ...]` sorted by path, and
// `[]` (never null) when there are no changes, so consumers need not
// special-case an empty diff. JSON strings are Unicode: a path that is not
// valid UTF-8 (Linux allows any byte) is written with each invalid byte
// replaced by U+FFFD, so it does not read back the same; the text form
// carries such paths exactly.
func (c Changes) MarshalJSON() ([]byte, error) {
	s := []Change(c.sorted()) // the plain slice type, or Marshal would recurse
	if s == nil {
		s = []Change{}
	}
	return json.Marshal(s)
}

// UnmarshalJSON reads what MarshalJSON writes; the order is kept as given.
// Every entry needs a kind and a path: `{}` would otherwise read as a change
// of the invalid zero Kind, which nothing can print or write back.
func (c *Changes) UnmarshalJSON(b []byte) error {
	var s []Change
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	for i, ch := range s {
		switch {
		case ch.Kind == 0:
			return fmt.Errorf("overlay: unmarshal changes: entry %d (path %q) has no kind", i, ch.Path)
		case ch.Path == "":
			return fmt.Errorf("overlay: unmarshal changes: entry %d has no path", i)
		}
	}
	*c = Changes(s)
	return nil
}

// Paths returns the paths in order.
func (c Changes) Paths() []string {
	p := make([]string, len(c))
	for i, ch := range c {
		p[i] = ch.Path
	}
	return p
}

// Filter returns the changes for which keep returns true, in order.
func (c Changes) Filter(keep func(Change) bool) Changes {
	var out Changes
	for _, ch := range c {
		if keep(ch) {
			out = append(out, ch)
		}
	}
	return out
}

// Under returns the changes at or below dir ("/etc" keeps "/etc" and
// "/etc/passwd", not "/etcetera").
func (c Changes) Under(dir string) Changes {
	return c.Filter(func(ch Change) bool { return within(ch.Path, dir) })
}

// Without returns the changes not at or below any of dirs, for tests that
// want to ignore noise such as "/tmp" or "/root/.cache".
func (c Changes) Without(dirs ...string) Changes {
	return c.Filter(func(ch Change) bool {
		for _, d := range dirs {
			if within(ch.Path, d) {
				return false
			}
		}
		return true
	})
}

// within reports whether p is dir or below it, comparing whole components.
func within(p, dir string) bool {
	dir = strings.TrimSuffix(dir, "/")
	return p == dir || strings.HasPrefix(p, dir+"/") || dir == ""
}

// sorted returns c ordered by path the way `docker diff` orders it (plain
// string order), copying only when c is not already sorted.
func (c Changes) sorted() Changes {
	cmp := func(a, b Change) int { return strings.Compare(a.Path, b.Path) }
	if slices.IsSortedFunc(c, cmp) {
		return c
	}
	s := slices.Clone(c)
	slices.SortStableFunc(s, cmp)
	return s
}
