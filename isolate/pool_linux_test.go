//go:build linux

package isolate

import (
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A change of the host's mount table drops the pool's prewarmed inits: they hold a copy of the
// old one.
func TestPoolDroppedOnMountChange(t *testing.T) {
	needRoot(t)
	if !haveCInit {
		t.Skip("no C init in a binary built without cgo: no pool")
	}
	if poolSize() == 0 {
		t.Skip("ISORUN_POOL=0")
	}
	start(t, testConfig(modeZygote))
	var r *readyInit
	waitUntil(t, "a prewarmed init after a Start", func() bool {
		pool.Lock()
		defer pool.Unlock()
		if len(pool.ready) > 0 {
			r = pool.ready[0]
		}
		return r != nil
	})
	dir := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, ""))
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	waitUntil(t, "the prewarmed init to go after a change of the host's mounts", func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", r.pid))
		return os.IsNotExist(err)
	})
}
