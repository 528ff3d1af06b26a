package harness

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// openInContainer opens p as the container's processes would see it: relative to its root (with
// its volumes), and with every symlink resolved inside that root, never on the host.
func (e *Engine) openInContainer(p string, flags int, perm fs.FileMode) (*os.File, error) {
	if !path.IsAbs(p) {
		return nil, fmt.Errorf("%s: not an absolute path in the container", p)
	}
	root := e.c.Root()
	if root == nil {
		return nil, fmt.Errorf("%s: container %s has no root", p, e.c.ID())
	}
	how := &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(perm.Perm()),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(int(root.Fd()), p, how)
	// With RESOLVE_IN_ROOT a ".." in the path fails with EAGAIN whenever a mount or rename
	// anywhere on the system raced the lookup (other tests' containers starting): openat2(2)
	// says to retry.
	for tries := 0; err == unix.EAGAIN && tries < 1000; tries++ {
		fd, err = unix.Openat2(int(root.Fd()), p, how)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// ReadFile reads a file by its path inside the container.
func (e *Engine) ReadFile(p string) ([]byte, error) {
	f, err := e.openInContainer(p, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err // already "read <p>: ...": f is named p
	}
	return b, nil
}

// WriteFile writes a file by its path inside the container, like os.WriteFile: created with
// perm (owned by root) or truncated. The parent directory must exist. The write is a change
// like any other: it shows in Diff.
func (e *Engine) WriteFile(p string, data []byte, perm fs.FileMode) error {
	f, err := e.openInContainer(p, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return &fs.PathError{Op: "write", Path: p, Err: err}
	}
	if err := f.Close(); err != nil {
		return &fs.PathError{Op: "close", Path: p, Err: err}
	}
	return nil
}

// Stat describes a file by its path inside the container, following symlinks inside it.
func (e *Engine) Stat(p string) (fs.FileInfo, error) {
	f, err := e.openInContainer(p, unix.O_PATH, 0)
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
