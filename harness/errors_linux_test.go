package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/isorun/isorun/fixtures"
	"github.com/isorun/isorun/isolate"
	"github.com/isorun/isorun/overlay"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPublicEntryPointsBadInput walks the public entry points of every package with bad input:
// each returns an error that names the input (and, where there is one, what was wanted), none
// panics, and none leaves a mount, a process or a state directory behind (checked at the end,
// as the whole run's TestMain checks again).
func TestPublicEntryPointsBadInput(t *testing.T) {
	needContainers(t)
	dir := t.TempDir()
	notTar := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(notTar, []byte("just some notes\n"), 0o644))
	emptyTar := filepath.Join(dir, "empty.tar")
	require.NoError(t, os.WriteFile(emptyTar, nil, 0o644))
	var hostile bytes.Buffer
	tw := tar.NewWriter(&hostile)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "../../escape", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}))
	_, err := tw.Write([]byte("x"))
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	hostileTar := filepath.Join(dir, "hostile.tar")
	require.NoError(t, os.WriteFile(hostileTar, hostile.Bytes(), 0o644))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resolve := func(ref string) error {
		img, err := fixtures.Open(ref)
		if err != nil {
			return err
		}
		_, err = img.Resolve()
		return err
	}
	// engine runs f on a busybox container, started and released around it.
	engine := func(f func(e *Engine) error) func() error {
		return func() error {
			e, err := Start(ctx, fixtures.Busybox())
			if err != nil {
				return fmt.Errorf("unexpected: %w", err)
			}
			defer e.Release()
			return f(e)
		}
	}
	tests := []struct {
		name string
		call func() error
		want []string // each must appear in the error
	}{
		// overlay
		{"overlay.Mount: missing lower", func() error {
			return overlay.Mount(filepath.Join(dir, "merged"), overlay.Config{Lowers: []string{"/no/such/lower"}})
		}, []string{"/no/such/lower"}},
		{"overlay.Open: no lowers", func() error {
			f, err := overlay.Open(overlay.Config{})
			if f != nil {
				f.Close()
			}
			return err
		}, []string{"lower"}},
		{"overlay.Unmount: not a mount", func() error { return overlay.Unmount(dir) }, []string{dir}},
		{"overlay.Diff: missing upper", func() error {
			_, err := overlay.Diff("/no/such/upper", []string{dir})
			return err
		}, []string{"/no/such/upper"}},
		{"overlay.ApplyLayer: path traversal", func() error {
			return overlay.ApplyLayer(t.TempDir(), bytes.NewReader(hostile.Bytes()), overlay.ApplyOptions{})
		}, []string{"../../escape"}},
		{"overlay.ApplyLayer: not a tar", func() error {
			return overlay.ApplyLayer(t.TempDir(), strings.NewReader(strings.Repeat("garbage ", 200)), overlay.ApplyOptions{})
		}, []string{"tar"}},
		{"overlay.Changes: bad JSON", func() error {
			var c overlay.Changes
			return c.UnmarshalJSON([]byte(`[{"kind":"Q","path":"/x"}]`))
		}, []string{`"Q"`}},
		// fixtures
		{"fixtures.Open: missing path", func() error { return resolve("/no/such/image.tar") }, []string{"/no/such/image.tar"}},
		{"fixtures.Open: not a tar", func() error { return resolve(notTar) }, []string{notTar, "not a tar"}},
		{"fixtures.Open: empty tar", func() error { return resolve(emptyTar) }, []string{emptyTar}},
		{"fixtures.Open: hostile tar", func() error { return resolve(hostileTar) }, []string{hostileTar, "../../escape"}},
		{"fixtures.Open: empty reference", func() error { return resolve("") }, []string{"empty reference"}},
		{"fixtures.Remove: unknown digest", func() error { return fixtures.Remove("sha256:" + strings.Repeat("0", 64)) }, []string{strings.Repeat("0", 64)}},
		{"fixtures.Files: entry outside the root", func() error {
			_, err := fixtures.Files(fixtures.File("../etc/x", "y")).Resolve()
			return err
		}, []string{`"../etc/x"`}},
		{"fixtures.Commit: missing upper", func() error {
			_, err := fixtures.Commit(fixtures.Busybox(), "/no/such/upper")
			return err
		}, []string{"/no/such/upper"}},
		// isolate
		{"isolate.Start: missing lower", func() error {
			c, err := isolate.Start(ctx, isolate.Config{Lowers: []string{"/no/such/lower"}})
			if c != nil {
				c.Close()
				c.Release()
			}
			return err
		}, []string{"/no/such/lower"}},
		{"isolate.Start: missing volume source", func() error {
			res, err := fixtures.Busybox().Resolve()
			if err != nil {
				return fmt.Errorf("unexpected: %w", err)
			}
			c, err := isolate.Start(ctx, isolate.Config{Lowers: res.Lowers, Mounts: []isolate.Mount{{Type: "bind", Source: notTar + "/sub", Target: "/data"}}})
			if c != nil {
				c.Close()
				c.Release()
			}
			return err
		}, []string{notTar + "/sub"}}, // a missing source is made; one under a file cannot be
		// harness
		{"harness.ParseVolume", func() error { _, err := ParseVolume("/only-one-part"); return err }, []string{`"/only-one-part"`, "HOST:CTR"}},
		{"harness.ParseMemory", func() error { _, err := ParseMemory("12q"); return err }, []string{`"12q"`}},
		{"harness.Start: missing image", func() error {
			img, err := fixtures.Open("/no/such/image.tar")
			if err != nil {
				return err
			}
			e, err := Start(ctx, img)
			if e != nil {
				e.Release()
			}
			return err
		}, []string{"/no/such/image.tar"}},
		{"harness.Start: unknown user", func() error {
			e, err := Start(ctx, fixtures.Busybox(), WithUser("nobody-here"))
			if e != nil {
				e.Release()
			}
			return err
		}, []string{`"nobody-here"`}},
		{"harness.Start: relative volume target", func() error {
			e, err := Start(ctx, fixtures.Busybox(), WithVolume(t.TempDir(), "data", false))
			if e != nil {
				e.Release()
			}
			return err
		}, []string{`"data"`}},
		{"Engine.Command: missing command", engine(func(e *Engine) error { return e.Command("no-such-command").Run() }), []string{`"no-such-command"`}},
		{"Engine.Command: missing working dir", engine(func(e *Engine) error {
			cmd := e.Command("true")
			cmd.Dir = "/nowhere"
			return cmd.Run()
		}), []string{"/nowhere"}},
		{"Engine.ReadFile: missing file", engine(func(e *Engine) error { _, err := e.ReadFile("/no/such/file"); return err }), []string{"/no/such/file"}},
		{"Engine.WriteFile: into a file", engine(func(e *Engine) error { return e.WriteFile("/etc/passwd/x", []byte("y"), 0o644) }), []string{"/etc/passwd/x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			require.NotPanics(t, func() { err = tt.call() })
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "unexpected: ")
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w, "the error must name the input")
			}
			t.Logf("%v", err)
		})
	}
	assert.Empty(t, settledLeaks(false), "bad input left something behind")
}
