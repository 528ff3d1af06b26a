//go:build !linux

package isolate

// Rootless is false off Linux, where no container runs.
func Rootless() bool { return false }

// Rootless is false off Linux.
func (c *Container) Rootless() bool { return false }

// RootlessBlocker is ErrUnsupported off Linux.
func RootlessBlocker() error { return ErrUnsupported }
