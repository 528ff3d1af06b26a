package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/isorun/isorun/fixtures"
	"github.com/isorun/isorun/overlay"
)

// TestParallelContainers runs 30 containers at once, each changing its own filesystem in the
// same places, and checks that none sees another's changes and that nothing is left once they
// are done: no container process, no overlay mount, no state directory.
func TestParallelContainers(t *testing.T) {
	needContainers(t)
	const n = 30
	// The subtests run in parallel with each other but not with the rest of the package (this
	// test is not parallel), so after the group nothing else can hold a container.
	t.Run("group", func(t *testing.T) {
		for i := range n {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				sb := Container(t, fixtures.Busybox(), WithHostname(fmt.Sprintf("c%d", i)), WithEnv(fmt.Sprintf("N=%d", i)))
				sb.MustRun("sh", "-c", `echo "$N $(hostname)" > /tmp/who && rm /bin/ls && mkdir -p /srv/$N && sleep 0.1`)
				AssertDiff(t, sb.Diff(), "A /tmp/who", "D /bin/ls", "A /srv", fmt.Sprintf("A /srv/%d", i))
				sb.AssertFile("/tmp/who", fmt.Sprintf("%d c%d\n", i, i))
				r := sb.Run("ls", "/srv")
				assert.Equal(t, 127, r.ExitCode, "ls was deleted in this container")
				assert.Equal(t, fmt.Sprintf("%d\n", i), sb.MustRun("busybox", "ls", "/srv"))
			})
		}
	})
	if leaks := settledLeaks(false); len(leaks) > 0 {
		t.Errorf("left behind by %d containers:\n\t%s", n, strings.Join(leaks, "\n\t"))
	}
}

// TestFindLeaks checks the checker: it must see a running container's processes and an
// overlay mounted on this test's directories, or the leak checks above prove nothing.
func TestFindLeaks(t *testing.T) {
	needContainers(t)
	require.Empty(t, settledLeaks(false), "leaks before the test")

	sb := Container(t, fixtures.Busybox())
	cmd := sb.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	// Start returns once exec has succeeded, but the kernel sets the new command line a
	// moment later.
	var leaks string
	assert.Eventually(t, func() bool {
		leaks = strings.Join(findLeaks(false), "\n")
		return strings.Contains(leaks, ": sleep 60")
	}, 5*time.Second, 10*time.Millisecond, "the container's command")
	assert.Contains(t, leaks, fmt.Sprintf("process %d (state ", sb.Container().Pid()), "the container's init")
	sb.Close()
	assert.Empty(t, settledLeaks(false), "after Close")

	if os.Geteuid() != 0 {
		t.Skip("not root: the checker saw the container's processes; its check for overlays mounted on the host needs one mounted, which takes root (rootless containers mount only in their own namespaces)")
	}
	dir := filepath.Join(testRoot, "tmp", "isorun-leakcheck")
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	require.NoError(t, overlay.Mount(filepath.Join(dir, "merged"), overlay.Config{
		Lowers: []string{filepath.Join(dir, "lower")}, Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work"),
	}))
	leaks = strings.Join(findLeaks(false), "\n")
	assert.Contains(t, leaks, "overlay mount: ")
	assert.Contains(t, leaks, "TMPDIR: "+dir)
	require.NoError(t, overlay.Unmount(filepath.Join(dir, "merged")))
	require.NoError(t, overlay.Remove(dir))
	assert.Empty(t, settledLeaks(false), "after unmounting")

	// Unfinished work in the cache's tmp/ and another process's committed layers in runs/.
	cache := filepath.Join(testRoot, "cache", "v1")
	for _, d := range []string{"tmp/unpack-leakcheck", "runs/run-1-leakcheck"} {
		require.NoError(t, os.MkdirAll(filepath.Join(cache, d), 0o755))
	}
	leaks = strings.Join(findLeaks(true), "\n")
	assert.Contains(t, leaks, "cache tmp/: unpack-leakcheck")
	assert.Contains(t, leaks, "cache runs/: run-1-leakcheck (not this process's)")
	for _, d := range []string{"tmp/unpack-leakcheck", "runs/run-1-leakcheck"} {
		require.NoError(t, os.Remove(filepath.Join(cache, d)))
	}
	assert.Empty(t, findLeaks(true), "after removing them")
}
