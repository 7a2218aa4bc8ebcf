# tinyfarm — build, test, demo. `make help` lists the targets.
GO       ?= go
MINICORE ?= testdata/minicore/out
BIN      := bin/tinyfarm

.PHONY: help build deps minicore test test-short demo bench lint clean

help:
	@echo "make demo   - install deps, build the mini release, run playbooks/webfarm.lua"
	@echo "make test   - the full test suite (installs deps and builds the mini release first)"
	@echo "make bench  - every benchmark under bench/, one table"
	@echo "make build  - bin/tinyfarm"

build:
	$(GO) build -o $(BIN) ./cmd/tinyfarm

deps:
	@if [ "$$(id -u)" = 0 ]; then bash scripts/deps.sh; else echo "deps: not root, skipping apt (tests needing missing tools will skip)"; fi

minicore: deps
	bash testdata/minicore/build.sh $(MINICORE)

test: deps minicore
	$(GO) test -count=1 ./...

test-short:
	$(GO) test -short ./...

lint:
	@test -z "$$(gofmt -l . | grep -v '^testdata/')" || { gofmt -l . | grep -v '^testdata/'; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

DEMO ?= playbooks/hello.lua

demo: deps minicore build
	$(BIN) run $(DEMO)

bench: build
	bash bench/run.sh

clean:
	rm -rf bin $(MINICORE)
