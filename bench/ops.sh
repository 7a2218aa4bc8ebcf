#!/usr/bin/env bash
# bench/ops.sh: guest operations (root): clone vs cp, qemu checkpoint and
# restore vs cold boot. Prints bench/run.sh TSV rows.
set -euo pipefail
cd "$(dirname "$0")/.."
TINYFARM_BENCH=1 go test -count=1 -timeout 10m -v ./bench/opsbench | grep -P '\t' | grep -v -E '^(ok|---|===)'
