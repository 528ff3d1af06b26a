//go:build linux && !cgo

package isolate

const haveCInit = false
