//go:build !linux

package isolate

// Stats fails with ErrUnsupported off Linux.
func (c *Container) Stats() (Stats, error) { return Stats{}, ErrUnsupported }

// GC does nothing off Linux: there are no cgroups.
func GC() ([]string, error) { return nil, nil }

// ResourcesBlocker is ErrUnsupported off Linux.
func ResourcesBlocker() error { return ErrUnsupported }
