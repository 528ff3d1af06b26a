//go:build !linux

package overlay

import (
	"fmt"
	"io"
	"os"
	"runtime"
)

// Overlayfs and its mount API exist only on Linux. Elsewhere the package
// builds (the Changes type is plain data) and every operation says why it
// cannot run.
func errUnsupported(op string) error {
	return fmt.Errorf("overlay: %s: unsupported on %s", op, runtime.GOOS)
}

func Open(cfg Config) (*os.File, error)                     { return nil, errUnsupported("mount") }
func Mount(target string, cfg Config) error                 { return errUnsupported("mount") }
func Unmount(target string) error                           { return errUnsupported("unmount") }
func Remove(dir string) error                               { return errUnsupported("remove") }
func Diff(upper string, lowers []string) (Changes, error)   { return nil, errUnsupported("diff") }
func WriteLayer(w io.Writer, upper string, c Changes) error { return errUnsupported("write layer") }
func WriteLayerAs(w io.Writer, upper string, c Changes, root Owner) error {
	return errUnsupported("write layer")
}

// Scratch is a detached tmpfs for an upper and a work directory (Linux only).
type Scratch struct{}

func NewScratch() (*Scratch, error) { return nil, errUnsupported("scratch") }
func (s *Scratch) Upper() string    { return "" }
func (s *Scratch) Work() string     { return "" }
func (s *Scratch) Root() *os.File   { return nil }
func (s *Scratch) Close() error     { return errUnsupported("scratch") }
