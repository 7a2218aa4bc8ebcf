#!/usr/bin/env bash
# remote.sh: placing and starting 30 ns guests across three hosts (network
# namespaces, each with its own dropbear, state dir and cluster daemon with
# its etcd member) from one controller playbook (cluster.place,
# cluster.claim, cluster.guest, parallel: `tinyfarm machine` over SSH on
# each host), against the same 30 guests started host by host with
# `ssh HOST tinyfarm run host.lua` in a loop. Rounds alternate; medians.
# Prints the TSV row for bench/run.sh (metric, tinyfarm, anchor, anchor
# value, ratio); the rounds go to stderr.
#
#   sudo bash bench/remote.sh            # 3 rounds, a few minutes; ROUNDS=5 for more
#   sudo bash bench/remote.sh ssh        # g:ssh() on a remote guest vs ssh -J, 5 rounds, ~30 s
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "remote.sh: needs root (network namespaces, ns guests)" >&2
  exit 0
fi
export TINYFARM_MINICORE=${TINYFARM_MINICORE:-$PWD/testdata/minicore/out}
if [ "${1:-}" = ssh ]; then
  # `bash bench/remote.sh ssh`: commands in a guest of another host through
  # g:ssh() (jumped through its host) against OpenSSH's ssh -J.
  out=$(TF_BENCH_REMOTE_SSH=${ROUNDS:-5} go test -count=1 -p 1 -run '^TestBenchRemoteSSH$' -v -timeout 10m ./stdlib/cluster/ 2>&1) || {
    echo "$out" >&2
    exit 1
  }
  echo "$out" | grep -E 'round [0-9]+:' >&2 || true
  echo "$out" | grep -P '^cluster: \d+ command'
  exit 0
fi
out=$(TF_BENCH_REMOTE=${ROUNDS:-3} go test -count=1 -p 1 -run '^TestBenchRemoteThirty$' -v -timeout 30m ./stdlib/cluster/ 2>&1) || {
  echo "$out" >&2
  exit 1
}
echo "$out" | grep -E 'round [0-9]+:' >&2 || true
echo "$out" | grep -P '^cluster: 30 ns guests'
