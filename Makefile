# scpgate — see README.md. Every target works on a fresh Debian machine as root.
SHELL   := /bin/bash
GO      ?= go
BIN     := bin/scpgate
SIMBIN  := bin/scpsim
CLIENTBIN := bin/scpclient
PKGS    := ./...
# The version from git (v1.2.3-4-gabcdef0, -dirty for a modified tree), stamped into both binaries.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
LDFLAGS := -X github.com/scpgate/scpgate/internal/buildinfo.version=$(VERSION) \
           -X github.com/scpgate/scpgate/internal/buildinfo.commit=$(COMMIT)
# Integration tests bind port 443 on loopback addresses: they need root (or `unshare -rn`).
TESTFLAGS ?= -race -count=1 -timeout 15m

.PHONY: all build install cross test vet fmt-check unit integration bench bench-hold bench-deps bench-micro bench-policy bench-auth bench-report bench-client bench-compare fuzz demo clean deps

all: build

# scpgate is the product; scpclient is the SCP it fronts; scpsim (the simulated cloud and the
# demo) is for development only.
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/scpgate
	$(GO) build -ldflags "$(LDFLAGS)" -o $(CLIENTBIN) ./cmd/scpclient
	$(GO) build -ldflags "$(LDFLAGS)" -o $(SIMBIN) ./cmd/scpsim

# Install on a server (see README, "Run it on a server"): the binary, /etc/scpgate/{gateway.yaml,
# endpoints.yaml} (existing files are kept), the systemd unit, the logrotate snippet, and, as
# root without DESTDIR, the system user scpgate and /var/lib/scpgate, /var/log/scpgate.
# DESTDIR stages the files for a package instead (no user is created then).
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
DOCDIR     ?= $(PREFIX)/share/doc/scpgate
SYSCONFDIR ?= /etc
UNITDIR    ?= /etc/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/scpgate
	install -d -m 2750 $(DESTDIR)$(SYSCONFDIR)/scpgate
	@for f in gateway.yaml:deploy/gateway.yaml endpoints.yaml:endpoints.yaml; do \
	  dst=$(DESTDIR)$(SYSCONFDIR)/scpgate/$${f%%:*}; \
	  if [ -e "$$dst" ]; then echo "install: keeping $$dst (the shipped one is $${f#*:})"; \
	  else install -m 0640 $${f#*:} "$$dst" && echo "install: $$dst"; fi; done
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' deploy/scpgate.service.in > $(BIN).service
	install -D -m 0644 $(BIN).service $(DESTDIR)$(UNITDIR)/scpgate.service
	install -D -m 0644 deploy/logrotate $(DESTDIR)$(SYSCONFDIR)/logrotate.d/scpgate
	install -D -m 0644 deploy/sysusers.conf $(DESTDIR)$(SYSUSERSDIR)/scpgate.conf
	install -D -m 0644 deploy/privileged-ports.conf $(DESTDIR)$(DOCDIR)/privileged-ports.conf
	install -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -D -m 0644 docs/scp-admin.md $(DESTDIR)$(DOCDIR)/scp-admin.md
	install -d -m 0750 $(DESTDIR)/var/lib/scpgate $(DESTDIR)/var/log/scpgate
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" -eq 0 ]; then \
	  getent passwd scpgate >/dev/null || useradd --system --home-dir /var/lib/scpgate --no-create-home \
	    --shell /usr/sbin/nologin --user-group --comment "scpgate egress policy gateway" scpgate; \
	  chown root:scpgate $(SYSCONFDIR)/scpgate $(SYSCONFDIR)/scpgate/gateway.yaml $(SYSCONFDIR)/scpgate/endpoints.yaml; \
	  chown scpgate:scpgate /var/lib/scpgate /var/log/scpgate; \
	  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	  echo "install: done; next: edit $(SYSCONFDIR)/scpgate/gateway.yaml, then systemctl enable --now scpgate"; \
	else echo "install: staged in '$(DESTDIR)'; create the user scpgate (see $(SYSUSERSDIR)/scpgate.conf) where it is installed"; fi

deps:
	@./.ci/deps.sh

# What runs on the SCP (a Windows server) must build for Windows: the validator (cmd/scpgate)
# and the SCP client once it exists. make test runs this, so CI does.
CROSS := ./cmd/scpgate $(if $(wildcard cmd/scpclient),./cmd/scpclient)
cross:
	@set -e; for c in $(CROSS); do echo "== GOOS=windows GOARCH=amd64 go build $$c"; \
	  GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null $$c; done

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

# The README's test command: formatting, vet, and every test with the race detector.
test: deps fmt-check vet cross
	$(GO) test $(TESTFLAGS) $(PKGS)

unit:
	$(GO) test $(TESTFLAGS) $$($(GO) list ./... | grep -v '/integration$$')

integration: deps
	$(GO) test $(TESTFLAGS) ./integration/...

# Policy decision cost at 10, 1,000 and 10,000 rules; prints the 10,000/10 ratio.
bench-policy:
	$(GO) test -run '^$$' -bench 'BenchmarkDecide' -benchmem ./policy/

# Authenticated vs anonymous CONNECT setup through a real gateway on loopback; prints the ratio.
bench-auth:
	$(GO) test -run '^$$' -bench 'BenchmarkConnect' -benchmem ./integration/

# scpgate report: the in-process cost per audit line, then the real binary over generated audit
# files of 128 MiB and 1 GiB (AUDITREPORT_BENCH_MIB) with lines/s and peak RSS: memory stays flat.
bench-report:
	$(GO) test -run '^$$' -bench 'BenchmarkAggregate' -benchmem ./auditreport/
	$(GO) test -run '^$$' -bench 'BenchmarkReportBinary' -benchtime 1x -timeout 30m ./auditreport/

# The SCP client downloading a 1 GiB payload through a gateway vs curl through the same gateway:
# both throughputs, the ratio (want >= 0.8) and the client's peak RSS (want < 64 MiB). Needs
# root (port 443 on loopback), curl and about 2 GiB of space in $$TMPDIR; each run takes ~30 s.
BENCHCOUNT ?= 3
bench-client: deps
	$(GO) test -run '^$$' -bench 'BenchmarkSCPClientDownload1GiB' -benchtime 1x -count $(BENCHCOUNT) -timeout 30m ./integration/

bench-micro: bench-policy bench-auth bench-client

# scpgate against direct, a bare Go splice proxy, squid and tinyproxy on loopback, interleaved
# rounds; writes bin/bench/bench.md and bench.json (see cmd/scpbench). BENCHFLAGS adds flags,
# e.g. BENCHFLAGS='-rounds 5'. Not run by CI: it takes minutes and wants a quiet machine.
BENCHBIN   := bin/scpbench
BENCHFLAGS ?=
bench: bench-deps
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/scpgate
	$(GO) build -o $(BENCHBIN) ./cmd/scpbench
	./$(BENCHBIN) run -scpgate $(BIN) -out bin/bench $(BENCHFLAGS)

# At least 9,000 concurrent idle tunnels through scpgate (HOLD, default 9500) under the
# machine's open-file limit; writes bin/bench/hold.json and fails on any error.
HOLD ?= 9500
bench-hold:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/scpgate
	$(GO) build -o $(BENCHBIN) ./cmd/scpbench
	./$(BENCHBIN) hold -scpgate $(BIN) -out bin/bench -n $(HOLD)

# squid and tinyproxy from Debian's packages, for make bench only.
bench-deps:
	@missing=(); for p in squid tinyproxy; do command -v $$p >/dev/null 2>&1 || missing+=($$p); done; \
	if [ $${#missing[@]} -gt 0 ]; then \
	  [ "$$(id -u)" -eq 0 ] || { echo "bench: install $${missing[*]} (apt-get install $${missing[*]}) or run as root" >&2; exit 1; }; \
	  echo "bench: installing $${missing[*]}"; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && \
	  apt-get install -y -qq --no-install-recommends $${missing[*]} >/dev/null; \
	fi

# Compare benchmarks of BASE (a git ref) and the working tree with benchstat, COUNT runs each.
BENCHSTAT  := $(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
BASE       ?= HEAD~1
BENCHPKGS  ?= ./policy/
BENCHRE    ?= .
COUNT      ?= 6
bench-compare:
	@set -e; tmp=$$(mktemp -d); \
	trap 'git worktree remove --force "$$tmp/base" >/dev/null 2>&1 || true; rm -rf "$$tmp"' EXIT; \
	git worktree add -q --detach "$$tmp/base" $(BASE); \
	echo "== $(BASE)"; (cd "$$tmp/base" && $(GO) test -run '^$$' -bench '$(BENCHRE)' -benchmem -count $(COUNT) $(BENCHPKGS)) > "$$tmp/old.txt"; \
	echo "== working tree"; $(GO) test -run '^$$' -bench '$(BENCHRE)' -benchmem -count $(COUNT) $(BENCHPKGS) > "$$tmp/new.txt"; \
	$(BENCHSTAT) "$$tmp/old.txt" "$$tmp/new.txt"

# A short run of every fuzz target (go test -fuzz takes one target at a time).
FUZZTIME ?= 10s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

# The whole story on one machine: simulated cloud + DNS, the gateway, real traffic, a summary.
# The simulated endpoints listen on port 443 of loopback addresses, as the real ones do: as root
# it runs directly, otherwise inside an unprivileged user+network namespace (unshare -rn).
demo: deps build
	@if [ "$$(id -u)" -eq 0 ]; then ./$(SIMBIN) demo -reports .demo/reports; \
	else unshare -rn sh -c 'ip link set lo up && exec ./$(SIMBIN) demo -reports .demo/reports'; fi

clean:
	rm -rf bin
