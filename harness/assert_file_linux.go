package harness

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// lstat describes what is at p inside the container without following a final symlink, so
// that AssertNoFile sees a dangling one. Symlinks on the way resolve inside the container.
func (s *Sandbox) lstat(p string) (fs.FileInfo, error) {
	f, err := s.e.openInContainer(p, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	return info, nil
}
