package overlay

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Scratch is a detached tmpfs holding upper/ and work/ for one overlay. It
// is in no mount table and has no path on the host: its directories are
// reached through this process's descriptor as /proc/self/fd/N/upper. When
// the descriptor is closed and no overlay uses the upper any more, the
// kernel frees it, so a killed test leaves no mount and no state directory.
// Being tmpfs, it also works where the host's disk is itself overlayfs (as in
// Docker), which cannot hold an upper.
type Scratch struct {
	root *os.File
	fd   int
}

// NewScratch mounts a fresh detached tmpfs (mode 0755, owned by the caller)
// and creates upper/ and work/ in it.
func NewScratch() (*Scratch, error) {
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("overlay: scratch: fsopen tmpfs: %w", err)
	}
	defer unix.Close(fsfd)
	// The upper's root becomes the container's "/": give it the mode a root
	// directory has, not tmpfs's default 1777.
	if err := unix.FsconfigSetString(fsfd, "mode", "0755"); err != nil {
		return nil, fmt.Errorf("overlay: scratch: fsconfig mode=0755: %w%s", err, fsLog(fsfd))
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fmt.Errorf("overlay: scratch: create tmpfs: %w%s", err, fsLog(fsfd))
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("overlay: scratch: fsmount tmpfs: %w%s", err, fsLog(fsfd))
	}
	s := &Scratch{root: os.NewFile(uintptr(mfd), "scratch"), fd: mfd}
	for _, d := range []string{"upper", "work"} {
		if err := unix.Mkdirat(mfd, d, 0o755); err != nil {
			s.Close()
			return nil, fmt.Errorf("overlay: scratch: mkdir %s: %w", d, err)
		}
	}
	return s, nil
}

// Upper returns the upper directory as /proc/self/fd/N/upper. The kernel
// resolves it in this process only; another process needs the descriptor
// (Root) passed to it.
func (s *Scratch) Upper() string { return s.path("upper") }

// Work returns the work directory, like Upper.
func (s *Scratch) Work() string { return s.path("work") }

// Root returns the descriptor of the tmpfs root (O_PATH), for passing to
// another process or using with *at calls. It stays owned by s.
func (s *Scratch) Root() *os.File { return s.root }

func (s *Scratch) path(name string) string {
	return "/proc/self/fd/" + strconv.Itoa(s.fd) + "/" + name
}

// Close drops this process's reference to the tmpfs. An overlay opened on
// it keeps it alive until that overlay is gone.
func (s *Scratch) Close() error {
	if err := s.root.Close(); err != nil {
		return fmt.Errorf("overlay: scratch: close: %w", err)
	}
	return nil
}
