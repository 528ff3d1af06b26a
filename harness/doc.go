// Package harness is isorun's face for Go tests: a real, disposable Linux container per test,
// started from an image in one line, its changes readable as a diff, and gone when the test ends.
//
//	func TestMain(m *testing.M) { harness.Main(m) }
//
//	func TestInstaller(t *testing.T) {
//		sb := harness.Container(t, fixtures.Busybox())
//		sb.MustRun("sh", "-c", "echo hi > /greeting && rm /bin/ls")
//		harness.AssertDiff(t, sb.Diff(), "A /greeting", "D /bin/ls")
//	}
//
// Container wires fixtures (the image, cached once per machine), overlay (a private upper layer
// over the image) and isolate (namespaces, pid 1, commands) and registers t.Cleanup to kill,
// unmount and free everything. Library errors become t.Fatal messages that name the container,
// the image and the step; Run never fails the test (assert on its Result).
//
// Resource limits: WithMemory, WithPids and WithCPU put the container in a cgroup of its own
// (v1 and v2 alike) from its first instruction, so a leak, a fork bomb or a busy loop stays in
// it:
//
//	sb := harness.Container(t, fixtures.Busybox(), harness.WithMemory(64<<20), harness.WithPids(100))
//	r := sb.Run("tail", "/dev/zero")
//	// r.ExitCode == 137, r.OOMKilled == true
//	peak := sb.Stats().MemoryPeak // also CPU time, processes, OOM kills, refused forks
//
// Result.OOMKilled and Result.PidsLimited (and ExitError's methods of the same names) say why a
// command died; WithAccounting gives Stats without limits. Without any of these options no
// cgroup is made. Limits need root (or a delegated cgroup): without, the start fails saying so.
//
// Environment: ISORUN_KEEP=1 keeps each container's upper layer and command log on disk and logs
// where; ISORUN_REQUIRE=1 turns "cannot run containers here" skips into failures (for CI);
// ISORUN_CACHE moves the image cache.
package harness
