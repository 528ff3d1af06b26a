package isolate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSetupErrors: a container that cannot be set up is an error that names the step and the
// path, and leaves nothing behind: no mount, no process, no directory it made.
func TestSetupErrors(t *testing.T) {
	forModes(t, func(t *testing.T, cfg Config) {
		host := t.TempDir()
		file := filepath.Join(host, "a-file")
		require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
		vol := filepath.Join(host, "vol")
		require.NoError(t, os.Mkdir(vol, 0o755))
		bind := func(target string) Mount { return Mount{Type: "bind", Source: vol, Target: target} }
		for _, tc := range []struct {
			name     string
			change   func(*Config)
			setup    bool     // an error of the init's (*SetupError), else of the parent's checks
			mentions []string // in the error's text
		}{
			{name: "no lowers", change: func(c *Config) { c.Lowers = nil },
				mentions: []string{"Config.Lowers is empty"}},
			{name: "missing lower", change: func(c *Config) { c.Lowers = []string{filepath.Join(host, "no-such-layer")} },
				setup: true, mentions: []string{"open lower", filepath.Join(host, "no-such-layer"), "no such file"}},
			{name: "a lower is a file", change: func(c *Config) { c.Lowers = []string{file, testRoot} },
				setup: true, mentions: []string{"open lower", file, "not a directory"}},
			{name: "relative lower", change: func(c *Config) { c.Lowers = []string{"rel/layer"} },
				mentions: []string{`"rel/layer"`, "not an absolute path"}},
			{name: "Upper without Work", change: func(c *Config) { c.Upper = host },
				mentions: []string{"Upper and Config.Work"}},
			{name: "relative target", change: func(c *Config) { c.Mounts = []Mount{bind("data")} },
				mentions: []string{`"data"`, "not an absolute path"}},
			{name: "target in /proc", change: func(c *Config) { c.Mounts = []Mount{bind("/proc/x")} },
				mentions: []string{`"/proc/x"`, "/proc"}},
			{name: "target /sys", change: func(c *Config) { c.Mounts = []Mount{bind("/sys")} },
				mentions: []string{`"/sys"`}},
			{name: "target /", change: func(c *Config) { c.Mounts = []Mount{bind("/")} },
				mentions: []string{`"/"`, "root"}},
			{name: "target /..", change: func(c *Config) { c.Mounts = []Mount{bind("/data/../..")} },
				mentions: []string{`"/data/../.."`, "root"}},
			{name: "target /dev", change: func(c *Config) { c.Mounts = []Mount{bind("/dev")} },
				mentions: []string{`"/dev"`}},
			{name: "target twice", change: func(c *Config) { c.Mounts = []Mount{bind("/data"), bind("/data/")} },
				mentions: []string{"/data", "twice"}},
			{name: "unknown type", change: func(c *Config) { c.Mounts = []Mount{{Type: "nfs", Target: "/x"}} },
				mentions: []string{"/x", `"nfs"`}},
			{name: "target under a file", change: func(c *Config) { c.Mounts = []Mount{bind("/etc/passwd/x")} },
				setup: true, mentions: []string{"mount point", "/etc/passwd", "not a directory"}},
			{name: "directory volume on a file", change: func(c *Config) { c.Mounts = []Mount{bind("/etc/passwd")} },
				setup: true, mentions: []string{vol, "/etc/passwd"}},
			{name: "file volume on a directory", change: func(c *Config) {
				c.Mounts = []Mount{{Type: "bind", Source: file, Target: "/etc"}}
			}, setup: true, mentions: []string{file, "/etc"}},
			{name: "source under a file", change: func(c *Config) { c.Mounts = []Mount{{Type: "bind", Source: file + "/sub", Target: "/x"}} },
				mentions: []string{file + "/sub", "not a directory"}},
			{name: "missing source then a bad target", change: func(c *Config) {
				c.Mounts = []Mount{{Type: "bind", Source: filepath.Join(host, "made/by/start"), Target: "/data"}, bind("/etc/passwd/x")}
			}, setup: true, mentions: []string{"/etc/passwd"}},
			{name: "bad tmpfs option", change: func(c *Config) { c.Mounts = []Mount{{Type: "tmpfs", Target: "/t", Options: "size=banana"}} },
				setup: true, mentions: []string{"tmpfs", "size=banana", "invalid argument"}},
			{name: "hostname too long", change: func(c *Config) { c.Hostname = strings.Repeat("h", 65) },
				setup: true, mentions: []string{"sethostname", "invalid argument"}},
			{name: "NUL in an argument", change: func(c *Config) { c.Hostname = "a\x00b" },
				mentions: []string{"NUL"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := cfg
				cfg.Mounts = nil
				tc.change(&cfg)
				hostBefore := listTree(t, host)
				mountsBefore, err := readMountinfo()
				require.NoError(t, err)

				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				c, err := Start(ctx, cfg)
				if c != nil {
					c.Release()
				}
				require.Error(t, err)
				msg := err.Error()
				assert.True(t, strings.HasPrefix(msg, "isolate: "), "%q", msg)
				for _, m := range tc.mentions {
					assert.Contains(t, strings.ToLower(msg), strings.ToLower(m))
				}
				var se *SetupError
				if assert.Equal(t, tc.setup, errors.As(err, &se), "a *SetupError: %v", err) && tc.setup {
					assert.NotEmpty(t, se.Step)
					assert.NotEmpty(t, se.ID)
					assert.Contains(t, msg, se.ID, "the error names the container")
				}

				// Nothing left: mounts, processes, directories.
				mountsAfter, err := readMountinfo()
				require.NoError(t, err)
				assert.Empty(t, ourNewMounts(mountsBefore, mountsAfter))
				waitNoDescendants(t, time.Second)
				assert.Equal(t, hostBefore, listTree(t, host), "the host directory after a failed start")
			})
		}
	})
}

// listTree lists the paths under dir.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		out = append(out, p)
		return err
	}))
	return out
}

// waitNoDescendants waits until this process has no running descendant but the zygotes (and
// fails the test when one is left after limit): a failed container start leaves no init behind.
func waitNoDescendants(t *testing.T, limit time.Duration) {
	t.Helper()
	zpids := zygotePids()
	deadline := time.Now().Add(limit)
	for {
		left := descendants(os.Getpid(), zpids...)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left after a failed start: %v", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// descendants lists the running processes below pid, except skip itself (its children count).
func descendants(pid int, skip ...int) []string {
	parent := map[int]int{}
	comm := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || !alive(p) {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[p] = pp
		comm[p] = s[strings.IndexByte(s, '(')+1 : i]
	}
	var out []string
	for p := range parent {
		if slices.Contains(skip, p) || comm[p] == "isorun-ready" { // the zygote's prewarmed inits: the pool's, not leaks
			continue
		}
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, fmt.Sprintf("%d (%s)", p, comm[p]))
				break
			}
		}
	}
	return out
}
