# tinyfarm — build, test, demo. `make help` lists the targets.
GO       ?= go
MINICORE ?= testdata/minicore/out
BINDIR   ?= bin
BIN      := $(BINDIR)/tinyfarm

.PHONY: help build deps minicore minicore-x86 test crash test-short demo demo-down bench lint clean

help:
	@echo "make demo   - install deps, build the mini release, run playbooks/webfarm.lua (root)"
	@echo "make demo-down - stop and remove the demo's guests and proxy"
	@echo "make test   - the full test suite (installs deps and builds the mini release first)"
	@echo "make bench  - every benchmark under bench/, one table"
	@echo "make crash  - kill tinyfarm at 50 random moments of each operation (TestCrash*)"
	@echo "make build  - bin/tinyfarm and bin/tinyfarm-guest"

# tinyfarm-guest is the small binary tinyfarm runs for what lives as long
# as a guest (an ns guest's monitor, g:exec, the farm DHCP server), so no
# guest pays for etcd, gRPC or Lua. Both get one stamp, a hash of the
# sources: tinyfarm runs only a tinyfarm-guest built with it (see
# stdlib/colinux/guestexe), and itself otherwise.
STAMP   = $(shell cat go.mod go.sum $$(find cmd engine internal stdlib third_party -name '*.go' | LC_ALL=C sort) | sha256sum | cut -c1-16)
LDFLAGS = -X github.com/tinyfarm/tinyfarm/stdlib/colinux/guestexe.Stamp=$(STAMP)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/tinyfarm
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BINDIR)/tinyfarm-guest ./cmd/tinyfarm-guest

deps:
	@if [ "$$(id -u)" = 0 ]; then bash scripts/deps.sh; else echo "deps: not root, skipping apt (tests needing missing tools will skip)"; fi

minicore: deps
	bash testdata/minicore/build.sh $(MINICORE)

# The 32-bit (x86) mini release, from Debian i386 packages (downloaded).
MINICORE_X86 ?= testdata/minicore/out-x86
minicore-x86: deps
	MINICORE_ARCH=x86 bash testdata/minicore/build.sh $(MINICORE_X86)

# -p 1: the suite boots real guests and VMs; one package at a time keeps
# the two-core CI machine from starving TCG boots and timing-sensitive waits.
# third_party/gopher-lua is a module of its own (a patched release), so
# ./... leaves it out; its tests, with the patch's regression test, run here.
test: deps minicore minicore-x86
	$(GO) test -count=1 -p 1 ./...
	# The proxy's goroutine fast path (other systems; TINYFARM_PROXY_LOOP=0):
	# on Linux the event loops serve what it would, so its tests run again without them.
	TINYFARM_PROXY_LOOP=0 $(GO) test -count=1 ./stdlib/proxy
	cd third_party/gopher-lua && $(GO) test -count=1 .

# Crash consistency: every TestCrash* kills tinyfarm at 50 random moments
# of its operation (make test runs 3-8 each); CRASH_TRIALS=N for another count.
CRASH_TRIALS ?= 50
crash: deps minicore
	flock -o /tmp/tf-guests.lock env TINYFARM_CRASH_TRIALS=$(CRASH_TRIALS) $(GO) test -count=1 -p 1 -timeout 60m -run 'TestCrash' -v ./stdlib/... >/tmp/tinyfarm-crash.log 2>&1; s=$$?; grep -E '^(--- |ok|FAIL)|trials \(' /tmp/tinyfarm-crash.log; echo "full log: /tmp/tinyfarm-crash.log"; exit $$s

test-short:
	$(GO) test -short ./...

lint:
	@test -z "$$(gofmt -l . | grep -v '^testdata/')" || { gofmt -l . | grep -v '^testdata/'; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	# coLinux hosts are 32-bit Windows: the tree, tests included, must vet there too.
	GOOS=windows GOARCH=386 $(GO) vet ./...
	# A controller on a Mac (darwin has no mknodat, no loop devices): the tree must vet there too.
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...

GUESTS ?= 3
LISTEN ?= 127.0.0.1:8080

# The quick start: a web farm of Tiny Core guests behind one port, built
# from the mini release (the official mirror is the default for your own
# playbooks). Namespace guests need root.
demo: deps minicore build
	@[ "$$(id -u)" = 0 ] || { echo "make demo: run as root (namespace guests need cgroups, netns and loop devices)"; exit 1; }
	$(BIN) run playbooks/webfarm.lua -e mirror=file://$(CURDIR)/$(MINICORE)/mirror -e guests=$(GUESTS) -e listen=$(LISTEN)
	@echo
	@echo "The farm runs. Try:  curl -H 'Host: web1.farm.test' http://$(LISTEN)/"
	@echo "List guests:         $(BIN) guests        Remove it all:  make demo-down"

demo-down: build
	echo 'for _, g in ipairs(colinux.list()) do colinux.get(g.name):destroy{disk = true} end; proxy.daemon{stop = true}; colinux.network{remove = true}' | $(BIN) repl

bench: build
	bash bench/run.sh

clean:
	rm -rf bin $(MINICORE) $(MINICORE_X86)
