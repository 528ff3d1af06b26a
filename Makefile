# isorun — see README.md. `make demo` and `make test` are the only set-up a fresh machine needs.
GO      ?= go
BIN     := bin/isorun
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get -y -q

.PHONY: all build demo test deps vet bench soak fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/isorun

# deps installs what the tests need (Debian packages) when it is missing. It needs root and apt-get;
# without them it says what to install by hand.
deps:
	@need=""; \
	command -v busybox >/dev/null 2>&1 && busybox --list >/dev/null 2>&1 || need="$$need busybox-static"; \
	command -v skopeo >/dev/null 2>&1 || need="$$need skopeo"; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "deps: installing$$need"; \
	    ( [ -n "$$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v lock)" ] || $(APT_GET) update ) && $(APT_GET) install $$need \
	      || { $(APT_GET) update && $(APT_GET) install $$need; }; \
	  else echo "deps: please install:$$need" >&2; exit 1; fi; \
	fi

vet:
	$(GO) vet ./...
	GOOS=darwin $(GO) vet ./...

# As root, test then runs the harness, harness/script and cmd/isorun suites again as an
# unprivileged user (rootless containers); not root, the suites above ran rootless already.
test: deps vet
	$(GO) test -race -count=1 ./...
	GO=$(GO) ./ci/test-rootless.sh

# fuzz runs every fuzzer for FUZZTIME each, one after another on one worker (-parallel=1, so
# the machine stays usable); what a fuzzer finds lands in its package's testdata/fuzz/<Name>/.
FUZZTIME ?= 5m
FUZZERS  := overlay:FuzzApplyLayer overlay:FuzzDiff overlay:FuzzChangesJSON fixtures:FuzzOpenArchive \
            fixtures:FuzzParseRef harness:FuzzParseVolume
fuzz:
	@for f in $(FUZZERS); do \
	  pkg=$${f%%:*}; name=$${f#*:}; \
	  echo "== $$name ($$pkg, $(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -parallel 1 ./$$pkg || exit 1; \
	done

# soak: SOAK (2,000) container lifecycles, SOAK_PARALLEL (50) at a time, each a mix of commands,
# files, diffs, commits, volumes, cgroups and kills; then it checks that open fds, goroutines, RSS,
# mounts, processes and state directories are back where they started, and prints the figures
# (TestSoak in harness/soak_test.go; `make test` runs a short one). The per-lifecycle subtest lines
# are left out of what it prints.
SOAK          ?= 2000
SOAK_PARALLEL ?= 50
soak: deps
	@log=$$(mktemp); \
	ISORUN_SOAK=$(SOAK) ISORUN_SOAK_PARALLEL=$(SOAK_PARALLEL) $(GO) test -run '^TestSoak$$' -count=1 -v -timeout 30m ./harness/ >$$log 2>&1; \
	rc=$$?; grep -v -e '^=== RUN' -e '^    --- PASS' $$log; rm -f $$log; exit $$rc

# demo: what does an installer change? Run it in a throwaway container: its output, then the diff.
demo: deps build
	./$(BIN) run --image busybox --diff -- sh -c '\
	  echo "installing mytool 1.0"; \
	  mkdir -p /opt/mytool/bin /etc/mytool && \
	  printf "#!/bin/sh\necho mytool 1.0 ready\n" > /opt/mytool/bin/mytool && \
	  chmod 755 /opt/mytool/bin/mytool && ln -s /opt/mytool/bin/mytool /bin/mytool && \
	  echo "threads=4" > /etc/mytool/config && \
	  echo "mytool:x:999:999::/opt/mytool:/bin/false" >> /etc/passwd && \
	  rm /bin/vi && mytool'

# bench: isorun against runc, bubblewrap, unshare+chroot and podman (Debian's, installed when
# missing), plus the Go benchmarks; the tables go to stdout and bench/last-run.md.
bench: deps build
	@need=""; for p in runc:runc bwrap:bubblewrap podman:podman; do \
	  command -v $${p%%:*} >/dev/null 2>&1 || need="$$need $${p#*:}"; done; \
	if [ -n "$$need" ]; then echo "bench: installing$$need"; $(APT_GET) install $$need || { $(APT_GET) update && $(APT_GET) install $$need; }; fi
	GO=$(GO) ./bench/run.sh | tee bench/last-run.md

clean:
	rm -rf bin
