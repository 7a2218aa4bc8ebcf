#!/usr/bin/env bash
# reroute.sh: how long a route change takes to apply with a large route
# table (VHOSTS, default 10,000), from the registry API call to the first
# response from the new backend (proxyserve reroute), against the same
# measured for git ref BASE in the same run, alternating. About 1 minute.
#
#   BASE=main bash bench/reroute.sh          # before/after
#   VHOSTS=1000 ROUNDS=5 bash bench/reroute.sh
#
# bench/proxy.sh reports the same figure (without BASE) in make bench.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5} # alternating runs of N changes per side
N=${N:-100}
VHOSTS=${VHOSTS:-10000}
BASE=${BASE:-}

W=$(mktemp -d /tmp/tinyfarm-bench-reroute.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

go build -o "$W/ps-now" ./bench/proxyserve
SIDES=(now)
if [ -n "$BASE" ]; then
  mkdir -p "$W/base"
  git archive "$BASE" | tar -x -C "$W/base"
  (cd "$W/base" && go build -o "$W/ps-base" ./bench/proxyserve)
  SIDES+=(base)
fi
BACKEND=127.0.0.1:18281 BACKEND2=127.0.0.1:18282
declare -A ADDR=([now]=127.0.0.1:18283 [base]=127.0.0.1:18284)
"$W/ps-now" backend -listen "$BACKEND" & PIDS+=($!)
"$W/ps-now" backend -listen "$BACKEND2" -name other & PIDS+=($!)
for s in "${SIDES[@]}"; do
  "$W/ps-$s" routes -dir "$W/r-$s" -backend "$BACKEND" -vhosts "$VHOSTS"
  "$W/ps-$s" serve -dir "$W/r-$s" -listen "${ADDR[$s]}" & PIDS+=($!)
done
for s in "${SIDES[@]}"; do
  for _ in $(seq 100); do
    curl -fsS -o /dev/null -H "Host: v1.bench.test" "http://${ADDR[$s]}/" 2>/dev/null && break
    sleep 0.05
  done
done

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
declare -A P50 P99 MAX API
echo "route change with $VHOSTS vhosts: $ROUNDS alternating runs of $N changes per side; ms per run: p50 p99 max api"
for r in $(seq "$ROUNDS"); do
  for s in "${SIDES[@]}"; do
    read -r a b c d < <("$W/ps-$s" reroute -dir "$W/r-$s" -listen "${ADDR[$s]}" -backend "$BACKEND" -backend2 "$BACKEND2" -n "$N")
    echo "  run $r ${s}${BASE:+ ($([ "$s" = base ] && echo "$BASE" || echo "worktree"))}: $a $b $c $d"
    P50[$s]+="$a " P99[$s]+="$b " MAX[$s]+="$c " API[$s]+="$d "
  done
done
for s in "${SIDES[@]}"; do
  # shellcheck disable=SC2086
  printf '%-6s median of runs: p50 %s ms, p99 %s ms, max %s ms, API call %s ms\n' "$s" \
    "$(median ${P50[$s]})" "$(median ${P99[$s]})" "$(median ${MAX[$s]})" "$(median ${API[$s]})"
done
