package harness

import (
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/isorun/isorun/fixtures"
	"github.com/isorun/isorun/isolate"
)

func TestParseMemory(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "1048576", want: 1 << 20},
		{in: "512b", want: 512},
		{in: "64k", want: 64 << 10},
		{in: "64m", want: 64 << 20},
		{in: "64M", want: 64 << 20},
		{in: "64MiB", want: 64 << 20},
		{in: "64mb", want: 64 << 20},
		{in: "1.5g", want: 3 << 29},
		{in: " 2G ", want: 2 << 30},
		{in: "", bad: true},
		{in: "m", bad: true},
		{in: "0", bad: true},
		{in: "-1m", bad: true},
		{in: "64x", bad: true},
		{in: "99999999999g", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseMemory(tc.in)
			if tc.bad {
				assert.ErrorContains(t, err, "memory size")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestWithMemory(t *testing.T) {
	needContainers(t)
	needResources(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox(), WithMemory(32<<20))
	r := sb.Run("tail", "/dev/zero")
	assert.Equal(t, 137, r.ExitCode)
	assert.True(t, r.OOMKilled, "OOMKilled")
	assert.ErrorContains(t, r.Err, "out of memory")
	st := sb.Stats()
	assert.GreaterOrEqual(t, st.OOMKills, int64(1))
	assert.LessOrEqual(t, st.MemoryPeak, int64(32<<20))
	r = sb.Run("true")
	assert.Equal(t, 0, r.ExitCode)
	assert.False(t, r.OOMKilled)
}

func TestWithPids(t *testing.T) {
	needContainers(t)
	needResources(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox(), WithPids(10))
	// Twenty background sleeps: the ones past the limit fail to fork.
	r := sb.Run("sh", "-c", "for i in $(seq 20); do sleep 5 & done 2>/dev/null; kill $(jobs -p) 2>/dev/null; true")
	assert.True(t, r.PidsLimited, "PidsLimited; stderr: %s", r.Stderr)
	assert.False(t, r.OOMKilled)
	assert.Positive(t, sb.Stats().PidsLimited)
}

func TestWithCPUAndAccounting(t *testing.T) {
	needContainers(t)
	needResources(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox(), WithCPU(1.5))
	sb.MustRun("sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")
	assert.Positive(t, sb.Stats().CPU, "CPU time is accounted")
	acc := Container(t, fixtures.Busybox(), WithAccounting())
	acc.MustRun("true")
	assert.Positive(t, acc.Stats().MemoryPeak)
	sb.Close()
	assert.Positive(t, sb.Stats().CPU, "the last reading stays after Close")

	e, err := Start(t.Context(), fixtures.Busybox())
	require.NoError(t, err)
	defer e.Release()
	_, err = e.Stats()
	assert.ErrorContains(t, err, "WithAccounting")
}

// resourcesBlocked is what stops resource limits here (isolate.ResourcesBlocker), probed once.
var resourcesBlocked = sync.OnceValue(isolate.ResourcesBlocker)

// needResources skips a test of resource limits where a rootless process cannot make cgroups
// (no delegated cgroup it may write), naming why; as root they must work.
func needResources(t *testing.T) {
	t.Helper()
	if err := resourcesBlocked(); err != nil {
		if os.Geteuid() == 0 && os.Getenv("ISORUN_ROOTLESS") == "" {
			t.Fatalf("resource limits as root: %v", err)
		}
		t.Skipf("rootless: resource limits unavailable: %v", err)
	}
}
