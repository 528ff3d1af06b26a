//go:build !linux

package harness

import (
	"errors"
	"io/fs"
	"runtime"
)

func (s *Sandbox) lstat(p string) (fs.FileInfo, error) {
	return nil, errors.New("isorun: unsupported on " + runtime.GOOS)
}
