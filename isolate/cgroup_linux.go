package isolate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A container with Config.Resources gets a cgroup of its own, made before its init exists and
// removed once its last process is gone. How its processes get into it decides whether a fork
// can escape, so:
//
//   - cgroup v2 (/sys/fs/cgroup is cgroup2): the zygote forks the init straight into it with
//     clone3(CLONE_INTO_CGROUP), and the exec'd inits go the same way (SysProcAttr.UseCgroupFD):
//     the init is in its cgroup from its first instruction, and so is everything it forks. The
//     cgroup is isorun/isorun-PID-START-ID under the hierarchy's root, with memory, pids and cpu
//     enabled in isorun's subtree_control: v2 forbids processes in a cgroup that hands
//     controllers to its children, and our own cgroup has processes (us), so the containers
//     cannot be our children. The limits therefore do not compose with limits on our own
//     cgroup, as with docker or systemd-run.
//   - cgroup v1, and hybrid hosts (v1 controllers, a v2 mount without them): there is no
//     CLONE_INTO_CGROUP, so the first op of the setup program has the init write itself into
//     each controller's cgroup.procs, before it mounts anything or runs any command. The cgroup
//     is isorun-PID-START-ID under our own cgroup of each controller, so the container's limits
//     nest under (and never loosen) the ones we run under.
//
// Either way a container with a cgroup never takes a prewarmed init from the pool: it is forked
// for it. On v1 a pooled init could join through the op just as safely (it has run no container
// code), and on v2 it could be moved by writing its pid to cgroup.procs, but its prewarm (the
// /dev and scratch tmpfs it mounted, its page tables) would be charged outside the cgroup, on v2
// it would not be in its cgroup "from the first instruction", and one rule is easier to trust
// than two. The price is the pool's saving (about half of Start) for limited containers only.
//
// PID and START (the owner's pid and start time, in clock ticks since boot) name the process
// that made the cgroup: the next process that makes one removes those whose owner is gone (a
// SIGKILLed test leaves its cgroups behind, empty once the zygote has killed its inits), and so
// does GC.

// cgroupRootEnv overrides where cgroup filesystems are looked for (default /sys/fs/cgroup):
// tests point it at a cgroup2 mounted in a scratch mount namespace, to run the v2 code on a
// hybrid host.
const cgroupRootEnv = "ISORUN_CGROUP_ROOT"

// cgroupBase is the directory under a v2 root that holds every container's cgroup.
const cgroupBase = "isorun"

// cgroupHost is where this process makes cgroups.
type cgroupHost struct {
	root string // the cgroup2 mount (v2), or the directory the v1 hierarchies are mounted under
	v2   bool
	// v1: each controller's hierarchy, as the directory of our own cgroup in it. Co-mounted
	// controllers (cpu,cpuacct) share a directory.
	own map[string]string
}

var cgroupHostOnce = sync.OnceValues(discoverCgroups)

func discoverCgroups() (*cgroupHost, error) {
	root := os.Getenv(cgroupRootEnv)
	if root == "" {
		root = "/sys/fs/cgroup"
	}
	root = filepath.Clean(root)
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return nil, fmt.Errorf("find cgroups: statfs %s: %w", root, err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return &cgroupHost{root: root, v2: true}, nil
	}
	ownPaths, err := ownCgroupPaths()
	if err != nil {
		return nil, err
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	h := &cgroupHost{root: root, own: map[string]string{}}
	for _, m := range mounts {
		if m.v2 || !strings.HasPrefix(m.point, root+"/") {
			continue
		}
		for _, ctl := range m.controllers {
			p, ok := ownPaths[ctl]
			if !ok {
				continue
			}
			// The mount shows the hierarchy from m.root down (a container's view may start
			// below the hierarchy's root); our cgroup must be inside that view.
			rel, ok := underPath(p, m.root)
			if !ok {
				continue
			}
			h.own[ctl] = filepath.Join(m.point, rel)
		}
	}
	if len(h.own) == 0 {
		return nil, fmt.Errorf("find cgroups: %s is neither cgroup2 nor holds cgroup v1 hierarchies", root)
	}
	return h, nil
}

// underPath returns p relative to dir when p is dir or below it.
func underPath(p, dir string) (string, bool) {
	if dir == "/" {
		return strings.TrimPrefix(p, "/"), true
	}
	if p == dir {
		return "", true
	}
	rest, ok := strings.CutPrefix(p, dir+"/")
	return rest, ok
}

// ownCgroupPaths reads /proc/self/cgroup: v1 controller (or "" for v2) -> our cgroup's path.
func ownCgroupPaths() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("find cgroups: %w", err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// hierarchy-ID:controller-list:path
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[1] == "" {
			out[""] = f[2]
			continue
		}
		for _, ctl := range strings.Split(f[1], ",") {
			out[ctl] = f[2]
		}
	}
	return out, nil
}

type cgroupMount struct {
	point, root string
	v2          bool
	controllers []string // v1
}

// cgroupMounts lists the cgroup filesystems in our mount namespace.
func cgroupMounts() ([]cgroupMount, error) {
	mounts, err := mountTable()
	if err != nil {
		return nil, fmt.Errorf("find cgroups: %w", err)
	}
	var out []cgroupMount
	for _, mi := range mounts {
		if mi.fstype != "cgroup" && mi.fstype != "cgroup2" {
			continue
		}
		m := cgroupMount{root: mi.root, point: mi.point, v2: mi.fstype == "cgroup2"}
		if !m.v2 {
			for _, o := range strings.Split(mi.superOpts, ",") {
				if o != "rw" && o != "ro" && !strings.Contains(o, "=") {
					m.controllers = append(m.controllers, o)
				}
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// cgroup is one container's cgroup (on v1, one directory per hierarchy).
type cgroup struct {
	res Resources
	v2  bool
	// dirs are the cgroup's directories: one on v2, one per hierarchy on v1. Like ctl, they do
	// not change once newCgroup has returned (reading a removed one reads nothing).
	dirs []string
	// file maps a controller to its directory (v1); on v2 every controller is in dirs[0].
	ctl map[string]string
	fd  *os.File // v2: the directory, for CLONE_INTO_CGROUP
	// base is the v2 directory shared by every container's cgroup (isorun under the root).
	base string

	mu      sync.Mutex
	removed bool
	final   Stats
}

// The v1 controllers a container's cgroup is made in: those its limits need, and those that
// account for Stats (made when the host has them, skipped when not).
func v1Controllers(r Resources) (need, want []string) {
	if r.Memory > 0 {
		need = append(need, "memory")
	}
	if r.Pids > 0 {
		need = append(need, "pids")
	}
	if r.CPU > 0 {
		need = append(need, "cpu")
	}
	return need, []string{"memory", "pids", "cpuacct"}
}

func v2Controllers(r Resources) (need, want []string) {
	need, _ = v1Controllers(r)
	return need, []string{"memory", "pids", "cpu"}
}

// newCgroup makes the cgroup of container id with r's limits, or fails saying what is missing.
func newCgroup(id string, r Resources) (_ *cgroup, err error) {
	h, err := cgroupHostOnce()
	if err != nil {
		return nil, fmt.Errorf("isolate: resource limits: %w", err)
	}
	sweepOnce.Do(func() { sweepStale(h) })
	start, err := procStart(os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("isolate: resource limits: %w", err)
	}
	name := fmt.Sprintf("isorun-%d-%d-%s", os.Getpid(), start, id)
	cg := &cgroup{res: r, v2: h.v2, ctl: map[string]string{}}
	defer func() {
		if err != nil {
			cg.rmdirs()
			err = fmt.Errorf("isolate: resource limits: %w", err)
		}
	}()
	if h.v2 {
		err = cg.makeV2(h, name)
	} else {
		err = cg.makeV1(h, name)
	}
	if err != nil {
		return nil, err
	}
	return cg, nil
}

func (cg *cgroup) makeV1(h *cgroupHost, name string) error {
	need, want := v1Controllers(cg.res)
	for _, ctl := range need {
		if _, ok := h.own[ctl]; !ok {
			return fmt.Errorf("cgroup v1: no %s hierarchy mounted under %s (the %s limit needs it)", ctl, h.root, limitOf(ctl))
		}
	}
	for _, ctl := range append(need, want...) {
		own, ok := h.own[ctl]
		if !ok {
			continue
		}
		dir := filepath.Join(own, name)
		if !slices.Contains(cg.dirs, dir) {
			if err := os.Mkdir(dir, 0o755); err != nil {
				return permissionHint(fmt.Errorf("create cgroup: %w", err))
			}
			cg.dirs = append(cg.dirs, dir)
		}
		cg.ctl[ctl] = dir
	}
	r := cg.res
	if r.Memory > 0 {
		mem := cg.ctl["memory"]
		if err := writeCgroup(mem, "memory.limit_in_bytes", strconv.FormatInt(r.Memory, 10)); err != nil {
			return err
		}
		// The same limit on memory+swap keeps the container from swapping past it; without swap
		// accounting (swapaccount=0, or no swap) the file is missing and there is nothing to stop.
		if err := writeCgroup(mem, "memory.memsw.limit_in_bytes", strconv.FormatInt(r.Memory, 10)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if r.Pids > 0 {
		if err := writeCgroup(cg.ctl["pids"], "pids.max", strconv.FormatInt(r.Pids, 10)); err != nil {
			return err
		}
	}
	if r.CPU > 0 {
		if err := writeCgroup(cg.ctl["cpu"], "cpu.cfs_period_us", strconv.Itoa(cpuPeriod)); err != nil {
			return err
		}
		if err := writeCgroup(cg.ctl["cpu"], "cpu.cfs_quota_us", strconv.FormatInt(r.cpuQuota(), 10)); err != nil {
			return err
		}
	}
	return nil
}

func (cg *cgroup) makeV2(h *cgroupHost, name string) error {
	need, want := v2Controllers(cg.res)
	base := filepath.Join(h.root, cgroupBase)
	cg.base = base
	// Another process may remove base (its last container closed) between our steps: start
	// over when something we just made is gone.
	var err error
	for try := 0; try < 5; try++ {
		if err = cg.tryV2(h, base, name, need, want); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		cg.rmdirs()
	}
	return err
}

func (cg *cgroup) tryV2(h *cgroupHost, base, name string, need, want []string) error {
	b, err := os.ReadFile(filepath.Join(h.root, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("cgroup v2: %w", err)
	}
	have := strings.Fields(string(b))
	for _, ctl := range need {
		if !slices.Contains(have, ctl) {
			hint := ""
			if boundToV1(ctl) {
				hint = "; it is bound to a cgroup v1 hierarchy (a hybrid host), and cannot move to v2 while that is mounted"
			}
			return fmt.Errorf("cgroup v2 at %s: no %s controller for the %s limit (it has: %s)%s",
				h.root, ctl, limitOf(ctl), strings.Join(have, " "), hint)
		}
	}
	var enable []string
	for _, ctl := range want {
		if slices.Contains(have, ctl) {
			enable = append(enable, "+"+ctl)
		}
	}
	if err := os.Mkdir(base, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return permissionHint(fmt.Errorf("cgroup v2: %w", err))
	}
	if len(enable) > 0 {
		// base has no processes, so it may hand controllers down; the root must hand them to it.
		for _, d := range []string{h.root, base} {
			if err := writeCgroup(d, "cgroup.subtree_control", strings.Join(enable, " ")); err != nil {
				return permissionHint(err)
			}
		}
	}
	dir := filepath.Join(base, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return permissionHint(fmt.Errorf("create cgroup: %w", err))
	}
	cg.dirs = []string{dir}
	r := cg.res
	if r.Memory > 0 {
		if err := writeCgroup(dir, "memory.max", strconv.FormatInt(r.Memory, 10)); err != nil {
			return err
		}
		// Missing without swap accounting: nothing to stop then.
		if err := writeCgroup(dir, "memory.swap.max", "0"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if r.Pids > 0 {
		if err := writeCgroup(dir, "pids.max", strconv.FormatInt(r.Pids, 10)); err != nil {
			return err
		}
	}
	if r.CPU > 0 {
		if err := writeCgroup(dir, "cpu.max", fmt.Sprintf("%d %d", r.cpuQuota(), cpuPeriod)); err != nil {
			return err
		}
	}
	fd, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open cgroup: %w", err)
	}
	cg.fd = fd
	return nil
}

// boundToV1 says whether a controller is attached to a v1 hierarchy: /proc/cgroups gives it a
// hierarchy ID other than 0.
func boundToV1(ctl string) bool {
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		// subsys_name hierarchy num_cgroups enabled
		if f := strings.Fields(line); len(f) >= 2 && f[0] == ctl {
			return f[1] != "0"
		}
	}
	return false
}

func limitOf(ctl string) string {
	switch ctl {
	case "memory":
		return "memory"
	case "pids":
		return "pids"
	}
	return "CPU"
}

// permissionHint says what is missing when the kernel refused to let us make a cgroup.
func permissionHint(err error) error {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS) {
		return fmt.Errorf("%w (resource limits need root, or write access to a delegated cgroup)", err)
	}
	return err
}

func writeCgroup(dir, file, value string) error {
	p := filepath.Join(dir, file)
	f, err := os.OpenFile(p, os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("set %s: %w", p, err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", value, p, err)
	}
	return nil
}

// cloneFD is the directory to fork the init into (v2), or nil.
func (cg *cgroup) cloneFD() *os.File {
	if cg == nil || !cg.v2 {
		return nil
	}
	return cg.fd
}

// procsFiles are what the init writes itself into as the first op of its setup (v1).
func (cg *cgroup) procsFiles() []string {
	if cg == nil || cg.v2 {
		return nil
	}
	out := make([]string, len(cg.dirs))
	for i, d := range cg.dirs {
		out[i] = filepath.Join(d, "cgroup.procs")
	}
	return out
}

func (cg *cgroup) dirOf(ctl string) string {
	if cg.v2 {
		return cg.dirs[0]
	}
	return cg.ctl[ctl]
}

// readInt reads a file holding one number; a missing controller reads as 0.
func readInt(dir, file string) int64 {
	if dir == "" {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// readKey reads "key value" lines (memory.events, cpu.stat, ...) for key.
func readKey(dir, file, key string) int64 {
	if dir == "" {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// cgroupEvents are the counters that say why a command died.
type cgroupEvents struct{ oomKills, pidsLimited int64 }

func (cg *cgroup) events() cgroupEvents {
	if cg.v2 {
		return cgroupEvents{readKey(cg.dirs[0], "memory.events", "oom_kill"), readKey(cg.dirs[0], "pids.events", "max")}
	}
	return cgroupEvents{readKey(cg.ctl["memory"], "memory.oom_control", "oom_kill"), readKey(cg.ctl["pids"], "pids.events", "max")}
}

// mark sets a command's OOMKilled and PidsLimited from the counters at its start and now.
func (cg *cgroup) mark(st *ExitState, before cgroupEvents) {
	after := cg.events()
	st.oomKilled = after.oomKills > before.oomKills && st.ExitCode() == 137
	st.pidsLimited = after.pidsLimited > before.pidsLimited
}

func (cg *cgroup) stats() Stats {
	if cg.v2 {
		d := cg.dirs[0]
		ev := cg.events()
		return Stats{
			Memory:      readInt(d, "memory.current"),
			MemoryPeak:  readInt(d, "memory.peak"),
			CPU:         time.Duration(readKey(d, "cpu.stat", "usage_usec")) * time.Microsecond,
			Pids:        readInt(d, "pids.current"),
			OOMKills:    ev.oomKills,
			PidsLimited: ev.pidsLimited,
		}
	}
	ev := cg.events()
	return Stats{
		Memory:      readInt(cg.ctl["memory"], "memory.usage_in_bytes"),
		MemoryPeak:  readInt(cg.ctl["memory"], "memory.max_usage_in_bytes"),
		CPU:         time.Duration(readInt(cg.ctl["cpuacct"], "cpuacct.usage")),
		Pids:        readInt(cg.ctl["pids"], "pids.current"),
		OOMKills:    ev.oomKills,
		PidsLimited: ev.pidsLimited,
	}
}

// Stats reads the container's resource accounting from its cgroup; after Close, the last
// reading before the cgroup was removed. A container without Config.Resources has none.
func (c *Container) Stats() (Stats, error) {
	cg := c.cg
	if cg == nil {
		return Stats{}, fmt.Errorf("isolate: container %s: no resource accounting (it was started without Config.Resources)", c.id)
	}
	cg.mu.Lock()
	defer cg.mu.Unlock()
	if cg.removed {
		return cg.final, nil
	}
	return cg.stats(), nil
}

// initExited is why a container ended when its init went without being asked to: with a
// memory limit, that may be the OOM killer's doing, and the error says so.
func (c *Container) initExited() error {
	if c.cg != nil && c.cg.res.Memory > 0 {
		if c.cg.events().oomKills > 0 { // 0 once Close removed the cgroup
			return fmt.Errorf("isolate: container %s: init exited; the OOM killer has killed in it (memory limit %d bytes)", c.id, c.cg.res.Memory)
		}
	}
	return fmt.Errorf("isolate: container %s: init exited", c.id)
}

// remove keeps the final accounting and removes the cgroup, once the container's processes
// are gone. It is idempotent.
func (cg *cgroup) remove() error {
	cg.mu.Lock()
	defer cg.mu.Unlock()
	if cg.removed {
		return nil
	}
	cg.removed = true
	cg.final = cg.stats()
	if err := cg.rmdirs(); err != nil {
		return fmt.Errorf("isolate: resource limits: %w", err)
	}
	return nil
}

func (cg *cgroup) rmdirs() error {
	if cg.fd != nil {
		cg.fd.Close()
		cg.fd = nil
	}
	var first error
	for i := len(cg.dirs) - 1; i >= 0; i-- {
		if err := rmdirCgroup(cg.dirs[i], cg.v2); err != nil && first == nil {
			first = err
		}
	}
	if cg.base != "" {
		// The shared base goes with the last container of any process; whoever needs it next
		// makes it again (see makeV2). It fails while other containers have cgroups in it.
		unix.Rmdir(cg.base)
	}
	return first
}

// rmdirCgroup removes a cgroup directory. Right after the last of its processes is reaped the
// kernel may still be taking them out of it (EBUSY): retry for a while. On v2 what is still in
// it after that is killed (cgroup.kill, linux 5.14) and the removal tried once more.
func rmdirCgroup(dir string, v2 bool) error { return rmdirWithin(dir, v2, 5*time.Second) }

func rmdirWithin(dir string, v2 bool, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	delay := time.Millisecond
	killed := false
	for {
		err := unix.Rmdir(dir)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		if err != unix.EBUSY {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		if time.Now().After(deadline) {
			if v2 && !killed {
				killed = true
				writeCgroup(dir, "cgroup.kill", "1")
				deadline = time.Now().Add(time.Second)
				continue
			}
			return fmt.Errorf("remove cgroup %s: %w (processes are still in it)", dir, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// procStart is a process's start time in clock ticks since boot (field 22 of /proc/PID/stat):
// with the pid, it names a process for good (a pid alone is reused).
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command (field 2) is in parentheses and may hold spaces and parentheses itself.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); the start time is field 22.
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// staleOwner says whether a cgroup named by newCgroup belongs to a process that is gone. Names
// that are not ours are never stale.
func staleOwner(name string) bool {
	f := strings.SplitN(name, "-", 4)
	if len(f) != 4 || f[0] != "isorun" {
		return false
	}
	pid, err1 := strconv.Atoi(f[1])
	start, err2 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return false
	}
	now, err := procStart(pid)
	return err != nil || now != start
}

var sweepOnce sync.Once

// sweepStale removes the cgroups that dead owners left where this process makes its own.
func sweepStale(h *cgroupHost) []string {
	var dirs []string
	if h.v2 {
		dirs = []string{filepath.Join(h.root, cgroupBase)}
	} else {
		for _, d := range h.own {
			if !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	var removed []string
	for _, d := range dirs {
		removed = append(removed, removeStaleIn(d, 0)...)
	}
	return removed
}

// removeStaleIn removes the stale cgroups in dir, and with depth > 0, in its descendants down
// to that depth. A stale cgroup that still has processes fails to go and is left alone.
func removeStaleIn(dir string, depth int) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), "isorun-") {
			if staleOwner(e.Name()) && removeStale(p) {
				removed = append(removed, p)
			}
			continue
		}
		if depth > 0 {
			removed = append(removed, removeStaleIn(p, depth-1)...)
		}
	}
	return removed
}

// removeStale removes a dead owner's cgroup unless processes are still in it. Right after they
// went the kernel may still be taking the last ones out (EBUSY with an empty cgroup.procs):
// that is waited for, briefly.
func removeStale(dir string) bool {
	err := unix.Rmdir(dir)
	if err == unix.EBUSY {
		if procs, rerr := os.ReadFile(filepath.Join(dir, "cgroup.procs")); rerr == nil && len(procs) == 0 {
			return rmdirWithin(dir, false, time.Second) == nil
		}
	}
	return err == nil
}

// GC removes the cgroups that killed processes left behind (their owner is gone and they are
// empty), in every cgroup hierarchy mounted here, and returns their paths. `isorun gc` calls
// it; any process that makes a cgroup also sweeps, once, where it makes them.
func GC() ([]string, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, m := range mounts {
		if m.v2 {
			base := filepath.Join(m.point, cgroupBase)
			removed = append(removed, removeStaleIn(base, 0)...)
			if unix.Rmdir(base) == nil {
				removed = append(removed, base)
			}
			continue
		}
		// v1 cgroups are made under the maker's own cgroup, anywhere in the hierarchy.
		removed = append(removed, removeStaleIn(m.point, 32)...)
	}
	return removed, nil
}

// ResourcesBlocker says what stops containers with Config.Resources here, nil when nothing does:
// it makes a cgroup with a memory, pids and CPU limit, as Start would, and removes it. Not root,
// that takes write access to a delegated cgroup (the error then ends "resource limits need root,
// or write access to a delegated cgroup").
func ResourcesBlocker() error {
	cg, err := newCgroup("probe-"+newID(), Resources{Memory: 64 << 20, Pids: 64, CPU: 1})
	if err != nil {
		return err
	}
	return cg.remove()
}
