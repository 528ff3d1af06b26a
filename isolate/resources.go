package isolate

import (
	"fmt"
	"math"
	"time"
)

// Resources are a container's cgroup: its limits, and the accounting behind Container.Stats.
// A Config with Resources nil makes no cgroup at all (and costs nothing); a non-nil Resources
// with every field zero makes one without limits, for the accounting alone. See "Resource
// limits" in the package doc.
type Resources struct {
	// Memory is the most memory, in bytes, the container's processes may use together (page
	// cache and the tmpfs that holds the container's writes included); past it the kernel's
	// OOM killer kills the biggest of them. Swap is not allowed on top. 0: no limit.
	Memory int64
	// Pids is the most processes (threads included) the container may have at once, its init
	// included; a fork past it fails with EAGAIN. 0: no limit.
	Pids int64
	// CPU is the CPU time the container may use per unit of wall time: 0.5 is half of one CPU,
	// 2 is two CPUs. 0: no limit.
	CPU float64
}

// cpuPeriod is the CFS period CPU quotas are expressed in: 100 ms, the kernel's default.
const cpuPeriod = 100000 // µs

func (r Resources) validate() error {
	switch {
	case r.Memory < 0:
		return fmt.Errorf("isolate: memory limit %d: must not be negative", r.Memory)
	case r.Pids < 0:
		return fmt.Errorf("isolate: pids limit %d: must not be negative", r.Pids)
	case r.CPU < 0 || math.IsNaN(r.CPU) || math.IsInf(r.CPU, 0):
		return fmt.Errorf("isolate: CPU limit %v: want a positive number of CPUs", r.CPU)
	case r.CPU > 0 && r.cpuQuota() < 1000:
		// The kernel refuses a quota under 1 ms per period.
		return fmt.Errorf("isolate: CPU limit %v: the smallest is 0.01 CPU", r.CPU)
	}
	return nil
}

// cpuQuota is the CPU limit as microseconds of CPU time per cpuPeriod.
func (r Resources) cpuQuota() int64 { return int64(math.Round(r.CPU * cpuPeriod)) }

// Stats is a container's resource accounting, read from its cgroup. Fields whose controller
// the host's cgroups lack are 0.
type Stats struct {
	// Memory is the memory its processes use now, in bytes (page cache and tmpfs included).
	Memory int64
	// MemoryPeak is the most they used at once since the container started.
	MemoryPeak int64
	// CPU is the CPU time (user and system) its processes have used, the ended ones included.
	CPU time.Duration
	// Pids is how many processes (threads included) it has now, its init included.
	Pids int64
	// OOMKills counts the processes the OOM killer killed for the memory limit.
	OOMKills int64
	// PidsLimited counts the forks the pids limit refused.
	PidsLimited int64
}
