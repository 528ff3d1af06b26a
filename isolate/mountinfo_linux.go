package isolate

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// mountInfo is one line of /proc/self/mountinfo, its paths unescaped.
type mountInfo struct {
	root, point string // fields 4 and 5
	fstype      string // after the " - "
	superOpts   string // the superblock's options, last
}

// mountTable parses /proc/self/mountinfo (this thread's mount namespace).
func mountTable() ([]mountInfo, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []mountInfo
	for _, line := range strings.Split(string(b), "\n") {
		// 36 35 98:0 /root /point rw,noatime master:1 - cgroup cgroup rw,memory
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 5 || len(b) < 3 {
			continue
		}
		out = append(out, mountInfo{root: unescapeOctal(a[3]), point: unescapeOctal(a[4]), fstype: b[0], superOpts: b[2]})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no mount in /proc/self/mountinfo")
	}
	return out, nil
}

// unescapeOctal undoes mountinfo's octal escapes (\040 for a space).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
