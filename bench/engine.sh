#!/usr/bin/env bash
# bench/engine.sh: the playbook engine against ansible-playbook, same run.
#  - a no-op playbook, wall time including process start (goal <= 30 ms)
#  - 1,000 no-op tasks (goal <= 100 ms)
#  - the same 10-task no-op play in tinyfarm and in ansible-playbook
#    (connection local, no fact gathering), and the ratio
# Prints TSV rows: metric, tinyfarm value, anchor name, anchor value, ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/tinyfarm}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/tinyfarm
command -v hyperfine >/dev/null || { echo "bench/engine.sh: hyperfine missing (TINYFARM_BENCH_DEPS=1 scripts/deps.sh)" >&2; exit 1; }
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
export TINYFARM_HOME=$W/state

echo '-- nothing' > "$W/noop.lua"
{ echo 'for i = 1, 1000 do task("t" .. i, function() end) end'; } > "$W/tasks1000.lua"
{ echo 'for i = 1, 10 do task("t" .. i, function() end) end'; } > "$W/tasks10.lua"
cat > "$W/play10.yml" <<'YML'
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
YML
for i in $(seq 1 10); do printf '    - name: t%d\n      ansible.builtin.meta: noop\n' "$i" >> "$W/play10.yml"; done

hf() { # hyperfine mean in ms of one command
  hyperfine -N --warmup "$1" --runs "$2" --export-json "$W/h.json" "$3" >/dev/null 2>&1
  python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["results"][0]["mean"]*1000))' "$W/h.json"
}
noop=$(hf 3 30 "$BIN run $W/noop.lua")
t1000=$(hf 2 10 "$BIN run $W/tasks1000.lua")
t10=$(hf 3 20 "$BIN run $W/tasks10.lua")
if command -v ansible-playbook >/dev/null; then
  ans=$(ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0 hf 1 5 "ansible-playbook -i localhost, $W/play10.yml")
  ratio=$(python3 -c "print('%.1fx faster' % ($ans/$t10))")
else
  ans="n/a"; ratio="ansible-playbook missing"
fi
printf 'engine: no-op playbook (ms, goal <=30)\t%s\t-\t-\t-\n' "$noop"
printf 'engine: 1000 no-op tasks (ms, goal <=100)\t%s\t-\t-\t-\n' "$t1000"
printf 'engine: 10-task no-op play (ms)\t%s\tansible-playbook 2.14\t%s\t%s\n' "$t10" "$ans" "$ratio"
