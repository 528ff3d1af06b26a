package harness

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/isorun/isorun/isolate"
)

// Stats is a container's resource accounting (see isolate.Stats).
type Stats = isolate.Stats

// Stats reads the container's resource accounting: memory now and at its peak, CPU time,
// processes, OOM kills, refused forks. It needs a limit option or WithAccounting; after Close it
// is the last reading. It fails the test when the container has none.
func (s *Sandbox) Stats() Stats {
	s.t.Helper()
	st, err := s.e.Stats()
	if err != nil {
		s.t.Fatalf("harness: %v", err)
	}
	return st
}

// Stats reads the container's resource accounting (see Sandbox.Stats).
func (e *Engine) Stats() (Stats, error) {
	st, err := e.c.Stats()
	if err != nil && e.cfg.resources == nil {
		return st, fmt.Errorf("container %s: no resource accounting: start it with a limit (WithMemory, WithPids, WithCPU) or WithAccounting", e.c.ID())
	}
	return st, err
}

// ParseMemory reads a memory size as docker's --memory takes it: a number of bytes, or with a
// suffix b, k, m or g (powers of 1024; kb, mb, gb, KiB, MiB, GiB too, in any case): "64m",
// "1.5g", "1048576".
func ParseMemory(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffixes []string
		mult     int64
	}{
		{[]string{"kib", "kb", "k"}, 1 << 10},
		{[]string{"mib", "mb", "m"}, 1 << 20},
		{[]string{"gib", "gb", "g"}, 1 << 30},
		{[]string{"b"}, 1},
	} {
		found := false
		for _, suf := range u.suffixes {
			if n, ok := strings.CutSuffix(t, suf); ok {
				t, mult, found = n, u.mult, true
				break
			}
		}
		if found {
			break
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || f*float64(mult) >= math.MaxInt64 {
		return 0, fmt.Errorf("memory size %q: want a positive number of bytes, or one with a suffix k, m or g (64m)", s)
	}
	return int64(f * float64(mult)), nil
}
