#!/usr/bin/env bash
# bench/guests.sh: namespace guests (root). Prints bench/run.sh TSV rows.
set -euo pipefail
cd "$(dirname "$0")/.."
TINYFARM_BENCH=1 go test -count=1 -timeout 20m -skip "^TestWarmCommand$" -v ./bench/guestbench | grep -P '\t' | grep -v -E '^(ok|---|===)'
