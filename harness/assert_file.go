package harness

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// AssertFile checks that the file at p, a path inside the container, holds exactly want. On a
// mismatch it reports a line diff (- want, + got); a missing file is reported as such. Like
// testify's assert functions it returns whether the check passed.
func (s *Sandbox) AssertFile(p, want string) bool {
	s.t.Helper()
	return s.assertFile("AssertFile", p, want)
}

// RequireFile is AssertFile that stops the test when the content differs.
func (s *Sandbox) RequireFile(p, want string) {
	s.t.Helper()
	if !s.assertFile("RequireFile", p, want) {
		s.t.FailNow()
	}
}

func (s *Sandbox) assertFile(name, p, want string) bool {
	s.t.Helper()
	got, err := s.ReadFile(p)
	if err != nil {
		s.t.Errorf("harness: %s: container %s: %v\nwant content:\n%s", name, s.ID(), err, indent(want))
		return false
	}
	if string(got) == want {
		return true
	}
	s.t.Errorf("harness: %s: container %s: %s differs (- want, + got):\n%s", name, s.ID(), p, lineDiff(want, string(got)))
	return false
}

// AssertFileContains checks that the file at p, a path inside the container, contains substr.
func (s *Sandbox) AssertFileContains(p, substr string) bool {
	s.t.Helper()
	got, err := s.ReadFile(p)
	if err != nil {
		s.t.Errorf("harness: AssertFileContains: container %s: %v\nwant it to contain %q", s.ID(), err, substr)
		return false
	}
	if strings.Contains(string(got), substr) {
		return true
	}
	s.t.Errorf("harness: AssertFileContains: container %s: %s does not contain %q; its content (%d bytes):\n%s", s.ID(), p, substr, len(got), indent(truncate(string(got), 4096)))
	return false
}

// AssertNoFile checks that nothing (no file, directory or symlink, even a dangling one) is at p,
// a path inside the container.
func (s *Sandbox) AssertNoFile(p string) bool {
	s.t.Helper()
	info, err := s.lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return true
	case err != nil:
		s.t.Errorf("harness: AssertNoFile: container %s: %v", s.ID(), err)
		return false
	}
	s.t.Errorf("harness: AssertNoFile: container %s: %s exists (%s), want nothing there", s.ID(), p, describe(info))
	return false
}

// describe names a file's type for messages: "a regular file of 12 bytes", "a directory".
func describe(info fs.FileInfo) string {
	switch m := info.Mode(); {
	case m.IsRegular():
		return fmt.Sprintf("a regular file of %d bytes, mode %v", info.Size(), m.Perm())
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	default:
		return "a " + m.Type().String() + " file"
	}
}

func indent(s string) string {
	if s == "" {
		return "\t(empty)"
	}
	var b strings.Builder
	for _, l := range splitLines(s) {
		b.WriteString("\t" + showLine(l) + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("\n... (%d more bytes)", len(s)-n)
}

// splitLines splits s after each newline; the last line lacks one when s does not end in one.
func splitLines(s string) []string {
	l := strings.SplitAfter(s, "\n")
	if l[len(l)-1] == "" {
		l = l[:len(l)-1]
	}
	return l
}

// showLine prints a line without its newline, quoted when it holds what a terminal would hide
// or mangle, and marked when the newline is missing (the difference people miss most).
func showLine(l string) string {
	text, nl := strings.CutSuffix(l, "\n")
	odd := !utf8.ValidString(text)
	for _, r := range text {
		if r != '\t' && unicode.IsControl(r) {
			odd = true
		}
	}
	if odd {
		text = strconv.Quote(text)
	}
	if !nl {
		text += "  (no newline at end)"
	}
	return text
}

// diffContext is how many unchanged lines lineDiff shows around a change.
const diffContext = 3

// lineDiff is a line diff of want and got, "-" for want's lines, "+" for got's, with unchanged
// runs longer than the context elided. It is an LCS over lines: quadratic, so very long
// inputs fall back to naming the first differing line.
func lineDiff(want, got string) string {
	a, b := splitLines(want), splitLines(got)
	if len(a)*len(b) > 4_000_000 {
		i := 0
		for i < len(a) && i < len(b) && a[i] == b[i] {
			i++
		}
		w, g := "(end of file)", "(end of file)"
		if i < len(a) {
			w = showLine(a[i])
		}
		if i < len(b) {
			g = showLine(b[i])
		}
		return fmt.Sprintf("\t(too long to diff: %d and %d lines) first difference at line %d:\n\t-%s\n\t+%s", len(a), len(b), i+1, w, g)
	}
	// lcs[i][j] is the LCS length of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type op struct {
		mark byte
		line string
	}
	var ops []op
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			ops = append(ops, op{' ', a[i]})
			i, j = i+1, j+1
		case j == len(b) || (i < len(a) && lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', a[i]})
			i++
		default:
			ops = append(ops, op{'+', b[j]})
			j++
		}
	}
	// Keep unchanged lines only near a change.
	near := make([]bool, len(ops))
	for k, o := range ops {
		if o.mark != ' ' {
			for d := max(0, k-diffContext); d <= min(len(ops)-1, k+diffContext); d++ {
				near[d] = true
			}
		}
	}
	var out strings.Builder
	for k := 0; k < len(ops); {
		if !near[k] {
			n := 0
			for k < len(ops) && !near[k] {
				n, k = n+1, k+1
			}
			fmt.Fprintf(&out, "\t  ... %d unchanged line(s)\n", n)
			continue
		}
		fmt.Fprintf(&out, "\t%c %s\n", ops[k].mark, showLine(ops[k].line))
		k++
	}
	return strings.TrimSuffix(out.String(), "\n")
}
