#!/usr/bin/env bash
# proxy.sh: the embedded proxy (stdlib/proxy) against nginx, same backend,
# same run, on loopback with wrk. Prints one table. About 2 minutes.
#
#   bash bench/proxy.sh            # DUR=5 seconds per wrk run by default
#   BASE=HEAD bash bench/proxy.sh  # also runs the embedded proxy of git ref
#                                  # BASE in the same run (before/after)
#
# The human table comes first; the TSV rows at the end are for bench/run.sh
# (metric, tinyfarm, anchor, anchor value, ratio).
#
# Needs: go, wrk, nginx (Debian nginx-light), setpriv; run as root (nginx
# runs as nobody from a temp prefix on 127.0.0.1 high ports).
# Where the time goes (profiles, syscalls and CPU per request, against
# nginx): bench/proxyserve/profile.sh, kept out of make bench.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3} # alternating runs per figure; each side reports its median
for tool in wrk nginx setpriv go; do
  command -v "$tool" >/dev/null || { echo "proxy.sh: $tool not found" >&2; exit 1; }
done

W=$(mktemp -d /tmp/tinyfarm-bench-proxy.XXXXXX)
chmod 0777 "$W"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

BACKEND=127.0.0.1:18181 EMB=127.0.0.1:18180 EMB1K=127.0.0.1:18183 NGX=127.0.0.1:18182 BACKEND2=127.0.0.1:18185
VHOSTS=${VHOSTS:-10000} # the large route table
go build -o "$W/proxyserve" ./bench/proxyserve
PS="$W/proxyserve"
BASE=${BASE:-} EMBBASE=127.0.0.1:18184
if [ -n "$BASE" ]; then
  mkdir -p "$W/base"
  git archive "$BASE" | tar -x -C "$W/base"
  (cd "$W/base" && go build -o "$W/proxyserve-base" ./bench/proxyserve)
fi

# Backends, route tables, embedded proxies (1 vhost and $VHOSTS vhosts).
"$PS" backend -listen "$BACKEND" & PIDS+=($!)
"$PS" backend -listen "$BACKEND2" -name other & PIDS+=($!)
"$PS" routes -dir "$W/s1" -backend "$BACKEND" -vhosts 1
"$PS" routes -dir "$W/s1k" -backend "$BACKEND" -vhosts "$VHOSTS"
"$PS" serve -dir "$W/s1" -listen "$EMB" -access-log "$W/emb-access.log" & PIDS+=($!)
"$PS" serve -dir "$W/s1k" -listen "$EMB1K" -access-log "$W/emb1k-access.log" & PIDS+=($!)
if [ -n "$BASE" ]; then
  "$W/proxyserve-base" serve -dir "$W/s1" -listen "$EMBBASE" -access-log "$W/embbase-access.log" & PIDS+=($!)
fi

# nginx, unprivileged, from a temp prefix.
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
    server_names_hash_max_size 65536;
    include tinyfarm.conf;
}
EOF
"$PS" nginx -dir "$W/s1" -prefix "$N" -listen "$NGX"
setpriv --reuid=nobody --regid=nogroup --clear-groups nginx -p "$N/" -c nginx.conf -g 'daemon off;' 2>"$W/nginx.err" & PIDS+=($!)

wait_http() { # addr host
  for _ in $(seq 100); do
    curl -fsS -o /dev/null -H "Host: $2" "http://$1/" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "proxy.sh: $1 ($2) not answering" >&2; cat "$W/nginx.err" >&2; exit 1
}
wait_http "$EMB" v0.bench.test; wait_http "$EMB1K" "v$((VHOSTS - 1)).bench.test"; wait_http "$NGX" v0.bench.test
[ -z "$BASE" ] || wait_http "$EMBBASE" v0.bench.test

cat > "$W/hosts.lua" <<'EOF'
-- Cycles the Host header over v0..v(NHOSTS-1).bench.test.
local n = tonumber(os.getenv("NHOSTS") or "1")
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/", { ["Host"] = "v" .. (i % n) .. ".bench.test" })
end
EOF

# run NAME ADDR CONNS [NHOSTS]: one wrk run; sets RPS P99 FAIL.
run() {
  local name=$1 addr=$2 c=$3 hosts=${4:-1} t=1
  [ "$c" -gt 1 ] && t=2
  NHOSTS=$hosts wrk -t"$t" -c"$c" -d"${DUR}s" --latency -s "$W/hosts.lua" "http://$addr/" > "$W/wrk.out" 2>&1
  RPS=$(awk '/^Requests\/sec:/ {print $2}' "$W/wrk.out")
  P99=$(awk '$1=="99%" {v=$2; u=v; sub(/[0-9.]+/,"",u); sub(/[a-z]+$/,"",v);
        if (u=="us") v/=1000; else if (u=="s") v*=1000; printf "%.3f", v}' "$W/wrk.out")
  local non2xx sock
  non2xx=$(awk -F': ' '/Non-2xx/ {print $2}' "$W/wrk.out"); non2xx=${non2xx:-0}
  sock=$(awk '/Socket errors/ {s=0; for (i=3;i<=NF;i++) {gsub(",","",$i); if ($i ~ /^[0-9]+$/) s+=$i}; print s}' "$W/wrk.out"); sock=${sock:-0}
  FAIL=$((non2xx + sock))
  printf '%-34s %5s %11s %10s %7s\n' "$name" "$c" "$RPS" "$P99" "$FAIL"
  if [ "$FAIL" != 0 ]; then grep -E 'Non-2xx|Socket errors' "$W/wrk.out" | sed 's/^/      wrk: /'; fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "proxy bench: wrk ${DUR}s per run, medians of $ROUNDS alternating runs, loopback, backend = tiny Go server, $(nproc) cores shared;"
echo "embedded proxy with GOGC=400 (as proxyserve sets it), access logs on for both (buffered 64 KiB, flushed each second), nginx worker_processes auto"
printf '%-34s %5s %11s %10s %7s\n' "run" "conns" "req/s" "p99 ms" "failed"
declare -A R L
# Warm every proxy up first (connection pools, heap size, nginx workers).
for a in "$EMB" "$NGX" ${BASE:+"$EMBBASE"}; do
  NHOSTS=1 wrk -t2 -c64 -d1s -s "$W/hosts.lua" "http://$a/" >/dev/null 2>&1
done
# median V...: the middle value (runs alternate between the sides, so a
# burst of load from elsewhere on the shared machine hits both alike).
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for c in 1 64; do
  declare -a er=() el=() nr=() nl=() br=() bl=()
  for _ in $(seq "$ROUNDS"); do
    run "embedded, 1 vhost" "$EMB" "$c"; er+=("$RPS"); el+=("$P99")
    run "nginx, 1 vhost" "$NGX" "$c"; nr+=("$RPS"); nl+=("$P99")
    if [ -n "$BASE" ]; then run "embedded@$BASE, 1 vhost" "$EMBBASE" "$c"; br+=("$RPS"); bl+=("$P99"); fi
  done
  R[emb$c]=$(median "${er[@]}") L[emb$c]=$(median "${el[@]}") R[ngx$c]=$(median "${nr[@]}") L[ngx$c]=$(median "${nl[@]}")
  if [ -n "$BASE" ]; then R[base$c]=$(median "${br[@]}") L[base$c]=$(median "${bl[@]}"); fi
done

# Reload under load: 20 add/remove cycles of another vhost during the run.
"$PS" churn -dir "$W/s1" -backend "$BACKEND" -n 20 & CH=$!
run "embedded, route churn (40 reloads)" "$EMB" 64; wait "$CH"; R[embchurn]=$FAIL
"$PS" churn -dir "$W/s1" -backend "$BACKEND" -n 20 -prefix "$N" -listen "$NGX" & CH=$!
run "nginx, route churn (40 reloads)" "$NGX" 64; wait "$CH"; R[ngxchurn]=$FAIL

# $VHOSTS vhosts, Host cycling over all of them, against 1 vhost the same way.
"$PS" nginx -dir "$W/s1k" -prefix "$N" -listen "$NGX" -reload
wait_http "$NGX" "v$((VHOSTS - 1)).bench.test"
# Alternate and keep each side's median: the machine is shared.
declare -a v1=() v1k=()
for _ in $(seq "$ROUNDS"); do
  run "embedded, 1 vhost (lua)" "$EMB" 64 1; v1+=("$RPS")
  run "embedded, $VHOSTS vhosts (lua)" "$EMB1K" 64 "$VHOSTS"; v1k+=("$RPS")
done
R[emb1v]=$(median "${v1[@]}") R[emb1k]=$(median "${v1k[@]}")
run "nginx, $VHOSTS vhosts (lua)" "$NGX" 64 "$VHOSTS"; R[ngx1k]=$RPS

# A route change with $VHOSTS routes: from the registry API call to the
# first response from the new backend (ROUNDS runs of 100 changes; the
# median of their medians and of their p99s).
declare -a c50=() c99=() cmax=() capi=()
for _ in $(seq "$ROUNDS"); do
  read -r a b c d < <("$PS" reroute -dir "$W/s1k" -listen "$EMB1K" -backend "$BACKEND" -backend2 "$BACKEND2" -n 100)
  c50+=("$a"); c99+=("$b"); cmax+=("$c"); capi+=("$d")
done
R[rr50]=$(median "${c50[@]}") R[rr99]=$(median "${c99[@]}") R[rrapi]=$(median "${capi[@]}")
printf '%-34s %s\n' "embedded, route change, $VHOSTS vhosts" "median ${R[rr50]} ms, p99 ${R[rr99]} ms (runs: ${c99[*]}), API call ${R[rrapi]} ms"

echo
echo "ratios (goal: rps >= 1.00, p99 <= 1.20)"
printf '  1 conn:   embedded/nginx rps %s   p99 %s\n' "$(ratio "${R[emb1]}" "${R[ngx1]}")" "$(ratio "${L[emb1]}" "${L[ngx1]}")"
printf '  64 conns: embedded/nginx rps %s   p99 %s\n' "$(ratio "${R[emb64]}" "${R[ngx64]}")" "$(ratio "${L[emb64]}" "${L[ngx64]}")"
printf '  %s vhosts / 1 vhost (embedded, median of %s each): rps %s (goal >= 0.95)\n' "$VHOSTS" "$ROUNDS" "$(ratio "${R[emb1k]}" "${R[emb1v]}")"
printf '  route change applied with %s vhosts: p99 %s ms (goal < 50)\n' "$VHOSTS" "${R[rr99]}"
printf '  failed requests during route churn: embedded %s, nginx %s (goal 0)\n' "${R[embchurn]}" "${R[ngxchurn]}"
if [ -n "$BASE" ]; then
  printf '  embedded now / embedded@%s: rps %s (1 conn), %s (64 conns)\n' "$BASE" "$(ratio "${R[emb1]}" "${R[base1]}")" "$(ratio "${R[emb64]}" "${R[base64]}")"
fi

# TSV rows for bench/run.sh: metric, tinyfarm, anchor, anchor value, ratio.
tsv() { printf '%s\t%s\t%s\t%s\t%s\n' "$@"; }
for c in 1 64; do
  tsv "proxy: req/s, $c conn(s) (goal ratio >= 1.00)" "${R[emb$c]}" "nginx" "${R[ngx$c]}" "$(ratio "${R[emb$c]}" "${R[ngx$c]}")"
  tsv "proxy: p99 ms, $c conn(s) (goal ratio <= 1.20)" "${L[emb$c]}" "nginx" "${L[ngx$c]}" "$(ratio "${L[emb$c]}" "${L[ngx$c]}")"
  if [ -n "$BASE" ]; then
    tsv "proxy: req/s, $c conn(s), vs before" "${R[emb$c]}" "embedded@$BASE" "${R[base$c]}" "$(ratio "${R[emb$c]}" "${R[base$c]}")"
    tsv "proxy: p99 ms, $c conn(s), vs before" "${L[emb$c]}" "embedded@$BASE" "${L[base$c]}" "$(ratio "${L[emb$c]}" "${L[base$c]}")"
  fi
done
tsv "proxy: req/s, $VHOSTS vhosts (goal ratio >= 0.95)" "${R[emb1k]}" "embedded, 1 vhost" "${R[emb1v]}" "$(ratio "${R[emb1k]}" "${R[emb1v]}")"
tsv "proxy: route change applied, $VHOSTS vhosts, p99 ms (goal < 50)" "${R[rr99]}" "-" "-" "-"
tsv "proxy: failed requests during route churn (goal 0)" "${R[embchurn]}" "nginx" "${R[ngxchurn]}" "-"
