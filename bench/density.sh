#!/usr/bin/env bash
# bench/density.sh: ns guests per GiB (root). tinyfarm, its proxy daemon,
# the guests' monitors and the guests all run in one memory cgroup of 1 GiB
# (cgroup v1 memory.limit_in_bytes here, v2 memory.max); bench/density.lua
# starts guests at 16M each, each running init + dropbear + nginx serving
# its own page, until the next would not fit (what the cgroup holds that
# reclaim cannot free, anonymous and kernel memory, plus one more guest's
# share of it, plus 48 MiB for the page cache the guests run from, would
# pass the limit), one does not start, an OOM kill happens in the cgroup or
# MAX is reached. Then every guest's page is fetched through the proxy,
# and what each part holds is read from the cgroups and /proc. Run once with
# a copy of the disk per guest (as before issue #21) and once with one
# shared base under a layer per guest (colinux.guest{base}).
#
#   bash bench/density.sh               # both modes; TSV rows for bench/run.sh
#   MODES=1 MAX=100 bash bench/density.sh   # shared base only, at most 100 guests
#
# A human report of each run goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "density.sh: needs root (namespace guests)" >&2; exit 1; }
MINICORE=${TINYFARM_MINICORE:-testdata/minicore/out}
[ -d "$MINICORE/mirror" ] || { echo "density.sh: no mini release at $MINICORE (make minicore)" >&2; exit 1; }
MINICORE=$(cd "$MINICORE" && pwd)
LIMIT=${LIMIT:-1073741824}
MAX=${MAX:-400}
MEM=${MEM:-16M}
MODES=${MODES:-"0 1"}
LISTEN=127.0.0.1:${PORT:-18931}

W=$(mktemp -d /tmp/tinyfarm-density.XXXXXX)
BIN=$W/tinyfarm
# As make build does: tinyfarm and, next to it, the tinyfarm-guest its
# guests' monitors run from.
make -s build BINDIR="$W" >/dev/null

CG=""
cleanup_run() {
  local state=$1
  TINYFARM_HOME=$state "$BIN" repl >/dev/null 2>&1 <<'EOF' || true
for _, g in ipairs(colinux.list()) do colinux.get(g.name):destroy{disk = true} end
proxy.daemon{stop = true}
EOF
  ip link del tfdens0 2>/dev/null || true
  for t in iptables ip6tables; do
    $t -w -D INPUT -i tfdens0 -j TF-tfdens0 2>/dev/null || true
    $t -w -F TF-tfdens0 2>/dev/null || true
    $t -w -X TF-tfdens0 2>/dev/null || true
  done
  if [ -n "$CG" ]; then
    for i in $(seq 50); do rmdir "$CG" 2>/dev/null && break; sleep 0.1; done
    [ -n "${CG_PARENT:-}" ] && rmdir "$CG_PARENT" 2>/dev/null || true
    CG=""
  fi
}
trap 'cleanup_run "${STATE:-/nonexistent}"; rm -rf "$W"' EXIT

# mkcg makes the bench's 1 GiB cgroup: CG (where tinyfarm runs), OOM (its
# oom_kill counter file), STAT (its memory.stat), USAGE.
mkcg() {
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    # v2: guests go beside tinyfarm's own cgroup (a cgroup with processes
    # cannot enable controllers for children), so the limit is on a parent
    # holding both.
    local own; own=$(awk -F: '$1=="0"{print $3}' /proc/self/cgroup)
    CG_PARENT=/sys/fs/cgroup${own%/*}/tfdensity-$$
    mkdir -p "$CG_PARENT"
    echo "$LIMIT" >"$CG_PARENT/memory.max"
    echo +memory >"$CG_PARENT/cgroup.subtree_control" 2>/dev/null || true
    CG=$CG_PARENT/run; mkdir -p "$CG"
    OOM=$CG_PARENT/memory.events; STAT=$CG_PARENT/memory.stat; USAGE=$CG_PARENT/memory.current
  else
    local own; own=$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup)
    CG=/sys/fs/cgroup/memory${own%/}/tfdensity-$$
    mkdir -p "$CG"
    echo "$LIMIT" >"$CG/memory.limit_in_bytes"
    OOM=$CG/memory.oom_control; STAT=$CG/memory.stat; USAGE=$CG/memory.usage_in_bytes
    KMEM=$CG/memory.kmem.usage_in_bytes
  fi
}

# smaps PID FIELD...: the sum of those smaps_rollup fields, in KiB.
smaps() {
  local pid=$1; shift
  awk -v f="$*" 'BEGIN{n=split(f,a," "); for(i=1;i<=n;i++) want[a[i]":"]=1} want[$1]{s+=$2} END{print s+0}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0
}
stat_of() { awk -v k="$2" '$1==k{print $2}' "$1"; }
mib() { awk -v b="$1" -v n="${2:-1}" 'BEGIN{printf "%.1f", b/n/1048576}'; }

declare -A RESULT
for shared in $MODES; do
  STATE=$W/state-$shared; mkdir -p "$STATE" "$W/disks-$shared"
  mkcg
  echo "density.sh: shared=$shared, cgroup $CG ($LIMIT bytes), guests at $MEM, max $MAX" >&2
  t0=$(date +%s)
  out=$(TINYFARM_HOME=$STATE sh -c 'echo $$ >"$1/cgroup.procs"; shift; exec "$@"' sh "$CG" \
    "$BIN" run bench/density.lua -e shared="$shared" -e max="$MAX" -e mem="$MEM" -e oom="$OOM" \
    -e stat="$STAT" -e kmem="${KMEM:-}" -e limit="$LIMIT" \
    -e dir="$W/disks-$shared" -e mirror="file://$MINICORE/mirror" -e listen="$LISTEN" 2>&1) || true
  t1=$(date +%s)
  line=$(grep -o 'DENSITY started.*' <<<"$out" || true)
  [ -n "$line" ] || { echo "$out" | tail -20 >&2; echo "density.sh: the playbook ended early (killed?)" >&2; }
  # Every guest that runs must serve its own page through the proxy.
  n=0; serving=0; failed=""; guest_anon=0; guest_cache=0; mon_uss=0; mon_pss=0
  for rt in "$STATE"/guests/*/run/runtime.json; do
    [ -f "$rt" ] || continue
    name=$(basename "$(dirname "$(dirname "$rt")")")
    n=$((n + 1))
    if curl -s -m 5 -H "Host: $name.density.test" "http://$LISTEN/" | grep -q "page of $name\$"; then
      serving=$((serving + 1))
    elif [ -z "${failed:-}" ]; then
      failed=1
      echo "  $name does not serve its page: $(curl -s -m 5 -H "Host: $name.density.test" "http://$LISTEN/" 2>&1 | head -c 300)" >&2
    fi
    mem=$(grep -o '"memory":"[^"]*"' "$rt" | cut -d'"' -f4)
    [ -n "$mem" ] || mem=$(grep -o '"unified":"[^"]*"' "$rt" | cut -d'"' -f4)
    if [ -f "$mem/memory.stat" ]; then
      a=$(stat_of "$mem/memory.stat" rss); [ -n "$a" ] || a=$(stat_of "$mem/memory.stat" anon)
      c=$(stat_of "$mem/memory.stat" cache); [ -n "$c" ] || c=$(stat_of "$mem/memory.stat" file)
      guest_anon=$((guest_anon + a)); guest_cache=$((guest_cache + c))
    fi
    mpid=$(grep -o '"monitor_pid":[0-9]*' "$rt" | cut -d: -f2)
    mon_uss=$((mon_uss + $(smaps "$mpid" Private_Clean Private_Dirty)))
    mon_pss=$((mon_pss + $(smaps "$mpid" Pss)))
  done
  usage=$(cat "$USAGE")
  if [ -f "$CG/memory.limit_in_bytes" ]; then
    tot_anon=$(stat_of "$STAT" total_rss); tot_cache=$(stat_of "$STAT" total_cache); tot_shmem=$(stat_of "$STAT" total_shmem)
    kmem=$(cat "$CG/memory.kmem.usage_in_bytes" 2>/dev/null || echo 0)
  else
    tot_anon=$(stat_of "$STAT" anon); tot_cache=$(stat_of "$STAT" file); tot_shmem=$(stat_of "$STAT" shmem)
    kmem=$(( $(stat_of "$STAT" kernel) + 0 ))
  fi
  ppid=$(cat "$STATE/proxy/serve.pid" 2>/dev/null || echo 0)
  proxy_pss=$(smaps "$ppid" Pss)
  base_cache=$(fincore -b -n -o RES "$W/disks-$shared"/*.img 2>/dev/null | awk '{s+=$1} END{print s+0}')
  [ "$n" -gt 0 ] || n=1
  {
    echo "  ${line:-DENSITY (no result line)} in $((t1 - t0)) s"
    echo "  guests running $n, serving their page through the proxy $serving"
    echo "  cgroup: usage $(mib "$usage") MiB = anon $(mib "$tot_anon") + page cache $(mib "$tot_cache") (shmem $(mib "$tot_shmem")); kernel memory $(mib "$kmem") MiB"
    echo "  per guest: its cgroup anon $(mib "$guest_anon" "$n") MiB + page cache charged to it $(mib "$guest_cache" "$n") MiB; monitor USS $(mib $((mon_uss * 1024)) "$n") MiB (PSS $(mib $((mon_pss * 1024)) "$n")); kernel $(mib "$kmem" "$n") MiB"
    echo "  proxy daemon PSS $(mib $((proxy_pss * 1024))) MiB"
    echo "  outside the cgroup: the disk image files in the host's page cache (the loop devices' reads) $(mib "$base_cache") MiB"
  } >&2
  # What colinux.plan{} answers for this cgroup, given what a guest's own
  # processes were measured to hold (its footprint) and its built-in
  # per-guest overhead (monitor, kernel objects).
  foot=$((guest_anon / n))
  plan=$(echo "print(colinux.plan{mem = $LIMIT, granularity = \"$MEM\", footprint = $foot, driver = \"ns\"}.guests)" |
    TINYFARM_HOME=$STATE "$BIN" repl 2>/dev/null | tail -1)
  echo "  colinux.plan{mem = $LIMIT, granularity = \"$MEM\", footprint = $foot} says $plan guests" >&2
  RESULT[$shared]=$serving
  RESULT[$shared.plan]=$plan
  RESULT[$shared.outside]=$(mib "$base_cache")
  RESULT[$shared.perguest]=$(mib $(( tot_anon + kmem + tot_shmem )) "$n")
  cleanup_run "$STATE"
done

per=$(awk -v l="$LIMIT" 'BEGIN{print 1073741824/l}')
if [ -n "${RESULT[1]:-}" ]; then
  shared_g=$(awk -v s="${RESULT[1]}" -v p="$per" 'BEGIN{printf "%d", s*p}')
  copies_g=$(awk -v s="${RESULT[0]:-0}" -v p="$per" 'BEGIN{printf "%d", s*p}')
  ratio=-; [ "${RESULT[0]:-0}" -gt 0 ] && ratio=$(awk -v a="$shared_g" -v b="$copies_g" 'BEGIN{printf "%.1fx", a/b}')
  printf 'ns density: guests per GiB at %s, each init+dropbear+nginx serving through the proxy, shared base (goal >=60, stretch 200)\t%s\t%s\t%s\t%s\n' "$MEM" "$shared_g" "a disk copy per guest" "$copies_g" "$ratio"
  printf 'ns density: unreclaimable memory per guest, shared base (MiB: anon + kernel + shmem, cgroup / guests)\t%s\t%s\t%s\t-\n' "${RESULT[1.perguest]}" "a disk copy per guest" "${RESULT[0.perguest]:--}"
  printf 'ns density: disk images in the host page cache, outside the cgroup (MiB, loop reads), shared base\t%s\t%s\t%s\t-\n' "${RESULT[1.outside]}" "a disk copy per guest" "${RESULT[0.outside]:--}"
  printf 'ns density: colinux.plan{} guests for the same cgroup, shared base\t%s\t%s\t%s\t%s\n' "${RESULT[1.plan]}" "measured" "${RESULT[1]}" "$(awk -v a="${RESULT[1.plan]:-0}" -v b="${RESULT[1]}" 'BEGIN{printf "%.2fx", a/b}')"
fi
