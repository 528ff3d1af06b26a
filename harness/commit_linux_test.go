package harness

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/isorun/isorun/fixtures"
	"github.com/isorun/isorun/overlay"
)

// treeScript lists the container's root filesystem, one line per path: type, mode, owner, and
// for files size and checksum, for symlinks the target. Directory sizes and times are left out:
// they differ between an upper on tmpfs and a committed layer on disk without meaning anything.
const treeScript = `set -e
skip='( -path /proc -o -path /sys -o -path /dev ) -prune -o'
{
	find / -xdev $skip -type d -exec stat -c 'd %n %a %u:%g' {} +
	find / -xdev $skip -type l -exec stat -c 'l %N %u:%g' {} +
	find / -xdev $skip ! -type d ! -type l ! -type f -exec stat -c 'o %n %F %a %u:%g %t:%T' {} +
	find / -xdev $skip -type f -exec stat -c 'f %n %a %u:%g %s' {} +
	find / -xdev $skip -type f -exec md5sum {} +
} | sort`

// tree is the container's root filesystem as treeScript lists it.
func tree(t *testing.T, sb *Sandbox) string {
	t.Helper()
	return sb.MustRun("sh", "-c", treeScript)
}

// changeEverything makes every kind of change the commit and the export must carry: additions,
// changes of content, mode and owner, deletions of files, symlinks and whole directories,
// opaque directories (rm -rf d; mkdir d), type changes both ways, hard links, a fifo.
const changeEverything = `set -e
rm /bin/vi                                   # a symlink in a subdirectory
rm /etc/hosts                                # a file
rm -rf /home                                 # a directory with children
mkdir -p /opt/a/b && echo x > /opt/a/b/f     # a new tree
ln /opt/a/b/f /opt/hard                      # a hard link
mkfifo /opt/fifo
chown 1000:1000 /opt/a && chmod 750 /opt/a
echo more >> /etc/passwd                     # a changed file, in a directory replaced next:
rm -rf /etc && mkdir /etc && touch /etc/new  # opaque: the image's /etc is gone but for new files
echo 'root:x:0:0::/root:/bin/sh' > /etc/passwd
rm -rf /root && mkdir /root && mkdir /root/sub && echo deep > /root/sub/f # opaque, nested
ln -sf /etc/new /bin/ls                      # a symlink pointing elsewhere
rm /usr/bin && mkdir /usr/bin && echo s > /usr/bin/s # a symlink becomes a directory
rm -rf /var/tmp && echo file > /var/tmp      # ... and a file
chmod 1777 /usr                              # a mode change only
echo added > /greeting`

// TestCommitExactTree: a container on a commit sees exactly the tree of the container the commit
// came from, after every kind of change, whether the commit was made while the container ran or
// after Close; its Diff is empty; and the commit is the base's layers plus one.
func TestCommitExactTree(t *testing.T) {
	needContainers(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox())
	before := tree(t, sb)
	sb.MustRun("sh", "-c", changeEverything)
	want := tree(t, sb)
	require.NotEqual(t, before, want)
	owned := "d /opt/a 750 1000:1000"
	if Rootless() {
		// Rootless, only root is mapped: `chown 1000:1000 /opt/a` fails (EINVAL), so the
		// `&& chmod 750` after it does not run either.
		owned = "d /opt/a 755 0:0"
	}
	for _, line := range []string{"f /opt/hard 644 0:0 2", "o /opt/fifo fifo 644 0:0 0:0", "l '/bin/ls' -> '/etc/new' 0:0", owned, "d /usr 1777 0:0"} {
		require.Contains(t, want, line)
	}
	AssertDiff(t, sb.Diff(), "A /etc/new", "C /etc/passwd", "D /etc/group", "D /etc/hosts", "D /home",
		"A /greeting", "C /bin/ls", "D /bin/vi", "A /opt", "A /opt/a", "A /opt/a/b", "A /opt/a/b/f", "A /opt/fifo", "A /opt/hard",
		"C /root", "A /root/sub", "A /root/sub/f", "C /usr", "C /usr/bin", "A /usr/bin/s", "C /var/tmp")

	base, err := sb.Image().Resolve()
	require.NoError(t, err)
	check := func(t *testing.T, img fixtures.Image) {
		r, err := img.Resolve()
		require.NoError(t, err)
		assert.Equal(t, base.Lowers, r.Lowers[1:], "the base's layers, not a copy, under one new layer")
		c := Container(t, img)
		assert.Equal(t, want, tree(t, c))
		AssertDiff(t, c.Diff())
	}
	t.Run("while running", func(t *testing.T) { check(t, sb.Commit()) })
	sb.Close()
	t.Run("after Close", func(t *testing.T) { check(t, sb.Commit()) })
}

// TestCommitIsACopy: a commit is the container's filesystem when Commit returned; the container
// changing afterwards, or another container on the commit changing, does not change it.
func TestCommitIsACopy(t *testing.T) {
	needContainers(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox())
	sb.MustRun("sh", "-c", "echo 1 > /v && mkdir /d && echo 1 > /d/f")
	first := sb.Commit()
	sb.MustRun("sh", "-c", "echo 2 > /v && rm -rf /d && mkdir /d")
	second := sb.Commit()

	c1 := Container(t, first)
	c1.AssertFile("/v", "1\n")
	c1.AssertFile("/d/f", "1\n")
	c1.MustRun("sh", "-c", "echo 3 > /v && rm /d/f")
	c2 := Container(t, second)
	c2.AssertFile("/v", "2\n")
	c2.AssertNoFile("/d/f")
	Container(t, first).AssertFile("/d/f", "1\n")
}

// TestCommitChain20 commits 20 levels deep, each level a container on the previous commit that
// adds, changes, deletes (from the base and from an earlier level) and at one level empties a
// directory (opaque); the 21st container sees every change. The cache lives under a path longer
// than one fsconfig string (255 bytes) and holding a comma, a colon and a space, so every one of
// the 21 lowers must be passed to the kernel some other way than its plain path. It runs in a
// child test binary, whose environment can point at that cache without moving the cache of the
// tests running beside it here.
func TestCommitChain20(t *testing.T) {
	needContainers(t)
	if os.Getenv(helperEnv) != "commit-chain" {
		t.Parallel()
		exe, err := os.Executable()
		require.NoError(t, err)
		long := filepath.Join(t.TempDir(), "a,b:c d "+strings.Repeat("x", 200))
		cmd := exec.Command(exe, "-test.run=^TestCommitChain20$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"=commit-chain", "ISORUN_CACHE="+filepath.Join(long, "cache"))
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "the child test:\n%s", out)
		require.Contains(t, string(out), "--- PASS: TestCommitChain20", "the child test:\n%s", out)
		return
	}
	require.Contains(t, os.Getenv("ISORUN_CACHE"), ",b:c d xxx")

	applets := strings.Fields(Container(t, fixtures.Busybox()).MustRun("ls", "/bin"))
	var victims []string // applets the levels delete, one each
	for _, a := range applets {
		if !slices.Contains([]string{"busybox", "sh", "cat", "ls", "echo", "rm", "mkdir", "test", "[", "find", "sort", "stat", "md5sum"}, a) && len(victims) < 20 {
			victims = append(victims, a)
		}
	}
	require.Len(t, victims, 20)

	img := fixtures.Busybox()
	for level := 1; level <= 20; level++ {
		c := Container(t, img)
		script := fmt.Sprintf(`set -e
mkdir -p /levels /opq
echo %[1]d > /levels/%[1]d
echo %[1]d > /counter
echo %[1]d > /opq/from-%[1]d
rm /bin/%[2]s
touch /tmp/extra-%[1]d
rm -f /tmp/extra-%[3]d`, level, victims[level-1], level-1)
		if level == 10 {
			script += "\nrm -rf /opq && mkdir /opq && echo 10 > /opq/from-10"
		}
		c.MustRun("sh", "-c", script)
		img = c.Commit()
		c.Close()
	}
	r, err := img.Resolve()
	require.NoError(t, err)
	b, err := fixtures.Busybox().Resolve()
	require.NoError(t, err)
	require.Len(t, r.Lowers, 20+len(b.Lowers))
	for _, l := range r.Lowers {
		require.Greater(t, len(l), 255, "every lower is longer than one fsconfig string")
	}

	last := Container(t, img)
	var want []string
	for level := 1; level <= 20; level++ {
		want = append(want, fmt.Sprint(level))
	}
	slices.Sort(want)
	assert.Equal(t, strings.Join(want, " ")+"\n", last.MustRun("sh", "-c", `cd /levels && echo $(ls)`))
	assert.Equal(t, "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20\n", last.MustRun("sh", "-c", `for i in $(seq 20); do printf "%s " $(cat /levels/$i); done | sed 's/ $//'; echo`))
	last.AssertFile("/counter", "20\n")
	assert.Equal(t, "from-10 from-11 from-12 from-13 from-14 from-15 from-16 from-17 from-18 from-19 from-20\n",
		last.MustRun("sh", "-c", `cd /opq && echo $(ls)`), "the opaque /opq of level 10 hides levels 1-9")
	assert.Equal(t, "extra-20\n", last.MustRun("sh", "-c", `cd /tmp && echo $(ls)`), "each level deleted the one before's")
	for _, v := range victims {
		last.AssertNoFile("/bin/" + v)
	}
	AssertDiff(t, last.Diff())
}

// TestWriteLayerApplies: the export of a container's changes, applied with overlay.ApplyLayer
// over a copy of its image, gives the container's tree; a container on the result sees it.
func TestWriteLayerApplies(t *testing.T) {
	needContainers(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox())
	sb.MustRun("sh", "-c", changeEverything)
	want := tree(t, sb)
	var layer bytes.Buffer
	require.NoError(t, sb.WriteLayer(&layer))

	base, err := sb.Image().Resolve()
	require.NoError(t, err)
	require.Len(t, base.Lowers, 1, "busybox is one flattened layer")
	root := filepath.Join(t.TempDir(), "root")
	require.NoError(t, os.Mkdir(root, 0o755))
	out, err := exec.Command("cp", "-a", base.Lowers[0]+"/.", root).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var opts overlay.ApplyOptions
	if os.Geteuid() != 0 {
		// As fixtures applies layers as a user: owners cannot be set, everything is the user's
		// (root's in a rootless container, as the layer records).
		opts.NoChown = true
	}
	require.NoError(t, overlay.ApplyLayer(root, &layer, opts))

	img, err := fixtures.Open(root)
	require.NoError(t, err)
	assert.Equal(t, want, tree(t, Container(t, img)))
}

// TestWriteLayerOwners: a layer records what the container saw: root's files as 0:0, also from a
// rootless container, whose root is the caller (whose files are the caller's on the host).
func TestWriteLayerOwners(t *testing.T) {
	needContainers(t)
	t.Parallel()
	sb := Container(t, fixtures.Busybox())
	sb.MustRun("sh", "-c", "mkdir /d && echo x > /d/f")
	assert.Equal(t, "0:0\n", sb.MustRun("stat", "-c", "%u:%g", "/d/f"))
	var buf bytes.Buffer
	require.NoError(t, sb.WriteLayer(&buf))
	tr := tar.NewReader(&buf)
	owners := map[string]string{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		owners[hdr.Name] = fmt.Sprintf("%d:%d", hdr.Uid, hdr.Gid)
	}
	assert.Equal(t, map[string]string{"d/": "0:0", "d/f": "0:0"}, owners, "rootless: %v", sb.Rootless())
}
