package overlay

import (
	"errors"
	"strings"

	"github.com/isorun/isorun/internal/mountinfo"
)

// Config describes one overlay mount.
type Config struct {
	Lowers    []string // top first, as in lowerdir=
	Upper     string   // empty with Work empty: a read-only overlay (needs two lowers or more)
	Work      string   // empty directory on the same filesystem as Upper
	UserXattr bool     // rootless: user.overlay.* instead of trusted.overlay.*
}

// ErrTooManyLowers is wrapped by Open when the kernel has no "lowerdir+"
// (before linux 6.8) and the lowers cannot be named in one lowerdir= option,
// even as /proc/self/fd/N. Callers can flatten the image into fewer layers.
var ErrTooManyLowers = errors.New("too many lowers for one lowerdir option")

// escapeLayer escapes a path for overlay's colon-separated lowerdir= list
// and for upperdir=/workdir=, which the kernel also unescapes: a backslash
// quotes the next byte. ',' splits mount(2)'s data string on older kernels,
// ':' splits lowerdir, and '\' is the escape itself.
func escapeLayer(p string) string {
	if !strings.ContainsAny(p, `\,:`) {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\', ',', ':':
			b.WriteByte('\\')
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// mountPoints returns the mount point (field 5) of every line of a
// /proc/self/mountinfo text, unescaped.
func mountPoints(text string) []string {
	var mps []string
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mps = append(mps, mountinfo.Unescape(f[4]))
	}
	return mps
}

// Owner is a uid and gid; for WriteLayerAs, the host ids of the root of the container the
// layer comes from (the zero value: root's own, written as they are).
type Owner struct{ UID, GID int }
