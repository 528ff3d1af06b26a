//go:build linux

package isolate

import (
	"fmt"
	"os"
	"testing"
	"time"

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
	for deadline := time.Now().Add(10 * time.Second); r == nil; time.Sleep(5 * time.Millisecond) {
		pool.Lock()
		if len(pool.ready) > 0 {
			r = pool.ready[0]
		}
		pool.Unlock()
		require.False(t, time.Now().After(deadline), "no prewarmed init 10s after a Start")
	}
	dir := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, ""))
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", r.pid)); os.IsNotExist(err) {
			break
		}
		require.False(t, time.Now().After(deadline), "a prewarmed init outlived a change of the host's mounts by 10s")
	}
}
