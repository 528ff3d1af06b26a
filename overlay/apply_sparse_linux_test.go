package overlay

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestApplyLayerSparse: a sparse entry is written with holes, not as the gigabytes of zeros it
// declares (FuzzApplyLayer found a 10 kB archive that wrote 8 GB), and its data lands where
// the sparse map says.
func TestApplyLayerSparse(t *testing.T) {
	root := t.TempDir()
	const size = 1 << 30
	// testdata/sparse-1g.tar: one PAX sparse (GNU 1.0) file of 1 GiB whose only data is
	// "hello" at 512 MiB, 10 kB of archive (written by Python's tarfile: Go's tar writer
	// drops GNU.sparse records).
	layer, err := os.Open("testdata/sparse-1g.tar")
	require.NoError(t, err)
	defer layer.Close()
	require.NoError(t, ApplyLayer(root, layer, ApplyOptions{NoChown: true}))
	p := filepath.Join(root, "bomb")
	var st unix.Stat_t
	require.NoError(t, unix.Stat(p, &st))
	assert.EqualValues(t, size, st.Size)
	assert.Less(t, st.Blocks*512, int64(1<<20), "the holes take no disk")
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	got := make([]byte, 7)
	_, err = f.ReadAt(got, size/2-1)
	require.NoError(t, err)
	assert.Equal(t, "\x00hello\x00", string(got))
}
