package harness

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/isorun/isorun/fixtures"
)

// TestHostGit runs the host's own git over the host's root filesystem: the repository it makes
// exists only in the container's upper layer, and the diff is exactly what git wrote.
func TestHostGit(t *testing.T) {
	needContainers(t)
	needHostImage(t)
	if _, err := exec.LookPath("git"); err != nil {
		t.Skipf("no git on the host: %v", err)
	}
	var b [4]byte
	rand.Read(b[:])
	// /tmp as the root filesystem has it (a tmpfs mounted on the host's /tmp is not part of
	// the Host image's single lower), under a name nothing else uses.
	repo := "/tmp/isorun-git-" + hex.EncodeToString(b[:])
	_, err := os.Lstat(repo)
	require.ErrorIs(t, err, os.ErrNotExist)

	sb := Container(t, fixtures.Host(), WithWorkdir("/tmp"))
	sb.MustRun("git", "init", "--quiet", "-b", "main", repo)
	sb.MustRun("git", "-C", repo, "-c", "user.name=a", "-c", "user.email=b", "commit", "--quiet", "--allow-empty", "-m", "x")
	assert.Contains(t, sb.MustRun("git", "-C", repo, "log", "--format=%an %s"), "a x")

	diff := sb.Diff()
	// What any git writes for this, whatever its version and templates.
	AssertDiffIncludes(t, diff,
		"A "+repo,
		"A "+repo+"/.git",
		"A "+repo+"/.git/HEAD",
		"A "+repo+"/.git/config",
		"A "+repo+"/.git/refs/heads/main",
		"A "+repo+"/.git/logs/HEAD",
		// The empty tree, the same object in every repository.
		"A "+repo+"/.git/objects/4b/825dc642cb6eb9a060e54bf8d69288fbee4904",
	)
	// And nothing outside the repository: not in $HOME, not in /etc, not in /tmp.
	Ignoring(repo+"/**").AssertDiff(t, diff)
	sb.AssertFile(repo+"/.git/HEAD", "ref: refs/heads/main\n")

	// The host is untouched, while the container still runs and after.
	_, err = os.Lstat(repo)
	assert.ErrorIs(t, err, os.ErrNotExist, "the repository leaked onto the host")
	sb.Close()
	_, err = os.Lstat(repo)
	assert.ErrorIs(t, err, os.ErrNotExist, "the repository leaked onto the host")
	// Diff and files stay readable after Close, until the test ends.
	AssertDiff(t, sb.Diff(), diff.String())
}
