#!/usr/bin/env bash
# cluster.sh: a three-host cluster (stdlib/cluster) on loopback, each host a
# `tinyfarm cluster serve` daemon with its embedded etcd member and proxy
# (127.0.0.1, .2, .3; ports 42379-42381, 48080). Prints the memory of each
# daemon (etcd member + daemon + proxy in one process) idle and after 300
# guest claims and 100 routes, then the Go benchmarks: route propagation
# (a vhost added until all three proxies serve it, p50/p99) and one claim.
# Then (as root, with the mini Tiny Core release) the drain bench:
# TestDrainBench in stdlib/cluster, three hosts as network namespaces with
# their sshd, N ns guests (TINYFARM_DRAIN_GUESTS, default 3) moved off one
# host by `tinyfarm cluster drain` and, as the anchor in the same run, by
# hand (`tinyfarm run` of g:migrate + cluster.route per guest).
# The human table goes to stderr; the TSV rows on stdout are for
# bench/run.sh (metric, tinyfarm, anchor, anchor value, ratio).
#
#   bash bench/cluster.sh          # about a minute; run as root or not
set -euo pipefail
cd "$(dirname "$0")/.."
W=$(mktemp -d /tmp/tinyfarm-bench-cluster.XXXXXX)
cleanup() {
  for h in 1 2 3; do
    f="$W/h$h/cluster/serve.pid"
    [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
  done
  rm -rf "$W"
}
trap cleanup EXIT
go build -o "$W/tinyfarm" ./cmd/tinyfarm
TF="$W/tinyfarm"
flags=(--client-port 42379 --peer-port 42380 --join-port 42381 --heartbeat 100 --election-timeout 1000)
tf() { local h=$1; shift; TINYFARM_HOME="$W/h$h" "$TF" "$@"; }
# The hosts' cluster keys go to a file of the bench, not ~/.ssh.
keys() { echo --authorized-keys "$W/h$1/authorized_keys"; }
tok=$(tf 1 cluster init --name h1 --advertise 127.0.0.1 --proxy 127.0.0.1:48080 $(keys 1) "${flags[@]}" | grep -o 'tfjoin1\.[A-Za-z0-9_-]*')
tf 2 cluster join "$tok" --name h2 --advertise 127.0.0.2 --proxy 127.0.0.2:48080 $(keys 2) "${flags[@]}" >/dev/null
tok=$(tf 1 cluster token)
tf 3 cluster join "$tok" --name h3 --advertise 127.0.0.3 --proxy 127.0.0.3:48080 $(keys 3) "${flags[@]}" >/dev/null

mem() {
  for h in 1 2 3; do
    pid=$(cat "$W/h$h/cluster/serve.pid")
    rss=$(awk '/^Rss:/ {print $2}' "/proc/$pid/smaps_rollup")
    anon=$(awk '/^Anonymous:/ {print $2}' "/proc/$pid/smaps_rollup")
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
    awk -v h="h$h" -v s="$1" -v r="$rss" -v a="$anon" -v p="$hwm" 'BEGIN {printf "%-6s %-28s %8.1f %8.1f %8.1f\n", h, s, r/1024, a/1024, p/1024}' >&2
    echo "$rss" >>"$W/rss-$2"
  done
}
maxmib() { sort -n "$W/rss-$1" | tail -1 | awk '{printf "%.1f", $1/1024}'; }
sleep 3
echo "host   state                         RSS MiB  anon MiB  peak MiB" >&2
mem "idle, 3 members" idle
cat > "$W/load.lua" <<'LUA'
local cluster = require("cluster")
local items = {}
for i = 1, 300 do items[i] = i end
parallel(items, function(i)
  local h = "h" .. (i % 3 + 1)
  local g = cluster.claim{ name = "g" .. i, host = h, mem = "16M" }
  if i <= 100 then
    cluster.route{ vhost = "g" .. i .. ".bench.test", host = h, addr = g.ip:match("^[^/]+") .. ":80", guest = g.name }
  end
end, { forks = 8 })
LUA
start=$(date +%s.%N)
tf 2 run "$W/load.lua" >/dev/null 2>&1
end=$(date +%s.%N)
sleep 3
mem "300 claims, 100 routes" loaded
awk -v s="$start" -v e="$end" 'BEGIN {printf "300 claims + 100 routes from one playbook (8 forks): %.2f s\n", e-s}' >&2
go test -count=1 -run '^$' -bench 'RoutePropagation|Claim' -benchtime 200x ./stdlib/cluster >"$W/bench.txt"
grep -E '^Benchmark' "$W/bench.txt" >&2
p50=$(awk '/^BenchmarkRoutePropagation/ {for (i=1;i<NF;i++) if ($(i+1)=="p50-ms") print $i}' "$W/bench.txt")
p99=$(awk '/^BenchmarkRoutePropagation/ {for (i=1;i<NF;i++) if ($(i+1)=="p99-ms") print $i}' "$W/bench.txt")
claim=$(awk '/^BenchmarkClaim/ {printf "%.2f", $3/1e6}' "$W/bench.txt")
idle=$(maxmib idle) loaded=$(maxmib loaded)
awk -v m="$idle" 'BEGIN {printf "cluster daemon RSS idle, MiB (etcd member+proxy)\t%s\t1 GiB host\t1024\t%.3f\n", m, m/1024}'
awk -v m="$loaded" 'BEGIN {printf "cluster daemon RSS, 300 claims+100 routes, MiB\t%s\t1 GiB host\t1024\t%.3f\n", m, m/1024}'
printf 'route served by all 3 proxies, p50 ms\t%s\t-\t-\t-\n' "$p50"
printf 'route served by all 3 proxies, p99 ms\t%s\t-\t-\t-\n' "$p99"
printf 'guest claim (name+IP+uids, 1 txn), ms\t%s\t-\t-\t-\n' "$claim"
if [ "$(id -u)" = 0 ]; then
  : "${TINYFARM_MINICORE:=$PWD/testdata/minicore/out}"
  export TINYFARM_MINICORE
  TINYFARM_BENCH=1 go test -count=1 -run '^TestDrainBench$' -v ./stdlib/cluster >"$W/drain.txt" 2>&1 || { cat "$W/drain.txt" >&2; exit 1; }
  grep -E 'down |drained|failed requests' "$W/drain.txt" >&2 || true
  # A skipped bench (no mini Tiny Core release, no dropbear) says why.
  grep -P '^cluster drain.*\t' "$W/drain.txt" || { grep -iE 'skip' "$W/drain.txt" >&2; exit 1; }
else
  echo "drain bench skipped: it needs root (network namespaces, ns guests)" >&2
fi
