#!/usr/bin/env bash
# bench/ssh.sh - SSH to what a guest runs: the dropbear of an ns guest of the mini release,
# in the default configuration (user namespace, hardened, farm bridge). Root; needs
# TINYFARM_MINICORE (the built mini release) and, for the anchors, the OpenSSH client.
#
#   warm        one command on tinyfarm's cached connection (goal: <= 2 ms)
#   anchors     the OpenSSH client through a ControlMaster, and one ssh process and
#               connection per command, against the same guest in the same run
#   dial+run    a new Go connection per command
#   g:exec      the ns driver's exec
#   stream      bulk copy through one command's stdin (32 MiB into `wc -c`)
#   sftp        one atomic 1 MiB WriteFile into the guest's /tmp
#
# Batches alternate between the subjects; each figure is a median of 11.
# TestWarmCommand in bench/guestbench; TestWarmProfile there splits a warm command into
# where its time goes. Prints TSV rows for bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(TINYFARM_BENCH=1 ${GO:-go} test -count=1 -timeout 10m -run '^TestWarmCommand$' -v ./bench/guestbench)" || { echo "$out" >&2; exit 1; }
rows="$(echo "$out" | grep -P '\t' | grep -v -E '^(ok|---|===)' || true)"
[ -n "$rows" ] || { echo "$out" >&2; echo "ssh bench: no results (not root, or TINYFARM_MINICORE unset?)" >&2; exit 1; }
echo "$rows"
