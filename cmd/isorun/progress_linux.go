package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// bytesRead is what this process has read so far (read, pread and the like), from
// /proc/self/io's rchar.
func bytesRead() (int64, bool) {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "rchar: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
