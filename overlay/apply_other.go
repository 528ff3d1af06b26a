//go:build !linux

package overlay

import (
	"fmt"
	"io"
	"runtime"
)

// ApplyLayer applies an OCI layer tar onto root. It needs openat2 and is Linux only.
func ApplyLayer(root string, r io.Reader, opt ApplyOptions) error {
	return fmt.Errorf("apply layer to %s: isorun: unsupported on %s", root, runtime.GOOS)
}
