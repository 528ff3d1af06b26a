//go:build !linux

package isolate

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"
	"time"
)

// ErrUnsupported is what every entry point returns off Linux.
var ErrUnsupported = fmt.Errorf("isorun: unsupported on %s", runtime.GOOS)

// ErrClosed is returned for work asked of a container that has been closed or has died.
var ErrClosed = fmt.Errorf("isolate: container is closed")

// DefaultPath is the PATH commands get when their environment has none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Container is a running container; off Linux none can start.
type Container struct{}

// Start fails with ErrUnsupported off Linux.
func Start(ctx context.Context, cfg Config) (*Container, error) { return nil, ErrUnsupported }

func (c *Container) ID() string            { return "" }
func (c *Container) Pid() int              { return 0 }
func (c *Container) Upper() string         { return "" }
func (c *Container) Lowers() []string      { return nil }
func (c *Container) Root() *os.File        { return nil }
func (c *Container) Created() []string     { return nil }
func (c *Container) Done() <-chan struct{} { return nil }
func (c *Container) Err() error            { return ErrUnsupported }
func (c *Container) Close() error          { return nil }
func (c *Container) Release() error        { return nil }
func (c *Container) Command(name string, arg ...string) *Cmd {
	return &Cmd{Args: append([]string{name}, arg...)}
}
func (c *Container) CommandContext(ctx context.Context, name string, arg ...string) *Cmd {
	return c.Command(name, arg...)
}

// Cmd is a command to run in a container; off Linux it cannot start.
type Cmd struct {
	Args           []string
	Env            []string
	Dir            string
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	UID, GID       uint32
	Groups         []uint32
	TTY            bool
	WaitDelay      time.Duration
	Pid            int
}

func (cmd *Cmd) Start() error                    { return ErrUnsupported }
func (cmd *Cmd) Wait() error                     { return ErrUnsupported }
func (cmd *Cmd) Run() error                      { return ErrUnsupported }
func (cmd *Cmd) Output() ([]byte, error)         { return nil, ErrUnsupported }
func (cmd *Cmd) CombinedOutput() ([]byte, error) { return nil, ErrUnsupported }
func (cmd *Cmd) Signal(sig syscall.Signal) error { return ErrUnsupported }
func (cmd *Cmd) State() *ExitState               { return nil }

// ServeIfInit does nothing off Linux.
func ServeIfInit() {}

// Shutdown does nothing off Linux.
func Shutdown() {}
