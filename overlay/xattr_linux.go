package overlay

import (
	"errors"
	"io/fs"
	"strings"

	"golang.org/x/sys/unix"
)

// Overlayfs keeps its own state in xattrs under one of these prefixes:
// trusted.overlay.* as root, user.overlay.* with userxattr. An upper may
// have been written either way, so both are read; neither is user data.
var ovlXattrPrefixes = [...]string{"trusted.overlay.", "user.overlay."}

func isOvlXattr(name string) bool {
	for _, p := range ovlXattrPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// ovlXattr returns overlay's xattr key ("opaque", "redirect", ...) from xa
// under either prefix.
func ovlXattr(xa map[string]string, key string) (string, bool) {
	for _, p := range ovlXattrPrefixes {
		if v, ok := xa[p+key]; ok {
			return v, true
		}
	}
	return "", false
}

// lgetOvlXattr reads overlay's xattr key from path without listing all of
// them, for lower directories where only the opaque marker matters.
func lgetOvlXattr(path, key string) (string, bool, error) {
	for _, p := range ovlXattrPrefixes {
		v, ok, err := lgetxattr(path, p+key)
		if err != nil || ok {
			return v, ok, err
		}
	}
	return "", false, nil
}

// lxattrs returns every xattr of path (not following a symlink at path).
// A filesystem without xattr support has none.
func lxattrs(path string) (map[string]string, error) {
	buf := make([]byte, 256)
	var n int
	for {
		var err error
		n, err = unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := unix.Llistxattr(path, nil)
			if err != nil {
				return nil, &fs.PathError{Op: "listxattr", Path: path, Err: err}
			}
			buf = make([]byte, sz+64)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, &fs.PathError{Op: "listxattr", Path: path, Err: err}
		}
		break
	}
	if n == 0 {
		return nil, nil
	}
	xa := make(map[string]string)
	for _, name := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		v, ok, err := lgetxattr(path, name)
		if err != nil {
			return nil, err
		}
		if ok {
			xa[name] = v
		}
	}
	return xa, nil
}

// lgetxattr returns the value of one xattr and whether it exists.
func lgetxattr(path, name string) (string, bool, error) {
	buf := make([]byte, 128)
	for {
		n, err := unix.Lgetxattr(path, name, buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			sz, err := unix.Lgetxattr(path, name, nil)
			if err != nil {
				return "", false, &fs.PathError{Op: "getxattr " + name, Path: path, Err: err}
			}
			buf = make([]byte, sz+64)
			continue
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
			return "", false, nil
		case err != nil:
			return "", false, &fs.PathError{Op: "getxattr " + name, Path: path, Err: err}
		}
		return string(buf[:n]), true, nil
	}
}

// userXattrs drops overlay's own xattrs, leaving what a diff compares and a
// layer carries.
func userXattrs(xa map[string]string) map[string]string {
	var out map[string]string
	for k, v := range xa {
		if isOvlXattr(k) {
			continue
		}
		if out == nil {
			out = make(map[string]string)
		}
		out[k] = v
	}
	return out
}
