//go:build linux

package isolate

import (
	"context"
	"os/exec"
	"syscall"
	"testing"

	"github.com/isorun/isorun/overlay"
)

// The goals (issue 4) are ratios to a plain fork/exec of the same binary, measured in the same
// run: a command in a live container <= 1.5x, a whole container <= 3x. Each benchmark measures
// its baselines first and reports every variant's ratio to the os/exec one as "x-fork-exec".
//
//	go test -run '^$' -bench . -count 5 ./isolate/

const busybox = "/usr/bin/busybox"

// forkExecNs and parallelForkExecNs are the ns/op of the os/exec baselines of the benchmark
// running now.
var forkExecNs, parallelForkExecNs float64

// baselines are the fork/exec of busybox true, the binary `true` runs in the containers.
func baselines(b *testing.B) {
	b.Run("fork-exec", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command(busybox, "true").Run(); err != nil {
				b.Fatal(err)
			}
		}
		forkExecNs = nsPerOp(b)
	})
	b.Run("fork-exec-raw", func(b *testing.B) {
		attr := &syscall.ProcAttr{Env: []string{"PATH=/usr/bin"}}
		for b.Loop() {
			pid, err := syscall.ForkExec(busybox, []string{"true"}, attr)
			if err != nil {
				b.Fatal(err)
			}
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
				b.Fatal(err, ws)
			}
		}
		reportRatio(b, forkExecNs)
	})
}

func nsPerOp(b *testing.B) float64 { return float64(b.Elapsed().Nanoseconds()) / float64(b.N) }

func reportRatio(b *testing.B, base float64) {
	if base > 0 {
		b.ReportMetric(nsPerOp(b)/base, "x-fork-exec")
	}
}

// benchModes are the inits benchmarked, by sub-benchmark name; "warm" containers are set up
// ahead of their Start (Config.ImageID, warm_linux.go), as the harness's are.
var benchModes = []struct {
	name, mode string
	warm       bool
}{{"zygote", modeZygote, false}, {"zygote-warm", modeZygote, true}, {"go-init", modeGo, false}}

func benchConfig(mode string, warm bool) Config {
	cfg := testConfig(mode)
	if warm {
		cfg.ImageID = "isolate-test-root"
	}
	return cfg
}

func skipMode(b *testing.B, mode string) {
	needRoot(b)
	if mode != modeGo && !haveCInit {
		b.Skip("no C init in a binary built without cgo")
	}
}

// BenchmarkRun: `true` in a live container.
func BenchmarkRun(b *testing.B) {
	baselines(b)
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			skipMode(b, m.mode)
			c, err := Start(context.Background(), benchConfig(m.mode, m.warm))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Release()
			for b.Loop() {
				if err := c.Command("true").Run(); err != nil {
					b.Fatal(err)
				}
			}
			reportRatio(b, forkExecNs)
		})
	}
}

// lifecycle is what a test pays for a container: start it, run `true`, read what changed, and
// release it.
func lifecycle(mode string, warm bool) error {
	c, err := Start(context.Background(), benchConfig(mode, warm))
	if err != nil {
		return err
	}
	defer c.Release()
	if err := c.Command("true").Run(); err != nil {
		return err
	}
	if _, err := overlay.Diff(c.Upper(), c.Lowers()); err != nil {
		return err
	}
	return c.Release()
}

// BenchmarkLifecycle: a whole container, one at a time and from every CPU at once.
func BenchmarkLifecycle(b *testing.B) {
	baselines(b)
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			skipMode(b, m.mode)
			for b.Loop() {
				if err := lifecycle(m.mode, m.warm); err != nil {
					b.Fatal(err)
				}
			}
			reportRatio(b, forkExecNs)
		})
	}
	b.Run("parallel-fork-exec", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := exec.Command(busybox, "true").Run(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		parallelForkExecNs = nsPerOp(b)
	})
	for _, m := range benchModes {
		b.Run("parallel-"+m.name, func(b *testing.B) {
			skipMode(b, m.mode)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := lifecycle(m.mode, m.warm); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportRatio(b, parallelForkExecNs)
		})
	}
}
