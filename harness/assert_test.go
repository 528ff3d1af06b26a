package harness

import (
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/isorun/isorun/overlay"
)

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		glob, path string
		want       bool
	}{
		{"/root/.ash_history", "/root/.ash_history", true},
		{"/root/.ash_history", "/root/.ash_history/x", false},
		{"/root/.ash_history", "/root", false},
		{"/tmp/**", "/tmp", true},
		{"/tmp/**", "/tmp/a", true},
		{"/tmp/**", "/tmp/a/b/c", true},
		{"/tmp/**", "/tmpx", false},
		{"/tmp/**", "/var/tmp/a", false},
		{"/tmp/*/**", "/tmp", false},
		{"/tmp/*/**", "/tmp/a", true},
		{"/tmp/*/**", "/tmp/a/b", true},
		{"/tmp/*", "/tmp/a", true},
		{"/tmp/*", "/tmp/a/b", false},
		{"/var/log/*.log", "/var/log/dpkg.log", true},
		{"/var/log/*.log", "/var/log/apt/term.log", false},
		{"/var/log/**/*.log", "/var/log/dpkg.log", true},
		{"/var/log/**/*.log", "/var/log/apt/term.log", true},
		{"/var/log/**/*.log", "/var/log/apt/eipp.xz", false},
		{"/a/**/z", "/a/z", true},
		{"/a/**/z", "/a/b/c/z", true},
		{"/a/**/z", "/a/b/c/y", false},
		{"/**", "/anything/at/all", true},
		{"/etc/[ab]*", "/etc/apt", true},
		{"/etc/[ab]*", "/etc/cron.d", false},
		{"/etc/?osts", "/etc/hosts", true},
		{"/etc/", "/etc", true},
		{"/etc/./hosts", "/etc/hosts", true},
		{"/ball", "/b*ll", false}, // a path is not a glob
	}
	for _, tt := range tests {
		t.Run(tt.glob+" "+tt.path, func(t *testing.T) {
			got, err := matchGlob(tt.glob, tt.path)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestMatchGlobErrors(t *testing.T) {
	tests := []struct{ name, glob, wantErr string }{
		{"relative", "tmp/**", `ignore glob "tmp/**": not an absolute path`},
		{"empty", "", `ignore glob "": not an absolute path`},
		{"bad class", "/etc/[a", `ignore glob "/etc/[a": syntax error in pattern`},
		{"bad escape", `/etc/a\`, `ignore glob "/etc/a\\": syntax error in pattern`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := matchGlob(tt.glob, "/etc/a")
			assert.EqualError(t, err, tt.wantErr)
		})
	}
}

func TestParseChangeLine(t *testing.T) {
	tests := []struct {
		name, line string
		want       overlay.Change
		wantErr    string
	}{
		{name: "added", line: "A /greeting", want: overlay.Change{Kind: overlay.Added, Path: "/greeting"}},
		{name: "changed", line: "C /etc/passwd", want: overlay.Change{Kind: overlay.Modified, Path: "/etc/passwd"}},
		{name: "deleted", line: "D /bin/ls", want: overlay.Change{Kind: overlay.Deleted, Path: "/bin/ls"}},
		{name: "space in path", line: "A /my file", want: overlay.Change{Kind: overlay.Added, Path: "/my file"}},
		{name: "extra spaces", line: "A    /x", want: overlay.Change{Kind: overlay.Added, Path: "/x"}},
		{name: "trailing slash cleaned", line: "A /etc/myapp/", want: overlay.Change{Kind: overlay.Added, Path: "/etc/myapp"}},
		{name: "quoted", line: `A "/a\nb"`, want: overlay.Change{Kind: overlay.Added, Path: "/a\nb"}},
		{name: "lowercase kind", line: "a /x", wantErr: `"a /x" is not a diff line`},
		{name: "unknown kind", line: "M /x", wantErr: `"M /x" is not a diff line`},
		{name: "no path", line: "A", wantErr: `"A" is not a diff line`},
		{name: "relative", line: "A etc/passwd", wantErr: `"A etc/passwd": path "etc/passwd" is not absolute`},
		{name: "bad quote", line: `A "/x`, wantErr: `"A \"/x": bad quoted path`},
		{name: "quoted relative", line: `A "x"`, wantErr: `path "x" is not absolute`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseChangeLine(tt.line)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestFormatChangeRoundTrip checks that every path, however odd, survives formatChange and
// parseChangeLine, which is what golden files rely on.
func TestFormatChangeRoundTrip(t *testing.T) {
	tests := []struct{ path, line string }{
		{"/plain", "A /plain"},
		{"/with space", "A /with space"},
		{"/new\nline", `A "/new\nline"`},
		{"/tab\there", `A "/tab\there"`},
		{"/trailing ", `A "/trailing "`},
		{"/\"quote", "A /\"quote"},
		{"/bad\xffutf8", `A "/bad\xffutf8"`},
		{"/ünïcode", "A /ünïcode"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			c := overlay.Change{Kind: overlay.Added, Path: tt.path}
			assert.Equal(t, tt.line, formatChange(c))
			back, err := parseChangeLine(formatChange(c))
			require.NoError(t, err)
			assert.Equal(t, c, back)
		})
	}
}

// installerDiff is the diff the assertion tests check against.
var installerDiff = overlay.Changes{
	{Kind: overlay.Added, Path: "/etc/myapp"},
	{Kind: overlay.Added, Path: "/etc/myapp/config.toml"},
	{Kind: overlay.Modified, Path: "/etc/passwd"},
	{Kind: overlay.Added, Path: "/root/.ash_history"},
	{Kind: overlay.Added, Path: "/tmp/build"},
	{Kind: overlay.Added, Path: "/tmp/build/x.o"},
	{Kind: overlay.Added, Path: "/usr/local/bin/myapp"},
}

func TestDiffAssertions(t *testing.T) {
	noise := Ignoring("/root/.ash_history", "/tmp/**")
	tests := []struct {
		name   string
		check  func(t testing.TB) bool
		wantOK bool
		// wantMsg are substrings of the one error reported on failure.
		wantMsg []string
		// notMsg must not be in it.
		notMsg []string
	}{
		{
			name: "exact, separate arguments",
			check: func(t testing.TB) bool {
				return noise.AssertDiff(t, installerDiff, "A /etc/myapp", "A /etc/myapp/config.toml", "C /etc/passwd", "A /usr/local/bin/myapp")
			},
			wantOK: true,
		},
		{
			name: "exact, one raw block in any order",
			check: func(t testing.TB) bool {
				return noise.AssertDiff(t, installerDiff, `
					A /usr/local/bin/myapp
					C /etc/passwd

					A /etc/myapp/config.toml
					A /etc/myapp
				`)
			},
			wantOK: true,
		},
		{
			name: "exact, everything wrong at once",
			check: func(t testing.TB) bool {
				return noise.AssertDiff(t, installerDiff, "A /etc/myapp", "A /etc/passwd", "A /usr/local/bin/other", "D /bin/ls")
			},
			wantMsg: []string{
				"harness: AssertDiff: the diff is not the one wanted (2 missing, 2 unexpected, 1 of another kind)",
				"missing (wanted, not in the diff):\n\tD /bin/ls\n\tA /usr/local/bin/other\n",
				"unexpected (in the diff, not wanted):\n\tA /etc/myapp/config.toml\n\tA /usr/local/bin/myapp\n",
				"of another kind (want -> got):\n\tA /etc/passwd -> C\n",
				"got:\n\tA /etc/myapp\n\tA /etc/myapp/config.toml\n\tC /etc/passwd\n\tA /usr/local/bin/myapp\n",
				`ignoring "/root/.ash_history", "/tmp/**": 3 change(s) left out`,
			},
		},
		{
			name: "exact without a filter sees the noise",
			check: func(t testing.TB) bool {
				return AssertDiff(t, installerDiff, "A /etc/myapp", "A /etc/myapp/config.toml", "C /etc/passwd", "A /usr/local/bin/myapp")
			},
			wantMsg: []string{"(3 unexpected)", "\tA /root/.ash_history\n\tA /tmp/build\n\tA /tmp/build/x.o\n"},
			notMsg:  []string{"ignoring"},
		},
		{
			name:    "exact, empty diff wanted",
			check:   func(t testing.TB) bool { return AssertDiff(t, nil) },
			wantOK:  true,
			wantMsg: nil,
		},
		{
			name:    "exact, nothing wanted, something changed",
			check:   func(t testing.TB) bool { return AssertDiff(t, installerDiff[:1]) },
			wantMsg: []string{"(1 unexpected)", "want:\n\t(no changes)\n"},
		},
		{
			name:    "exact, something wanted, nothing changed",
			check:   func(t testing.TB) bool { return AssertDiff(t, nil, "A /x") },
			wantMsg: []string{"(1 missing)", "got:\n\t(no changes)"},
		},
		{
			name:   "includes, subset",
			check:  func(t testing.TB) bool { return AssertDiffIncludes(t, installerDiff, "C /etc/passwd", "A /tmp/build") },
			wantOK: true,
		},
		{
			name: "includes, missing and of another kind",
			check: func(t testing.TB) bool {
				return AssertDiffIncludes(t, installerDiff, "D /etc/passwd", "A /srv", "C /etc/myapp")
			},
			wantMsg: []string{
				"harness: AssertDiffIncludes: the diff lacks wanted changes (1 missing, 2 of another kind)",
				"missing (wanted, not in the diff):\n\tA /srv\n",
				"\tC /etc/myapp -> A\n\tD /etc/passwd -> C\n",
				"want at least:\n",
			},
			notMsg: []string{"unexpected"},
		},
		{
			name:   "includes through a filter",
			check:  func(t testing.TB) bool { return noise.AssertDiffIncludes(t, installerDiff, "C /etc/passwd") },
			wantOK: true,
		},
		{
			name:    "a wanted change that the filter ignores is a mistake",
			check:   func(t testing.TB) bool { return noise.AssertDiffIncludes(t, installerDiff, "A /tmp/build/x.o") },
			wantMsg: []string{`want[0]: A /tmp/build/x.o is wanted but ignored by "/tmp/**"`},
		},
		{
			name: "bad lines are reported with the rest",
			check: func(t testing.TB) bool {
				return AssertDiff(t, installerDiff[:1], "A /etc/myapp", "X /nope", "A /x\nrelative", "A /a\nA /b\nC /a")
			},
			wantMsg: []string{
				"(3 missing, 3 bad input)",
				`want[1]: "X /nope" is not a diff line`,
				`want[2] line 2: "relative" is not a diff line`,
				`want[3] line 3: C /a contradicts A /a (want[3] line 1)`,
				"missing (wanted, not in the diff):\n\tA /a\n\tA /b\n\tA /x\n",
			},
		},
		{
			name:    "a testify-style message is pointed out",
			check:   func(t testing.TB) bool { return AssertDiff(t, nil, "A /x", "the installer wrote its file") },
			wantMsg: []string{`want[1]: "the installer wrote its file" is not a diff line (want "A /path", "C /path" or "D /path"); a message? diff assertions take none, only changes`},
		},
		{
			name:    "bad globs are reported",
			check:   func(t testing.TB) bool { return Ignoring("tmp", "/[").AssertDiff(t, nil) },
			wantMsg: []string{`ignore glob "tmp": not an absolute path`, `ignore glob "/[": syntax error in pattern`},
		},
		{
			name:    "odd paths are quoted",
			check:   func(t testing.TB) bool { return AssertDiff(t, overlay.Changes{{Kind: overlay.Added, Path: "/a\nb"}}) },
			wantMsg: []string{"unexpected (in the diff, not wanted):\n\tA \"/a\\nb\"\n"},
		},
		{
			name: "a quoted odd path matches",
			check: func(t testing.TB) bool {
				return AssertDiff(t, overlay.Changes{{Kind: overlay.Added, Path: "/a\nb"}}, `A "/a\nb"`)
			},
			wantOK: true,
		},
		{
			name:   "duplicates in want are one change",
			check:  func(t testing.TB) bool { return AssertDiff(t, installerDiff[:1], "A /etc/myapp", "A /etc/myapp") },
			wantOK: true,
		},
		{
			name: "chained Ignoring adds globs",
			check: func(t testing.TB) bool {
				return Ignoring("/tmp/**").Ignoring("/root/*").AssertDiff(t, installerDiff, "A /etc/myapp", "A /etc/myapp/config.toml", "C /etc/passwd", "A /usr/local/bin/myapp")
			},
			wantOK: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ok bool
			f := runFake(func(ft *fakeT) { ok = tt.check(ft) })
			assert.Equal(t, tt.wantOK, ok, "return value")
			assert.Equal(t, !tt.wantOK, f.failed, "failed")
			assert.False(t, f.fatal, "an Assert function must not stop the test")
			if tt.wantOK {
				assert.Empty(t, f.errors)
				return
			}
			require.Len(t, f.errors, 1, "every difference in one report")
			for _, m := range tt.wantMsg {
				assert.Contains(t, f.errors[0], m)
			}
			for _, m := range tt.notMsg {
				assert.NotContains(t, f.errors[0], m)
			}
		})
	}
}

// TestDiffMessage pins one whole failure message: it is what users read.
func TestDiffMessage(t *testing.T) {
	f := runFake(func(t *fakeT) {
		Ignoring("/tmp/**").AssertDiff(t, installerDiff[:5], "A /etc/myapp/config.toml", "A /etc/passwd", "A /usr/local/bin/myapp")
	})
	require.Len(t, f.errors, 1)
	assert.Equal(t, `harness: AssertDiff: the diff is not the one wanted (1 missing, 2 unexpected, 1 of another kind)
missing (wanted, not in the diff):
	A /usr/local/bin/myapp
unexpected (in the diff, not wanted):
	A /etc/myapp
	A /root/.ash_history
of another kind (want -> got):
	A /etc/passwd -> C
want:
	A /etc/myapp/config.toml
	A /etc/passwd
	A /usr/local/bin/myapp
got:
	A /etc/myapp
	A /etc/myapp/config.toml
	C /etc/passwd
	A /root/.ash_history
ignoring "/tmp/**": 1 change(s) left out`, f.errors[0])
}

func TestRequireStopsTheTest(t *testing.T) {
	tests := []struct {
		name    string
		require func(t testing.TB)
	}{
		{"RequireDiff", func(t testing.TB) { RequireDiff(t, installerDiff, "A /x") }},
		{"RequireDiffIncludes", func(t testing.TB) { RequireDiffIncludes(t, installerDiff, "A /x") }},
		{"DiffFilter.RequireDiff", func(t testing.TB) { Ignoring("/tmp/**").RequireDiff(t, nil, "A /x") }},
		{"DiffFilter.RequireDiffIncludes", func(t testing.TB) { Ignoring("/tmp/**").RequireDiffIncludes(t, nil, "A /x") }},
		{"RequireDiffGolden", func(t testing.TB) { RequireDiffGolden(t, nil, "../escape") }},
		{"DiffFilter.RequireDiffGolden", func(t testing.TB) { Ignoring("/x").RequireDiffGolden(t, nil, "/abs") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after := false
			f := runFake(func(ft *fakeT) {
				tt.require(ft)
				after = true
			})
			assert.True(t, f.fatal, "FailNow called")
			assert.False(t, after, "the test went on after a failed Require")
			assert.Len(t, f.errors, 1)
		})
	}
	f := runFake(func(ft *fakeT) { RequireDiff(ft, installerDiff[:1], "A /etc/myapp") })
	assert.False(t, f.failed, "a passing Require does not fail")
}

func TestDiffFilterFilter(t *testing.T) {
	got := Ignoring("/tmp/**", "/root/.ash_history", "relative/is/ignored").Filter(installerDiff)
	assert.Equal(t, "A /etc/myapp\nA /etc/myapp/config.toml\nC /etc/passwd\nA /usr/local/bin/myapp\n", got.String())
	assert.Equal(t, installerDiff, DiffFilter{}.Filter(installerDiff), "the zero filter keeps everything")
}

// TestGolden runs AssertDiffGolden in a scratch directory: missing file, update by -update and
// by ISORUN_UPDATE=1, match, mismatch, a broken file and bad names.
func TestGolden(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("ISORUN_UPDATE", "")
	diff := installerDiff[:3]

	f := runFake(func(t *fakeT) { AssertDiffGolden(t, diff, "install") })
	require.Len(t, f.errors, 1)
	assert.Equal(t, "harness: AssertDiffGolden: golden file testdata/install.diff does not exist; run `go test -update` (or `ISORUN_UPDATE=1 go test` in a package without harness.Main) to write it from this diff:\n"+
		"\tA /etc/myapp\n\tA /etc/myapp/config.toml\n\tC /etc/passwd", f.errors[0])

	t.Run("update by ISORUN_UPDATE=1", func(t *testing.T) {
		t.Setenv("ISORUN_UPDATE", "1")
		f := runFake(func(t *fakeT) { Ignoring("/tmp/**").AssertDiffGolden(t, installerDiff, "sub/install.diff") })
		assert.False(t, f.failed, f.report())
		assert.Equal(t, []string{"harness: AssertDiffGolden: wrote testdata/sub/install.diff (5 changes)"}, f.logs)
		b, err := os.ReadFile("testdata/sub/install.diff")
		require.NoError(t, err)
		assert.Equal(t, "A /etc/myapp\nA /etc/myapp/config.toml\nC /etc/passwd\nA /root/.ash_history\nA /usr/local/bin/myapp\n", string(b))
	})

	t.Run("update by -update", func(t *testing.T) {
		// TestMain runs the tests through Main's code, which registered -update.
		fl := flag.Lookup("update")
		require.NotNil(t, fl, "harness.Main registers -update")
		require.NoError(t, fl.Value.Set("true"))
		defer fl.Value.Set("false")
		f := runFake(func(t *fakeT) { AssertDiffGolden(t, diff, "install") })
		assert.False(t, f.failed, f.report())
		b, err := os.ReadFile(filepath.Join("testdata", "install.diff"))
		require.NoError(t, err)
		assert.Equal(t, diff.String(), string(b))
	})

	t.Run("-update parses on the command line", func(t *testing.T) {
		exe, err := os.Executable() // os.Args[0] may be relative, and this test changed directory
		require.NoError(t, err)
		cmd := exec.Command(exe, "-test.run=^TestPlatformPolicy$", "-update")
		cmd.Env = append(os.Environ(), helperEnv+"=flag")
		out, err := cmd.CombinedOutput()
		assert.NoError(t, err, "%s", out)
	})

	t.Run("match", func(t *testing.T) {
		f := runFake(func(t *fakeT) { AssertDiffGolden(t, diff, "install") })
		assert.False(t, f.failed, f.report())
		f = runFake(func(t *fakeT) { Ignoring("/tmp/**").AssertDiffGolden(t, installerDiff, "sub/install") })
		assert.False(t, f.failed, f.report())
	})

	t.Run("mismatch", func(t *testing.T) {
		f := runFake(func(t *fakeT) { AssertDiffGolden(t, installerDiff[1:4], "install") })
		require.Len(t, f.errors, 1)
		msg := f.errors[0]
		assert.Contains(t, msg, "harness: AssertDiffGolden: the diff is not the one wanted (1 missing, 1 unexpected)")
		assert.Contains(t, msg, "missing (wanted, not in the diff):\n\tA /etc/myapp\n")
		assert.Contains(t, msg, "unexpected (in the diff, not wanted):\n\tA /root/.ash_history\n")
		assert.Contains(t, msg, "(want is testdata/install.diff; run `go test -update` to accept the new diff)")
	})

	t.Run("broken golden file", func(t *testing.T) {
		require.NoError(t, os.WriteFile("testdata/broken.diff", []byte("A /etc/myapp\nthis is not a change\n"), 0o644))
		f := runFake(func(t *fakeT) { AssertDiffGolden(t, diff[:1], "broken") })
		require.Len(t, f.errors, 1)
		assert.Contains(t, f.errors[0], `testdata/broken.diff:2: "this is not a change" is not a diff line`)
	})

	t.Run("bad names", func(t *testing.T) {
		for _, name := range []string{"", "../up", "/abs/path", "a/../../b"} {
			f := runFake(func(t *fakeT) { AssertDiffGolden(t, diff, name) })
			require.Len(t, f.errors, 1, name)
			assert.Contains(t, f.errors[0], "harness: AssertDiffGolden: golden file", name)
		}
	})
}

func TestLineDiff(t *testing.T) {
	tests := []struct {
		name, want, got, diff string
	}{
		{
			name: "one line changed",
			want: "port = 8080\nhost = \"a\"\n",
			got:  "port = 9090\nhost = \"a\"\n",
			diff: "\t- port = 8080\n\t+ port = 9090\n\t  host = \"a\"",
		},
		{
			name: "missing newline at end",
			want: "x\n",
			got:  "x",
			diff: "\t- x\n\t+ x  (no newline at end)",
		},
		{
			name: "added and removed",
			want: "a\nb\nc\n",
			got:  "a\nc\nd\n",
			diff: "\t  a\n\t- b\n\t  c\n\t+ d",
		},
		{
			name: "long unchanged runs are elided",
			want: "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n",
			got:  "1\n2\n3\n4\n5\n6\n7\n8\n9\nten\n",
			diff: "\t  ... 6 unchanged line(s)\n\t  7\n\t  8\n\t  9\n\t- 10\n\t+ ten",
		},
		{
			name: "empty want",
			want: "",
			got:  "x\n",
			diff: "\t+ x",
		},
		{
			name: "control characters are quoted",
			want: "a\n",
			got:  "a\x00\n",
			diff: "\t- a\n\t+ \"a\\x00\"",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.diff, lineDiff(tt.want, tt.got))
		})
	}
	long := strings.Repeat("x\n", 3000)
	assert.Equal(t, "\t(too long to diff: 3000 and 3001 lines) first difference at line 3001:\n\t-(end of file)\n\t+y",
		lineDiff(long, long+"y\n"))
}

func TestPlatformPolicy(t *testing.T) {
	apparmor := errors.New("rootless containers cannot run here: AppArmor denies unprivileged user namespaces their capabilities (sysctl kernel.apparmor_restrict_unprivileged_userns=1)")
	tests := []struct {
		name       string
		goos       string
		blocked    error
		require    string
		wantReason string
		wantFail   bool
	}{
		{"linux", "linux", nil, "", "", false},
		{"linux, required", "linux", nil, "1", "", false},
		{"darwin skips", "darwin", nil, "", "isorun: unsupported on darwin", false},
		{"darwin, required, fails", "darwin", nil, "1", "isorun: unsupported on darwin (and ISORUN_REQUIRE=1 makes that a failure)", true},
		{"rootless blocked skips", "linux", apparmor, "", "isorun: " + apparmor.Error(), false},
		{"rootless blocked, required, fails", "linux", apparmor, "1", "isorun: " + apparmor.Error() + " (and ISORUN_REQUIRE=1 makes that a failure)", true},
		{"only 1 requires", "windows", nil, "true", "isorun: unsupported on windows", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, fail := platformPolicy(tt.goos, tt.blocked, tt.require)
			assert.Equal(t, tt.wantReason, reason)
			assert.Equal(t, tt.wantFail, fail)
		})
	}
}
