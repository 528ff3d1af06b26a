package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/isorun/isorun/harness"
)

// terminal is run's -t: a pty whose slave is the command's stdin, stdout, stderr and
// controlling terminal, and whose master isorun copies to and from its own stdio. When
// isorun's stdin is a terminal it goes raw (keys, ^C included, reach the command as typed)
// and its window size follows along (SIGWINCH).
type terminal struct {
	ptmx, tty *os.File
	local     *term.State // isorun's stdin before raw mode, nil when it is not a terminal
	winch     chan os.Signal
	winchDone chan struct{} // closed when the resizing goroutine has returned
	output    chan struct{} // closed when the master's output is all copied
	once      sync.Once
}

func openTerminal(cmd *harness.Cmd, input bool) (*terminal, error) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("-t: open a pty: %w", err)
	}
	t := &terminal{ptmx: ptmx, tty: tty, output: make(chan struct{})}
	stdinFd := int(os.Stdin.Fd())
	if term.IsTerminal(stdinFd) {
		if err := pty.InheritSize(os.Stdin, ptmx); err != nil {
			t.close()
			return nil, fmt.Errorf("-t: window size: %w", err)
		}
		t.winch, t.winchDone = make(chan os.Signal, 1), make(chan struct{})
		signal.Notify(t.winch, unix.SIGWINCH)
		go func() {
			defer close(t.winchDone)
			for range t.winch {
				pty.InheritSize(os.Stdin, ptmx)
			}
		}()
		if input {
			if t.local, err = term.MakeRaw(stdinFd); err != nil {
				t.close()
				return nil, fmt.Errorf("-t: raw mode: %w", err)
			}
		}
	} else {
		pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 80})
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.TTY = true
	go func() {
		io.Copy(os.Stdout, ptmx)
		close(t.output)
	}()
	if input {
		go func() {
			io.Copy(ptmx, os.Stdin)
			if t.local == nil {
				// End of a piped stdin: say so to the command as a terminal would (^D).
				ptmx.Write([]byte{4})
			}
		}()
	}
	return t, nil
}

// started drops isorun's copy of the slave: once the container's processes are gone, reading
// the master ends.
func (t *terminal) started() { t.tty.Close() }

// finish waits for the command's last output (the container is closed by then) and gives
// the local terminal back.
func (t *terminal) finish() {
	t.tty.Close()
	select {
	case <-t.output:
	case <-time.After(2 * time.Second):
	}
	t.restore()
	t.ptmx.Close()
}

// restore gives the local terminal back as it was; it is safe to call more than once.
func (t *terminal) restore() {
	t.once.Do(func() {
		if t.local != nil {
			term.Restore(int(os.Stdin.Fd()), t.local)
		}
		if t.winch != nil {
			// Stop resizing before the master can be closed: Fd, which resizing uses, is not
			// safe against a concurrent Close.
			signal.Stop(t.winch)
			close(t.winch)
			<-t.winchDone
		}
	})
}

func (t *terminal) close() {
	t.restore()
	t.tty.Close()
	t.ptmx.Close()
}
