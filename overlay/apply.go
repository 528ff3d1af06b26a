package overlay

import (
	"errors"
	"path"
	"path/filepath"
	"strings"
)

// ApplyOptions adapt ApplyLayer to callers that cannot do everything root can. The zero value is
// for root: owners from the layer, device nodes created.
type ApplyOptions struct {
	// NoChown leaves the caller as the owner of everything ApplyLayer creates instead of the
	// uid/gid recorded in the layer. Set it when not root: chown would fail on the first entry.
	NoChown bool
	// Devices says what becomes of character and block device entries.
	Devices DeviceMode
}

// DeviceMode is what ApplyLayer does with character and block device entries.
type DeviceMode int

const (
	// DevicesCreate makes the node with mknod. Needs real root (CAP_MKNOD in the initial user
	// namespace); anywhere else the entry fails with EPERM.
	DevicesCreate DeviceMode = iota
	// DevicesSkip leaves device entries out of the tree.
	DevicesSkip
	// DevicesPlaceholder makes an empty regular file with the entry's mode, so the path exists
	// (a later bind mount of the host's node can land on it), as rootless runtimes do.
	DevicesPlaceholder
)

// Layer tar names that carry meaning in the OCI image-spec layer format.
const (
	whiteoutPrefix = ".wh."
	// whiteoutMetaPrefix starts aufs' internal names; of those only the opaque marker is part of
	// the OCI format.
	whiteoutMetaPrefix = ".wh..wh."
	whiteoutOpaque     = ".wh..wh..opq"
)

// errLayerEscape is the refusal for a name or hard link target that points outside the root.
var errLayerEscape = errors.New("path escapes the root")

// cleanLayerName turns a tar entry name into a path relative to the root: leading slashes
// stripped (layers written by old tools use absolute names, which mean the image root), cleaned,
// and refused when it would leave the root. The root itself is ".".
func cleanLayerName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("name holds a NUL byte")
	}
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == "." || p == "" {
		return ".", nil
	}
	if !filepath.IsLocal(p) {
		return "", errLayerEscape
	}
	return p, nil
}

// whiteoutTarget says whether base (the last element of an entry name) is a whiteout and what
// it hides. opaque means "hide everything earlier layers put in this directory"; otherwise hidden
// is the name of the sibling to remove. Names that cannot be honoured are an error: a whiteout
// for "." or ".." would delete the directory or its parent, and other aufs meta names have no
// meaning in the OCI format.
func whiteoutTarget(base string) (isWhiteout, opaque bool, hidden string, err error) {
	if !strings.HasPrefix(base, whiteoutPrefix) {
		return false, false, "", nil
	}
	if base == whiteoutOpaque {
		return true, true, "", nil
	}
	if strings.HasPrefix(base, whiteoutMetaPrefix) {
		return true, false, "", errors.New("unknown whiteout meta name (only .wh..wh..opq is valid)")
	}
	hidden = strings.TrimPrefix(base, whiteoutPrefix)
	if hidden == "" || hidden == "." || hidden == ".." || strings.Contains(hidden, "/") {
		return true, false, "", errors.New("invalid whiteout name")
	}
	return true, false, hidden, nil
}

// paxXattrPrefix marks extended attributes in PAX records (GNU tar, docker, buildkit).
const paxXattrPrefix = "SCHILY.xattr."

// xattrRefused says why an image may not set an extended attribute, or "" when it may.
// trusted.* is root-only kernel territory (overlay keeps its own state there), and *.overlay.*
// in any namespace (user.overlay.* under userxattr) would let an image forge whiteouts, opaque
// dirs or redirects in the overlay we mount over it.
func xattrRefused(name string) string {
	switch {
	case strings.HasPrefix(name, "trusted."):
		return "trusted.* xattrs are refused from images"
	case strings.Contains(name, ".overlay."):
		return "overlay xattrs are refused from images"
	}
	return ""
}
