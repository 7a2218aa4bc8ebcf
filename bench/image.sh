#!/usr/bin/env bash
# bench/image.sh: image.Build of a scatter disk (core + nginx with its
# dependencies) vs the seed's shell pipeline on the same inputs, same run,
# medians of 7 interleaved runs (see bench/imagebench). Needs root and the
# mini release (make minicore). Prints bench/run.sh TSV rows.
# TestRunVsShell: what a user waits for, `tinyfarm run` of one image.build
# (core + openssh, a new image: process start, hashing, host keys, fsync)
# against the pipeline, median of 11 alternating pairs, twice: cold (fresh
# state dir, empty tree cache: the first disk from these inputs) and warm
# (the unpacked trees linked from /dev/shm/tinyfarm-trees: the next disk).
set -euo pipefail
cd "$(dirname "$0")/.."
TINYFARM_BENCH=1 go test -count=1 -run '^(TestBuildVsShell|TestRunVsShell)$' -v ./bench/imagebench | grep -P '\t' | grep -v '^ok'
