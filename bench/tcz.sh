#!/usr/bin/env bash
# bench/tcz.sh: tcz resolve + fetch of 20 extensions vs sequential wget
# (see bench/tczbench). Prints bench/run.sh TSV rows.
set -euo pipefail
cd "$(dirname "$0")/.."
TINYFARM_BENCH=1 go test -count=1 -run '^TestFetchVsWget$' -v ./bench/tczbench | grep -P '\t' | grep -v '^ok'
