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
// Environment: ISORUN_KEEP=1 keeps each container's upper layer and command log on disk and logs
// where; ISORUN_REQUIRE=1 turns "cannot run containers here" skips into failures (for CI);
// ISORUN_CACHE moves the image cache.
package harness
