//go:build !linux

package isolate

import "errors"

// Rootless is false off Linux, where no container runs.
func Rootless() bool { return false }

// Rootless is false off Linux.
func (c *Container) Rootless() bool { return false }

// RootlessBlocker is ErrUnsupported off Linux.
func RootlessBlocker() error { return ErrUnsupported }

// ErrLowerHasMounts: see the Linux documentation; nothing returns it off Linux.
var ErrLowerHasMounts = errors.New("overlayfs refuses, in a user namespace, a lower with mounts below it")

// RootlessLowerBlocker is ErrUnsupported off Linux.
func RootlessLowerBlocker(lower string) error { return ErrUnsupported }
