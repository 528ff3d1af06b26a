//go:build !linux

package harness

import (
	"errors"
	"io/fs"
)

func (s *Sandbox) ReadFile(p string) ([]byte, error) { return nil, errors.New("isorun: unsupported") }

func (s *Sandbox) WriteFile(p string, data []byte, perm fs.FileMode) error {
	return errors.New("isorun: unsupported")
}
