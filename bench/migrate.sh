#!/usr/bin/env bash
# bench/migrate.sh: g:migrate of a stopped guest's 256M disk (64M of it
# random data) to a second "host" (a network namespace with its own
# dropbear and tinyfarm) vs scp -O of the same disk over the same
# dropbear (root); and g:migrate{live=true} of a running qemu guest
# (downtime and total time) vs offline migration of the same guest; and
# the downtime of an offline move of a running ns guest (what each site
# sees in `tinyfarm cluster drain`) vs that guest's start to ready.
# Prints bench/run.sh TSV rows.
set -euo pipefail
cd "$(dirname "$0")/.."
TINYFARM_BENCH=1 go test -count=1 -timeout 10m -v -run 'TestMigrateThroughput|TestMigrateQemuLive|TestMigrateNsDowntime' ./stdlib/colinux/ops | grep -P '\t' | grep -v -E '^(ok|---|===)'
