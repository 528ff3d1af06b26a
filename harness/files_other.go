//go:build !linux

package harness

import (
	"errors"
	"io/fs"
)

func (e *Engine) ReadFile(p string) ([]byte, error) { return nil, errors.New("isorun: unsupported") }

func (e *Engine) WriteFile(p string, data []byte, perm fs.FileMode) error {
	return errors.New("isorun: unsupported")
}

func (e *Engine) Stat(p string) (fs.FileInfo, error) { return nil, errors.New("isorun: unsupported") }
