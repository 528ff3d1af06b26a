package overlay

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzChangesJSON checks the JSON form of a diff both ways: whatever UnmarshalJSON accepts,
// MarshalJSON writes back, sorted, and reads again to the same changes; and Changes built from
// any paths and kinds survive a round trip, or fail to marshal only for an invalid kind.
func FuzzChangesJSON(f *testing.F) {
	f.Add([]byte(`[{"kind":"A","path":"/x"},{"kind":"D","path":"/a b"}]`), "/p\n/q", byte(1))
	f.Add([]byte(`[]`), "", byte(0))
	f.Add([]byte(`null`), "/x", byte(3))
	f.Add([]byte(`[{"kind":"Q","path":"/x"}]`), "/\x00", byte(4))
	f.Fuzz(func(t *testing.T, data []byte, paths string, kind byte) {
		var c Changes
		if err := json.Unmarshal(data, &c); err == nil {
			out, err := json.Marshal(c)
			if err != nil {
				t.Fatalf("accepted %q but cannot write it back: %v", data, err)
			}
			var back Changes
			if err := json.Unmarshal(out, &back); err != nil {
				t.Fatalf("cannot read back %s: %v", out, err)
			}
			if !slices.Equal(back, c.sorted()) {
				t.Fatalf("round trip of %q: got %v, want %v", data, back, c.sorted())
			}
			if c == nil && string(out) != "[]" {
				t.Fatalf("no changes marshal as %s, want []", out)
			}
		}

		var built Changes
		for i, p := range strings.Split(paths, "\n") {
			if p != "" { // a change names a path: UnmarshalJSON refuses an empty one
				built = append(built, Change{Kind: Kind(int(kind)+i) % 5, Path: p})
			}
		}
		valid := !slices.ContainsFunc(built, func(c Change) bool { return c.Kind < Added || c.Kind > Deleted })
		out, err := json.Marshal(built)
		if valid != (err == nil) {
			t.Fatalf("Marshal(%v) = %s, %v; want an error only for an invalid kind", built, out, err)
		}
		if err != nil {
			return
		}
		var back Changes
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("cannot read back %s: %v", out, err)
		}
		want := slices.Clone(built.sorted())
		for i := range want {
			want[i].Path = fzJSONString(want[i].Path)
		}
		if !slices.Equal(back, want) {
			t.Fatalf("round trip: got %q, want %q", back, want)
		}
		// The text form has one line per change (for paths without a newline), in the same order.
		if !strings.Contains(paths, "\n") && len(built) == 1 {
			if s := built.String(); s != built[0].Kind.String()+" "+built[0].Path+"\n" {
				t.Fatalf("String() = %q", s)
			}
		}
	})
}

// fzJSONString is s as it reads back from JSON: every byte that is not part of valid UTF-8
// becomes U+FFFD (what encoding/json writes; see MarshalJSON).
func fzJSONString(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}
