#!/usr/bin/env bash
# bench/compare/ns-move.sh [REF]: the downtime of an offline move of a
# running ns guest to another host (TestMigrateNsDowntime: what each site
# sees in `tinyfarm cluster drain`), this tree against REF (default
# 24651bc, the tree before the move's downtime was cut), side by side in
# one run: ROUNDS (default 4) alternating runs of TRIALS (default 3) moves
# in each tree. Prints the median downtime of each tree, their ratio, the
# median time a move leaves the guest defined on both hosts, and the
# median of each step of the last run here. Needs root and the mini
# release (TINYFARM_MINICORE). Not part of bench/run.sh (it builds the
# older tree); bench/migrate.sh has this tree's figure.
set -euo pipefail
cd "$(dirname "$0")/../.."
ref=${1:-24651bc}
rounds=${ROUNDS:-4}
trials=${TRIALS:-3}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir "$W/old"
git archive "$ref" | tar -x -C "$W/old"
# The bench test itself, in both trees (it reads steps only where they are).
cp stdlib/colinux/ops/migrate_downtime_test.go "$W/old/stdlib/colinux/ops/"
run() {
  (cd "$1" && TINYFARM_BENCH=1 TINYFARM_TRIALS=$trials go test -count=1 -p 1 -timeout 10m \
    -run '^TestMigrateNsDowntime$' -v ./stdlib/colinux/ops/) >"$2" 2>&1 || { cat "$2" >&2; exit 1; }
}
for r in $(seq "$rounds"); do
  run "$W/old" "$W/old.$r"
  run . "$W/new.$r"
done
# The median of the "down N ms" (with col=11: "start here N ms") of every move.
med() {
  cat "$@" | grep -o 'move [0-9]*: down [0-9]* ms, total [0-9]* ms, start here [0-9]* ms' |
    awk -v c="${col:-4}" '{print $c}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)], NR}'
}
read -r old n_old < <(med "$W"/old.*)
read -r new n_new < <(med "$W"/new.*)
read -r start _ < <(col=11 med "$W"/new.*)
printf 'ns guest move downtime (ms), %s moves each\t%s\t%s\t%s\t%.2f\n' "$n_new" "$new" "$ref" "$old" "$(echo "$new / $old" | bc -l)"
printf 'ns guest start to ready here (ms)\t%s\n' "$start"
# The median time a move left the guest defined here and there.
both() { cat "$@" | grep -o 'here and there [0-9.]* ms' | awk '{print $4}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf 'ns guest move: defined here and there (ms)\t%s\t%s\t%s\n' "$(both "$W"/new.*)" "$ref" "$(both "$W"/old.*)"
echo "steps of the last run here (medians):"
grep 'step ' "$W/new.$rounds" | sed 's/^ *migrate_downtime_test.go:[0-9]*: //'
