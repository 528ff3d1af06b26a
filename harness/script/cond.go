package script

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/isorun/isorun/harness"
	"github.com/isorun/isorun/isolate"
)

// Condition reports the container conditions, for testscript.Params.Condition: containers,
// root, userns, overlay, rootless, limits. Others are an error, as testscript reports unknown conditions.
func Condition(cond string) (bool, error) {
	switch cond {
	case "containers":
		return harness.Supported() == nil, nil
	case "root":
		return runtime.GOOS == "linux" && os.Geteuid() == 0, nil
	case "userns":
		return hasUserns(), nil
	case "overlay":
		return hasOverlay(), nil
	case "rootless":
		return runtime.GOOS == "linux" && harness.Rootless(), nil
	case "limits":
		return limitsBlocked() == nil, nil
	}
	return false, fmt.Errorf("unknown condition %q (isorun knows containers, root, userns, overlay, rootless, limits)", cond)
}

// limitsBlocked is what stops resource limits here (isolate.ResourcesBlocker: it makes a
// cgroup and removes it), probed once.
var limitsBlocked = sync.OnceValue(isolate.ResourcesBlocker)

// hasUserns says whether this process could make a user namespace: the kernel has them and
// no sysctl (Debian's unprivileged_userns_clone, Ubuntu's AppArmor restriction) stops a
// non-root user, which is who needs one.
func hasUserns() bool {
	if runtime.GOOS != "linux" {
		return false
	}
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		return false
	}
	if n, ok := readInt("/proc/sys/user/max_user_namespaces"); ok && n == 0 {
		return false
	}
	if os.Geteuid() == 0 {
		return true
	}
	if n, ok := readInt("/proc/sys/kernel/unprivileged_userns_clone"); ok && n == 0 {
		return false
	}
	if n, ok := readInt("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); ok && n != 0 {
		return false
	}
	return true
}

// hasOverlay says whether the kernel has overlayfs: registered, or a module it can load on the
// first mount.
func hasOverlay() bool {
	if runtime.GOOS != "linux" {
		return false
	}
	if b, err := os.ReadFile("/proc/filesystems"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == "overlay" {
				return true
			}
		}
	}
	if _, err := os.Stat("/sys/module/overlay"); err == nil {
		return true
	}
	if rel, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		_, err := os.Stat("/lib/modules/" + strings.TrimSpace(string(rel)) + "/kernel/fs/overlayfs")
		return err == nil
	}
	return false
}

func readInt(file string) (int, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return n, err == nil
}
