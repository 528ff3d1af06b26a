#!/usr/bin/env bash
# test-rootless.sh: as root, run the harness, harness/script and cmd/isorun test suites again as an
# unprivileged user, so that they run rootless (containers in user namespaces), and check the CLI's
# diff as that user. `make test` runs it after the suites ran as root. Not root: nothing to do (the
# suites just ran rootless).
#
# The user ($ISORUN_TEST_USER, default isorun-test) is made with useradd when missing. Everything
# it touches is in one temporary directory that only this run uses and removes: a copy of the
# source (the tests read testdata/ by relative paths and build programs from it; the checkout may
# be under /root, which the user cannot read) with its dependencies vendored so that `go build`
# needs neither the network nor root's module cache, the test binaries (built here, as root), and
# the user's HOME, TMPDIR, ISORUN_CACHE and Go caches.
#
# Environment: GO (the go command), GOTESTFLAGS (flags for `go test -c`, default -race),
# ISORUN_REQUIRE=1 passes through (skips become failures).
set -euo pipefail

GO=${GO:-go}
user=${ISORUN_TEST_USER:-isorun-test}
pkgs=(${ROOTLESS_PKGS:-harness harness/script cmd/isorun})

if [ "$(id -u)" != 0 ]; then
	echo "test-rootless: not root: the suites above ran rootless already"
	exit 0
fi
src=$(cd "$(dirname "$0")/.." && pwd)
gobin=$(command -v "$GO") || { echo "test-rootless: no $GO command" >&2; exit 1; }
gobin=$(readlink -f "$gobin")
for tool in setpriv useradd; do
	command -v $tool >/dev/null || { echo "test-rootless: needs $tool (util-linux, passwd)" >&2; exit 1; }
done
if ! id -u "$user" >/dev/null 2>&1; then
	echo "test-rootless: adding user $user"
	useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
fi
uid=$(id -u "$user")

work=$(mktemp -d /tmp/isorun-rootless-XXXXXX)
# Nothing is ever mounted under $work (containers mount only in their own namespaces), so a
# plain removal is safe; the user's test processes are gone by then (each suite waits for its
# own, and a killed run's containers die with it). ISORUN_KEEP=1 keeps it, logs included.
if [ "${ISORUN_KEEP:-}" = 1 ]; then
	trap 'echo "test-rootless: ISORUN_KEEP: kept $work (logs in $work/logs)"' EXIT
else
	trap 'rm -rf "$work"' EXIT
fi
chmod 0755 "$work"

# The source as the working tree has it (uncommitted work included), without .git and binaries.
mkdir "$work/src"
tar -C "$src" --exclude=./.git --exclude=./bin -cf - . | tar -C "$work/src" -xf -
(cd "$work/src" && GOFLAGS=-mod=mod "$GO" mod vendor)

mkdir "$work/bin"
for p in "${pkgs[@]}"; do
	(cd "$src" && "$GO" test -c ${GOTESTFLAGS--race} -o "$work/bin/${p//\//-}.test" "./$p")
done
(cd "$src" && "$GO" build -o "$work/bin/isorun" ./cmd/isorun)

mkdir -p "$work/home" "$work/tmp" "$work/cache" "$work/logs"
chown -R "$uid:$(id -g "$user")" "$work/src" "$work/home" "$work/tmp" "$work/cache" "$work/logs"

# as_user runs a command as the user, in directory $1, with an environment of its own.
as_user() {
	local dir=$1
	shift
	(cd "$dir" && setpriv --reuid="$uid" --regid="$(id -g "$user")" --init-groups -- \
		env -i HOME="$work/home" TMPDIR="$work/tmp" ISORUN_CACHE="$work/cache" \
		PATH="$(dirname "$gobin"):/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
		GOCACHE="$work/home/.cache/go-build" GOPATH="$work/home/go" GOPROXY=off GOTOOLCHAIN=local \
		GOFLAGS= ${ISORUN_REQUIRE:+ISORUN_REQUIRE=$ISORUN_REQUIRE} LANG=C.UTF-8 "$@")
}

# skips lists each skipped test of a `-test.v` log with its reason: the last line that test
# logged from a t.Skip (FILE.go:N: ...) or a testscript skip command, or what follows
# "--- SKIP: NAME" on its line (TestMain's own notes).
skips() {
	awk '
	/^=== (RUN|CONT|NAME) / { cur = $3; next }
	/^ *--- SKIP: (Test|Example|Fuzz)/ {
		name = $3
		rest = $0; sub(/^ *--- SKIP: [^ ]+ */, "", rest)
		if (rest !~ /^\([0-9.]+s\)$/) reason[name] = rest
		order[++n] = name
		next
	}
	/^ +[A-Za-z0-9_]+\.go:[0-9]+: / || /^ +> (\[[^]]*\] )*skip( |$)/ {
		line = $0; sub(/^ +/, "", line)
		if (cur != "") last[cur] = line
	}
	END {
		for (i = 1; i <= n; i++) {
			r = reason[order[i]]
			if (r == "") r = last[order[i]]
			if (r == "") r = "(no reason logged)"
			printf "\tSKIP %s: %s\n", order[i], r
		}
	}' "$1"
}

echo "test-rootless: as $user (uid $uid): ${pkgs[*]}"
fail=0
for p in "${pkgs[@]}"; do
	log="$work/logs/${p//\//-}.log"
	start=$(date +%s)
	if as_user "$work/src/$p" "$work/bin/${p//\//-}.test" -test.count=1 -test.v >"$log" 2>&1; then
		status=ok
	else
		status=FAIL
		fail=1
	fi
	# Tests of this binary only, not the "--- PASS: name" lines of what a scenario printed.
	pass=$(grep -cE -- '^ *--- PASS: (Test|Example|Fuzz)' "$log" || true)
	skip=$(grep -cE -- '^ *--- SKIP: (Test|Example|Fuzz)' "$log" || true)
	echo "$status	$p (rootless)	$(($(date +%s) - start))s	$pass passed, $skip skipped"
	# Every skip with its reason: a rootless skip must name what is missing.
	skips "$log"
	if [ $status = FAIL ]; then
		grep -B2 -A30 -- '--- FAIL' "$log" | head -300 || tail -100 "$log"
	fi
done

# The CLI as the user: the diff of a change made in a busybox container (sorted by path).
want=$'D /bin/ls\nA /x'
got=$(as_user "$work/home" "$work/bin/isorun" run --image busybox --diff -- sh -c 'echo x > /x; rm /bin/ls' 2>&1) || true
if [ "$got" = "$want" ]; then
	echo "ok	isorun run --diff as $user prints A /x and D /bin/ls"
else
	echo "FAIL	isorun run --image busybox --diff -- sh -c 'echo x > /x; rm /bin/ls' as $user:"
	echo "$got" | sed 's/^/	/'
	fail=1
fi
exit $fail
