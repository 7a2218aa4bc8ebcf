#!/usr/bin/env bash
# profile.sh: where the embedded proxy's time goes under wrk (the load of
# bench/proxy.sh): a CPU and an allocation profile of a 64-connection run,
# and syscalls per request (strace -c) for the proxy and, as the anchor,
# the nginx workers. Prints the profiles' top entries and the counts.
#
#   bash bench/proxyserve/profile.sh              # DUR=10 seconds of profiled load
#   OUT=/tmp/prof bash bench/proxyserve/profile.sh # keep the profiles for go tool pprof
#   ONLY=cpu BASE=HEAD bash bench/proxyserve/profile.sh # CPU per request only, and
#                                  # also for the proxy of git ref BASE
#
# Needs: go, wrk, strace, nginx, setpriv; root (as bench/proxy.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-5}
ONLY=${ONLY:-} # "cpu": only the CPU-per-request figure
for tool in wrk nginx setpriv go strace; do
  command -v "$tool" >/dev/null || { echo "profile.sh: $tool not found" >&2; exit 1; }
done
W=$(mktemp -d /tmp/tinyfarm-bench-proxyprof.XXXXXX)
chmod 0777 "$W"
OUT=${OUT:-$W}
mkdir -p "$OUT"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
[ -z "${DEBUG:-}" ] || set -x

BACKEND=127.0.0.1:18191 EMB=127.0.0.1:18190 NGX=127.0.0.1:18192
go build -o "$W/proxyserve" ./bench/proxyserve
PS="$W/proxyserve"
BASE=${BASE:-} EMBBASE=127.0.0.1:18194
if [ -n "$BASE" ]; then
  mkdir -p "$W/base"
  git archive "$BASE" | tar -x -C "$W/base"
  (cd "$W/base" && go build -o "$W/proxyserve-base" ./bench/proxyserve)
fi
"$PS" backend -listen "$BACKEND" & BEP=$!; PIDS+=($BEP)
"$PS" routes -dir "$W/s1" -backend "$BACKEND" -vhosts 1

N="$W/nginx"; mkdir -p "$N/logs" "$N/tmp"; chmod -R 0777 "$N"
cat > "$N/nginx.conf" <<EOF
worker_processes auto;
pid nginx.pid;
error_log stderr;
events { worker_connections 4096; }
http {
    # Buffered as the embedded proxy's log is (64 KiB, written at least
    # once a second): a write per request would handicap nginx.
    access_log logs/access.log combined buffer=64k flush=1s;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    include tinyfarm.conf;
}
EOF
"$PS" nginx -dir "$W/s1" -prefix "$N" -listen "$NGX"
setpriv --reuid=nobody --regid=nogroup --clear-groups nginx -p "$N/" -c nginx.conf -g 'daemon off;' 2>"$W/nginx.err" & PIDS+=($!)

wait_http() {
  for _ in $(seq 100); do
    curl -fsS -o /dev/null -H "Host: v0.bench.test" "http://$1/" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "profile.sh: $1 not answering" >&2; exit 1
}
load() { # addr conns secs: prints requests served
  local t=2; [ "$2" -gt 1 ] || t=1
  wrk -t"$t" -c"$2" -d"$3s" -H "Host: v0.bench.test" "http://$1/" | awk '/requests in/ {print $1} /Requests\/sec/ {print "req/s", $2 > "/dev/stderr"}'
}

if [ -z "$ONLY" ]; then
# 1. Profiles of a run at 64 connections.
"$PS" serve -dir "$W/s1" -listen "$EMB" -access-log "$W/emb-access.log" \
  -cpuprofile "$OUT/cpu.pprof" -memprofile "$OUT/allocs.pprof" & SP=$!
wait_http "$EMB"; wait_http "$NGX"
load "$EMB" 64 1 >/dev/null 2>&1 # warm up
echo "== embedded, 64 conns, ${DUR}s, profiled"
load "$EMB" 64 "$DUR" >/dev/null
kill "$SP"; wait "$SP" || true
fi

"$PS" serve -dir "$W/s1" -listen "$EMB" -access-log "$W/emb-access.log" & SP=$!; PIDS+=($SP)
wait_http "$EMB"; wait_http "$NGX"
if [ -n "$BASE" ]; then
  "$W/proxyserve-base" serve -dir "$W/s1" -listen "$EMBBASE" -access-log "$W/base-access.log" & BP=$!; PIDS+=($BP)
  wait_http "$EMBBASE"
fi

if [ -z "$ONLY" ]; then
# 2. Syscalls per request: strace -c on the whole proxy process (all
# threads), and on the nginx workers, each while wrk drives it.
sysc() { # name pids addr conns
  local pargs=(); for p in $2; do pargs+=(-p "$p"); done
  timeout -s INT 5 strace -c -f "${pargs[@]}" -o "$W/strace.$1" & local st=$!
  sleep 0.5
  local n; n=$(load "$3" "$4" 3 2>/dev/null || true)
  wait "$st" || true
  if [ -z "$n" ] || [ ! -s "$W/strace.$1" ]; then echo "$1: no count (wrk or strace failed)"; return 0; fi
  awk -v n="$n" -v name="$1" '/total/ {printf "%-28s %8d requests  %6.1f syscalls/request\n", name, n, $(NF-2)/n}' "$W/strace.$1"
  sort -k4 -n -r "$W/strace.$1" | awk -v n="$n" 'NR>1 && $NF!="total" && $4+0>0 {printf "    %-16s %6.2f/request\n", $NF, $4/n}' | head -8
}
echo "== syscalls per request (strace -c; counts, not time, are what to read)"
for c in 1 64; do
  sysc "embedded, $c conns" "$SP" "$EMB" "$c"
  sysc "nginx workers, $c conns" "$(pgrep -P "$(cat "$N/nginx.pid")" | tr '\n' ' ')" "$NGX" "$c"
done
fi

# 3. CPU time per request (user+system of the proxy's process, or of all
# nginx workers, from /proc/PID/stat): what the shared machine disturbs
# least. Alternating 3-second runs, medians.
cputicks() { local t=0; for p in $1; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"; }
# The backend's figure during the embedded proxy's runs is the floor of
# Go's net/http server answering "ok" itself.
cpureq() { # pids addr conns: prints microseconds of CPU per request, then the backend's
  local a b n x y; a=$(cputicks "$1"); x=$(cputicks "$BEP"); n=$(load "$2" "$3" 3 2>/dev/null); b=$(cputicks "$1"); y=$(cputicks "$BEP")
  awk -v t=$((b - a)) -v u=$((y - x)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f %.1f\n", t / hz * 1e6 / n, u / hz * 1e6 / n}'
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "== CPU per request (us, user+system, median of $ROUNDS alternating 3s runs)"
NGXW=$(pgrep -P "$(cat "$N/nginx.pid")" | tr '\n' ' ')
for c in 1 64; do
  e=() g=() b=() k=()
  for _ in $(seq "$ROUNDS"); do
    read -r v w < <(cpureq "$SP" "$EMB" "$c"); e+=("$v"); k+=("$w")
    read -r v w < <(cpureq "$NGXW" "$NGX" "$c"); g+=("$v")
    if [ -n "$BASE" ]; then read -r v w < <(cpureq "$BP" "$EMBBASE" "$c"); b+=("$v"); fi
  done
  printf '%5s conns: embedded %s us, nginx %s us (runs: %s / %s); the Go backend itself %s us\n' "$c" "$(median "${e[@]}")" "$(median "${g[@]}")" "${e[*]}" "${g[*]}" "$(median "${k[@]}")"
  [ -z "$BASE" ] || printf '%5s conns: embedded@%s %s us (runs: %s)\n' "$c" "$BASE" "$(median "${b[@]}")" "${b[*]}"
done
[ -z "$ONLY" ] || exit 0

echo "== CPU profile, top 25 (cum)"
go tool pprof -top -cum -nodecount=25 "$W/proxyserve" "$OUT/cpu.pprof" 2>/dev/null | tail -n +6
echo "== CPU profile, top 25 (flat)"
go tool pprof -top -nodecount=25 "$W/proxyserve" "$OUT/cpu.pprof" 2>/dev/null | tail -n +6
echo "== allocations (alloc_space), top 20"
go tool pprof -top -sample_index=alloc_space -nodecount=20 "$W/proxyserve" "$OUT/allocs.pprof" 2>/dev/null | tail -n +6
