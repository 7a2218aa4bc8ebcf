#!/usr/bin/env bash
# bench/run.sh runs every bench/*.sh and prints one table. Each script
# prints TSV rows: metric, value, anchor, anchor value, ratio.
set -uo pipefail
cd "$(dirname "$0")/.."
rows=$(mktemp); trap 'rm -f "$rows"' EXIT
for s in bench/*.sh; do
  [ "$(basename "$s")" = run.sh ] && continue
  echo "running $s ..." >&2
  if ! bash "$s" >>"$rows"; then
    printf '%s\tFAILED\t-\t-\t-\n' "$s" >>"$rows"
  fi
done
{ printf 'metric\ttinyfarm\tanchor\tanchor value\tratio\n'; grep -P '\t' "$rows"; } | column -t -s $'\t'
