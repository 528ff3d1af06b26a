// Command peers measures one container lifecycle — a fresh overlay over the same busybox image,
// run `true` inside, read or drop the changes, tear down — for isorun and its peers, in one run
// on one machine, and prints medians and ratios to isorun. It also measures scaling (containers
// per second in parallel), diff and commit cost against upper and image size, and the memory an
// idle container keeps. `make bench` installs the peers (Debian's runc, bubblewrap, podman) and
// runs it; see bench/README.md.
//
// Every peer is driven the same way, from this program, sequentially, after a warm-up, with the
// overlay mount and unmount inside the timed region for the peers that do not make their own.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/isorun/isorun/fixtures"
	"github.com/isorun/isorun/harness"
	"github.com/isorun/isorun/isolate"
	"github.com/isorun/isorun/overlay"
	"golang.org/x/sys/unix"
)

var (
	flagN       = flag.Int("n", 100, "lifecycles per peer")
	flagPodmanN = flag.Int("podman-n", 15, "lifecycles for podman (slow)")
	flagCLI     = flag.String("cli", "bin/isorun", "path of the isorun binary")
	flagOnly    = flag.String("only", "", "comma-separated sections: peers,scaling,diff,memory (default all)")
	flagJSON    = flag.String("json", "", "also write the results as JSON here")
	flagPeers   = flag.String("peers", "", "only the lifecycle rows whose name matches this regexp (default all)")
)

type result struct {
	Name    string
	Samples []time.Duration
	Err     string
}

func (r result) median() time.Duration { return pct(r.Samples, 50) }

func pct(s []time.Duration, p int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := append([]time.Duration(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c[(len(c)-1)*p/100]
}

func main() {
	flag.Parse()
	if os.Geteuid() != 0 {
		fatal("run as root: the peers (runc, podman) and the overlay mounts need it")
	}
	sections := map[string]bool{}
	for _, s := range strings.Split(*flagOnly, ",") {
		if s != "" {
			sections[s] = true
		}
	}
	all := len(sections) == 0
	report := map[string]any{"machine": machine()}

	res, err := fixtures.Busybox().Resolve()
	if err != nil {
		fatal("busybox image: %v", err)
	}
	if len(res.Lowers) != 1 {
		fatal("busybox image: want one lower, got %d", len(res.Lowers))
	}
	root := res.Lowers[0]
	fmt.Printf("# isorun peer benchmark\n\n%s\n\nimage: busybox (%s), one lower: %s\n\n", machine(), res.Digest[:19], root)

	if all || sections["peers"] {
		report["peers"] = peers(root)
	}
	if all || sections["scaling"] {
		report["scaling"] = scaling()
	}
	if all || sections["diff"] {
		report["diff"] = diffCost()
	}
	if all || sections["memory"] {
		report["memory"] = memory()
	}
	if *flagJSON != "" {
		b, _ := json.MarshalIndent(report, "", "  ")
		os.WriteFile(*flagJSON, b, 0o644)
	}
}

func fatal(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "peers: "+f+"\n", a...)
	os.Exit(1)
}

func machine() string {
	var u unix.Utsname
	unix.Uname(&u)
	cpu := "unknown cpu"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	return fmt.Sprintf("machine: %s, %d cpus, linux %s, %s; load before: %s",
		cpu, runtime.NumCPU(), unix.ByteSliceToString(u.Release[:]), runtime.Version(), strings.Fields(string(load) + " ? ")[0])
}

// scratchOverlay mounts a fresh overlay of root and returns its merged dir and an undo.
func scratchOverlay(root string) (string, func(), error) { return scratchOverlayAt(root, "") }

// scratchOverlayAt mounts it on target (an existing directory) when target is not empty.
func scratchOverlayAt(root, target string) (string, func(), error) {
	dir, err := os.MkdirTemp("", "peers-")
	if err != nil {
		return "", nil, err
	}
	up, wk, mg := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{up, wk, mg} {
		os.Mkdir(d, 0o755)
	}
	if target != "" {
		mg = target
	}
	if err := overlay.Mount(mg, overlay.Config{Lowers: []string{root}, Upper: up, Work: wk}); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return mg, func() {
		overlay.Unmount(mg)
		overlay.Remove(dir)
	}, nil
}

func run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

type peer struct {
	name  string
	n     int
	setup func() error
	once  func() error
	// batch, instead of once, runs n (plus warm-up) lifecycles itself and times each.
	batch func(n int) ([]time.Duration, error)
}

// buildFloor builds bench/floor/floor.c, static, into dir.
func buildFloor(dir string) (string, error) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		return "", errors.New("no C compiler (cc) to build bench/floor/floor.c")
	}
	bin := filepath.Join(dir, "floor")
	if out, err := exec.Command(cc, "-O2", "-static", "-o", bin, "bench/floor/floor.c").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build bench/floor/floor.c: %v: %s", err, out)
	}
	return bin, nil
}

// kernelFloor runs n lifecycles of the floor program bin over root with the given options
// (-full, -confine, -ahead): see bench/floor/floor.c.
func kernelFloor(bin, root string, n int, opts ...string) ([]time.Duration, error) {
	scratch, err := os.MkdirTemp("", "peers-floor-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	var stderr bytes.Buffer
	cmd := exec.Command(bin, append(opts, strconv.Itoa(n), root, scratch)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, stderr.String())
	}
	var ds []time.Duration
	for _, l := range strings.Fields(string(out)) {
		ns, err := strconv.ParseInt(l, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("floor said %q", l)
		}
		ds = append(ds, time.Duration(ns))
	}
	return ds, nil
}

func peers(root string) []result {
	busybox, _ := exec.LookPath("busybox")
	bundle, _ := os.MkdirTemp("", "peers-runc-")
	defer os.RemoveAll(bundle)
	floorDir, _ := os.MkdirTemp("", "peers-floor-bin-")
	defer os.RemoveAll(floorDir)
	// Built by the first floor row that runs: -peers may leave them all out.
	floor := sync.OnceValues(func() (string, error) { return buildFloor(floorDir) })
	floorRow := func(opts ...string) func(int) ([]time.Duration, error) {
		return func(n int) ([]time.Duration, error) {
			bin, err := floor()
			if err != nil {
				return nil, err
			}
			return kernelFloor(bin, root, n, opts...)
		}
	}
	var seq atomic.Int64
	list := []peer{
		{name: "fork/exec (floor)", n: *flagN, once: func() error { return run(busybox, "true") }},
		// What the kernel charges for namespaces, an overlay, /proc and pivot_root, with no
		// runtime at all: the part of a lifecycle no implementation can avoid (bench/floor).
		{name: "kernel floor (C: namespaces, overlay, /proc, pivot_root)", n: *flagN, batch: floorRow()},
		// The same program doing all of the setup isorun does (issue 4's list: /dev and its
		// nodes, /sys, the masks, loopback, hostname), then isorun's confinement of the command
		// too, then set up one container ahead as isorun's parked containers are: what an
		// implementation with no runtime, no control channel and no diff would cost.
		{name: "kernel floor, whole setup (C: + /dev, /sys, masks, lo, hostname)", n: *flagN, batch: floorRow("-full")},
		{name: "kernel floor, whole setup + confinement (C: + caps, no_new_privs, seccomp)", n: *flagN, batch: floorRow("-full", "-confine")},
		{name: "kernel floor, whole setup + confinement, set up ahead (C)", n: *flagN, batch: floorRow("-full", "-confine", "-ahead")},
		{name: "isorun (library)", n: *flagN, once: func() error {
			e, err := harness.Start(context.Background(), fixtures.Busybox())
			if err != nil {
				return err
			}
			defer e.Release()
			if err := e.Command("true").Run(); err != nil {
				return err
			}
			_, err = e.Diff()
			return err
		}},
		// The same lifecycle rootless: in a user namespace of its own, as a user's tests run.
		{name: "isorun (library, rootless)", n: *flagN, once: func() error {
			e, err := harness.Start(context.Background(), fixtures.Busybox(), harness.WithRootless())
			if err != nil {
				return err
			}
			defer e.Release()
			if !e.Rootless() {
				return errors.New("harness.WithRootless: the container is not rootless")
			}
			if err := e.Command("true").Run(); err != nil {
				return err
			}
			_, err = e.Diff()
			return err
		}},
		{name: "isorun (library, Go init)", n: *flagN, once: func() error {
			// Set for every lifecycle: Start reads it each time, and the other rows must not see it.
			os.Setenv("ISORUN_INIT", "go")
			defer os.Unsetenv("ISORUN_INIT")
			c, err := isolate.Start(context.Background(), isolate.Config{Lowers: []string{root}})
			if err != nil {
				return err
			}
			defer c.Release()
			if err := c.Command("true").Run(); err != nil {
				return err
			}
			_, err = overlay.Diff(c.Upper(), c.Lowers())
			return err
		}},
		{name: "isorun (CLI)", n: *flagN, once: func() error { return run(*flagCLI, "run", "--image", "busybox", "--", "true") }},
		{name: "unshare + chroot", n: *flagN, once: func() error {
			mg, undo, err := scratchOverlay(root)
			if err != nil {
				return err
			}
			defer undo()
			return run("unshare", "--mount", "--pid", "--fork", "--uts", "--ipc", "--net", "chroot", mg, "/bin/true")
		}},
		{name: "bubblewrap", n: *flagN, once: func() error {
			mg, undo, err := scratchOverlay(root)
			if err != nil {
				return err
			}
			defer undo()
			return run("bwrap", "--bind", mg, "/", "--proc", "/proc", "--dev", "/dev", "--unshare-all", "--die-with-parent", "/bin/true")
		}},
		{name: "runc", n: *flagN, setup: func() error { return runcSpec(bundle) }, once: func() error {
			_, undo, err := scratchOverlayAt(root, filepath.Join(bundle, "rootfs"))
			if err != nil {
				return err
			}
			defer undo()
			return run("runc", "run", "--bundle", bundle, "peers-"+strconv.FormatInt(seq.Add(1), 10))
		}},
		{name: "podman", n: *flagPodmanN, setup: func() error { return podmanImage(root) }, once: func() error {
			return run("podman", "run", "--rm", "--network=none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "localhost/isorun-bench-busybox", "/bin/true")
		}},
	}
	only, err := regexp.Compile(*flagPeers)
	if err != nil {
		fatal("-peers: %v", err)
	}
	var results []result
	for _, p := range list {
		if !only.MatchString(p.name) {
			continue
		}
		r := result{Name: p.name}
		if p.setup != nil {
			if err := p.setup(); err != nil {
				r.Err = err.Error()
				results = append(results, r)
				fmt.Fprintf(os.Stderr, "%s: %v\n", p.name, err)
				continue
			}
		}
		if p.batch != nil {
			ds, err := p.batch(3 + p.n)
			if err != nil {
				r.Err = err.Error()
				fmt.Fprintf(os.Stderr, "%s: %v\n", p.name, err)
			} else {
				r.Samples = ds[3:]
			}
			results = append(results, r)
			continue
		}
		for i := 0; i < 3+p.n; i++ { // 3 warm-up rounds
			t0 := time.Now()
			err := p.once()
			d := time.Since(t0)
			if err != nil {
				r.Err = err.Error()
				fmt.Fprintf(os.Stderr, "%s: %v\n", p.name, err)
				break
			}
			if i >= 3 {
				r.Samples = append(r.Samples, d)
			}
		}
		results = append(results, r)
	}
	var base time.Duration
	for _, r := range results {
		if r.Name == "isorun (library)" {
			base = r.median()
		}
	}
	fmt.Printf("## One container lifecycle (fresh overlay, run `true`, tear down)\n\n")
	fmt.Printf("| runtime | median | p90 | vs isorun (library) |\n|---|---:|---:|---:|\n")
	for _, r := range results {
		if r.Err != "" {
			fmt.Printf("| %s | failed: %s | | |\n", r.Name, firstLine(r.Err))
			continue
		}
		vs := ""
		if base > 0 {
			vs = fmt.Sprintf("%.2fx", float64(r.median())/float64(base))
		}
		fmt.Printf("| %s | %s | %s | %s |\n", r.Name, ms(r.median()), ms(pct(r.Samples, 90)), vs)
	}
	fmt.Println()
	live := liveCommand()
	results = append(results, live...)
	return results
}

// liveCommand compares a command in a running container with a plain fork/exec.
func liveCommand() []result {
	e, err := harness.Start(context.Background(), fixtures.Busybox())
	if err != nil {
		fatal("start: %v", err)
	}
	defer e.Release()
	busybox, _ := exec.LookPath("busybox")
	in := result{Name: "command in a live container"}
	out := result{Name: "fork/exec of the same binary"}
	for i := 0; i < 3+*flagN; i++ {
		t0 := time.Now()
		if err := e.Command("true").Run(); err != nil {
			fatal("run: %v", err)
		}
		d1 := time.Since(t0)
		t0 = time.Now()
		if err := run(busybox, "true"); err != nil {
			fatal("run: %v", err)
		}
		d2 := time.Since(t0)
		if i >= 3 {
			in.Samples = append(in.Samples, d1)
			out.Samples = append(out.Samples, d2)
		}
	}
	fmt.Printf("## A command in a live container\n\n| | median | p90 | ratio |\n|---|---:|---:|---:|\n")
	fmt.Printf("| %s | %s | %s | %.2fx |\n", out.Name, ms(out.median()), ms(pct(out.Samples, 90)), 1.0)
	fmt.Printf("| %s | %s | %s | %.2fx |\n\n", in.Name, ms(in.median()), ms(pct(in.Samples, 90)), float64(in.median())/float64(out.median()))
	return []result{in, out}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func runcSpec(bundle string) error {
	if _, err := exec.LookPath("runc"); err != nil {
		return fmt.Errorf("runc not installed (make bench installs Debian's runc)")
	}
	cmd := exec.Command("runc", "spec")
	cmd.Dir = bundle
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("runc spec: %v: %s", err, out)
	}
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		return err
	}
	p := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		return err
	}
	proc := c["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/bin/true"}
	delete(proc, "rlimits") // this machine lacks CAP_SYS_RESOURCE; isorun sets none either
	c["root"].(map[string]any)["readonly"] = false
	b, _ = json.Marshal(c)
	return os.WriteFile(p, b, 0o644)
}

func podmanImage(root string) error {
	if _, err := exec.LookPath("podman"); err != nil {
		return fmt.Errorf("podman not installed (make bench installs Debian's podman)")
	}
	if run("podman", "image", "exists", "localhost/isorun-bench-busybox") == nil {
		return nil
	}
	tarball := filepath.Join(os.TempDir(), "isorun-bench-busybox.tar")
	defer os.Remove(tarball)
	if err := run("tar", "-C", root, "-cf", tarball, "."); err != nil {
		return err
	}
	return run("podman", "import", tarball, "localhost/isorun-bench-busybox")
}

// scaling: whole lifecycles per second with P goroutines, each for a fixed time.
func scaling() map[string]float64 {
	fmt.Printf("## Scaling: whole lifecycles per second (%d cpus)\n\n| parallel | lifecycles/s |\n|---:|---:|\n", runtime.NumCPU())
	out := map[string]float64{}
	for _, p := range []int{1, 2, 8} {
		var n atomic.Int64
		var wg sync.WaitGroup
		deadline := time.Now().Add(3 * time.Second)
		t0 := time.Now()
		for i := 0; i < p; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					e, err := harness.Start(context.Background(), fixtures.Busybox())
					if err != nil {
						fatal("start: %v", err)
					}
					if err := e.Command("true").Run(); err != nil {
						fatal("run: %v", err)
					}
					if _, err := e.Diff(); err != nil {
						fatal("diff: %v", err)
					}
					e.Release()
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		rate := float64(n.Load()) / time.Since(t0).Seconds()
		out[strconv.Itoa(p)] = rate
		fmt.Printf("| %d | %.0f |\n", p, rate)
	}
	fmt.Println()
	return out
}

// diffCost: Diff and Commit against the upper's size, and against the image's size.
func diffCost() map[string]string {
	out := map[string]string{}
	fmt.Printf("## Diff and commit cost\n\n| upper (changed files) | image files | diff | commit |\n|---:|---:|---:|---:|\n")
	for _, k := range []int{1, 100, 10000, 100000} {
		d, c := diffCommit(fixtures.Busybox(), k)
		out[fmt.Sprintf("upper=%d", k)] = fmt.Sprintf("diff %s commit %s", ms(d), ms(c))
		fmt.Printf("| %d | busybox (~%d) | %s | %s |\n", k, 420, ms(d), ms(c))
	}
	for _, files := range []int{1000, 100000} {
		img := bigImage(files)
		d, c := diffCommit(img, 10)
		out[fmt.Sprintf("image=%d", files)] = fmt.Sprintf("diff %s commit %s", ms(d), ms(c))
		fmt.Printf("| 10 | %d | %s | %s |\n", files, ms(d), ms(c))
	}
	fmt.Println()
	return out
}

func bigImage(files int) fixtures.Image {
	entries := []fixtures.Entry{}
	for i := 0; i < files; i++ {
		entries = append(entries, fixtures.File(fmt.Sprintf("/data/%03d/%d", i%1000, i), "x"))
	}
	return fixtures.With(fixtures.Busybox(), entries...)
}

func diffCommit(img fixtures.Image, k int) (time.Duration, time.Duration) {
	e, err := harness.Start(context.Background(), img)
	if err != nil {
		fatal("start: %v", err)
	}
	defer e.Release()
	script := fmt.Sprintf("mkdir -p /w && cd /w && i=0; seq 1 %d | xargs touch", k)
	if err := e.Command("sh", "-c", script).Run(); err != nil {
		fatal("populate: %v", err)
	}
	var dd, cc []time.Duration
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		if _, err := e.Diff(); err != nil {
			fatal("diff: %v", err)
		}
		dd = append(dd, time.Since(t0))
		t0 = time.Now()
		if _, err := e.Commit(); err != nil {
			fatal("commit: %v", err)
		}
		cc = append(cc, time.Since(t0))
	}
	return pct(dd, 50), pct(cc, 50)
}

// memory: what an idle container keeps (its init), as RSS and PSS.
func memory() map[string]float64 {
	const n = 10
	var es []*harness.Engine
	for i := 0; i < n; i++ {
		e, err := harness.Start(context.Background(), fixtures.Busybox())
		if err != nil {
			fatal("start: %v", err)
		}
		es = append(es, e)
	}
	defer func() {
		for _, e := range es {
			e.Release()
		}
	}()
	// An init that shares its zygote's memory (isolate's static zygote, as root) shows the whole
	// address space as its own: that counts once, shared out over every process in it (the
	// zygote, these inits, the pool's, parked ones).
	var rss, pss float64
	for _, e := range es {
		pid := e.Container().Pid()
		ppid := parentOf(pid)
		r, p := smaps(pid)
		if ppid > 0 && sameMemory(ppid, pid) {
			users := 1.0
			for _, c := range childrenOf(ppid) {
				if sameMemory(ppid, c) {
					users++
				}
			}
			r, p = r/users, p/users
		}
		rss += r
		pss += p
	}
	fmt.Printf("## Memory per idle container (its init, %d containers)\n\n| RSS | PSS |\n|---:|---:|\n| %.0f KiB | %.0f KiB |\n\n", n, rss/n, pss/n)
	return map[string]float64{"rss_kib": rss / n, "pss_kib": pss / n}
}

// parentOf is pid's parent, or 0.
func parentOf(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		if f := strings.Fields(s[i+1:]); len(f) > 1 {
			ppid, _ := strconv.Atoi(f[1])
			return ppid
		}
	}
	return 0
}

// childrenOf lists pid's children.
func childrenOf(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if c, err := strconv.Atoi(e.Name()); err == nil && parentOf(c) == pid {
			out = append(out, c)
		}
	}
	return out
}

func smaps(pid int) (rss, pss float64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	for _, l := range strings.Split(string(b), "\n") {
		fs := strings.Fields(l)
		if len(fs) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(fs[1], 64)
		switch fs[0] {
		case "Rss:":
			rss = v
		case "Pss:":
			pss = v
		}
	}
	return rss, pss
}
