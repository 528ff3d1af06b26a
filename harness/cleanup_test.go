package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/isorun/isorun/fixtures"
	"github.com/isorun/isorun/overlay"
)

// TestCleanupOnFailure runs TestHelperChild in a child test binary that fails in different ways
// with a container running a background command. The child checks, in a cleanup that runs
// after the harness's, that the container's processes are gone; the parent checks again after
// the child has exited.
func TestCleanupOnFailure(t *testing.T) {
	needContainers(t)
	tests := []struct {
		mode string
		want []string // in the child's output
	}{
		{"error", []string{"helper_test: deliberate t.Error", "--- FAIL: TestHelperChild"}},
		{"fatal", []string{"helper_test: deliberate t.Fatal", "--- FAIL: TestHelperChild"}},
		{"mustrun", []string{"harness: container", "false: exit code 1", "--- FAIL: TestHelperChild"}},
		{"panic", []string{"panic: helper_test: deliberate panic"}},
		{"timeout", []string{"killed after WithTimeout(1s)", "--- FAIL: TestHelperChild"}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			exe, err := os.Executable()
			require.NoError(t, err)
			cmd := exec.Command(exe, "-test.run=^TestHelperChild$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnv+"="+tt.mode)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "the child test must fail; err %v, output:\n%s", err, out)
			text := string(out)
			for _, w := range tt.want {
				assert.Contains(t, text, w)
			}
			assert.Contains(t, text, "HELPER-CLEAN", "the harness's cleanup left something:\n%s", text)
			// The failed test's log holds the commands the container ran.
			assert.Regexp(t, `harness: container [0-9a-f]+ on "busybox" ran:\n\s+\$ sh -c 'echo x > /f' -> exit 0`, text)

			m := regexp.MustCompile(`HELPER-INIT (\d+)`).FindStringSubmatch(text)
			require.NotNil(t, m, "no init pid in:\n%s", text)
			pid, _ := strconv.Atoi(m[1])
			_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
			assert.ErrorIs(t, err, os.ErrNotExist, "the container's init %d outlived the child test", pid)
		})
	}
}

// TestHelperChild is the child of TestCleanupOnFailure; it only runs there.
func TestHelperChild(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("a helper: TestCleanupOnFailure runs it in a child process")
	}
	pid := 0
	// Registered before Container, so it runs after the harness's cleanup (cleanups run last
	// first), on every way out of the test.
	t.Cleanup(func() {
		leaks := settledLeaks(false)
		if pid != 0 {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				leaks = append(leaks, fmt.Sprintf("init %d still exists", pid))
			}
		}
		if len(leaks) > 0 {
			fmt.Printf("HELPER-LEAKS:\n\t%s\n", strings.Join(leaks, "\n\t"))
			return
		}
		fmt.Println("HELPER-CLEAN")
	})
	var opts []Option
	if mode == "timeout" {
		opts = append(opts, WithTimeout(time.Second))
	}
	sb := Container(t, fixtures.Busybox(), opts...)
	pid = sb.Container().Pid()
	fmt.Printf("HELPER-INIT %d\n", pid)
	sb.MustRun("sh", "-c", "echo x > /f")
	bg := sb.Command("sleep", "1000")
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	switch mode {
	case "error":
		t.Error("helper_test: deliberate t.Error")
	case "fatal":
		t.Fatal("helper_test: deliberate t.Fatal")
	case "mustrun":
		sb.MustRun("false")
	case "panic":
		panic("helper_test: deliberate panic")
	case "timeout":
		bg.Wait()
	}
}

// TestKeep checks ISORUN_KEEP=1 and WithKeep: the upper layer and the command log stay on
// disk, where the test log says.
func TestKeep(t *testing.T) {
	needContainers(t)
	tests := []struct {
		name string
		env  string
		opts []Option
	}{
		{"ISORUN_KEEP=1", "1", nil},
		{"WithKeep", "", []Option{WithKeep()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("ISORUN_KEEP", tt.env)
			var id string
			f := runFake(func(ft *fakeT) {
				sb := Container(ft, fixtures.Busybox(), tt.opts...)
				id = sb.ID()
				sb.MustRun("sh", "-c", "echo kept > /greeting")
			})
			require.False(t, f.failed, f.report())
			require.Len(t, f.logs, 1, f.report())
			m := regexp.MustCompile(`^harness: ISORUN_KEEP: container ` + id + ` kept its upper layer in (\S+)/upper and its command log in (\S+)$`).FindStringSubmatch(f.logs[0])
			require.NotNil(t, m, "log: %q", f.logs[0])
			dir := m[1]
			assert.Equal(t, filepath.Join(dir, "commands.log"), m[2])
			t.Cleanup(func() { overlay.Remove(dir) })

			b, err := os.ReadFile(filepath.Join(dir, "upper", "greeting"))
			require.NoError(t, err)
			assert.Equal(t, "kept\n", string(b))
			b, err = os.ReadFile(m[2])
			require.NoError(t, err)
			assert.Equal(t, "$ sh -c 'echo kept > /greeting' -> exit 0\n", string(b))
		})
	}
	t.Run("not kept by default", func(t *testing.T) {
		t.Setenv("ISORUN_KEEP", "")
		f := runFake(func(ft *fakeT) {
			Container(ft, fixtures.Busybox()).MustRun("true")
		})
		assert.Empty(t, f.logs)
		assert.Empty(t, settledLeaks(false))
	})
}
