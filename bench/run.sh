#!/bin/sh
# bench/run.sh: the peer comparison and the Go benchmarks, in one run on this machine. Prints
# markdown; `make bench` saves it as bench/last-run.md. Needs root (runc, podman, overlay mounts).
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
N=${BENCH_N:-200}
echo "# isorun benchmarks, $(date -u +%Y-%m-%d)"
echo
$GO run ./bench/peers -n "$N" -podman-n "${BENCH_PODMAN_N:-20}"
echo "## Go benchmarks"
echo
echo '```'
$GO test -run '^$' -bench 'BenchmarkRun|BenchmarkLifecycle' -benchtime "${BENCH_TIME:-300x}" -count 1 ./isolate/ 2>&1 | grep -E '^(Benchmark|ok|PASS)'
$GO test -run '^$' -bench 'BenchmarkDiff' -benchtime 200x -count 1 ./overlay/ 2>&1 | grep -E '^(Benchmark|ok)'
$GO test -run '^$' -bench 'BenchmarkCommit' -count 1 ./fixtures/ ./harness/ 2>&1 | grep -E '^(Benchmark|ok)' || true
$GO test -run '^$' -bench 'BenchmarkImport' -benchtime 3x -count 1 ./fixtures/ 2>&1 | grep -E '^(Benchmark|ok)'
echo '```'
