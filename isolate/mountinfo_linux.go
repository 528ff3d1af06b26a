package isolate

import (
	"fmt"
	"os"
	"strings"

	"github.com/isorun/isorun/internal/mountinfo"
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
		out = append(out, mountInfo{root: mountinfo.Unescape(a[3]), point: mountinfo.Unescape(a[4]), fstype: b[0], superOpts: b[2]})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no mount in /proc/self/mountinfo")
	}
	return out, nil
}
