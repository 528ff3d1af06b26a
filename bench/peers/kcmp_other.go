//go:build !linux

package main

// sameMemory: no process shares another's address space where isolate's zygote does not run.
func sameMemory(a, b int) bool { return false }
