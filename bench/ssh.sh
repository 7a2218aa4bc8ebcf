#!/usr/bin/env bash
# bench/ssh.sh - SSH command latency against a real dropbear on 127.0.0.1 (started by the Go
# benchmarks in stdlib/ssh, in a private mount namespace; nothing on the host changes).
#
#   warm      one command on tinyfarm's reused connection (goal: <= 5 ms)
#   dial+run  a new Go connection per command
#   openssh   the OpenSSH `ssh` client per command (process + connection each time)
#   stream    bulk copy through one command's stdin (dropbear default window, and -W 1 MiB)
#   sftp      one atomic 1 MiB WriteFile
#
# Usage: bench/ssh.sh [benchtime]   (default 2s). Needs dropbear (dropbear-bin) and ssh.
# Prints TSV rows for bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
benchtime="${1:-2s}"
out="$(${GO:-go} test -count=1 -run '^$' -bench 'Dropbear|OpenSSH' -benchtime "$benchtime" ./stdlib/ssh)"
echo "$out" | grep -q '^Benchmark' || { echo "$out"; echo "ssh bench: no results (dropbear missing?)" >&2; exit 1; }
echo "$out" | awk '
  /^BenchmarkDropbearRun-/              { warm = $3 }
  /^BenchmarkDropbearDialRun-/          { dial = $3 }
  /^BenchmarkOpenSSHRun-/               { ossh = $3 }
  /^BenchmarkDropbearRunStream-/        { stream = $5 }
  /^BenchmarkDropbearRunStreamWindow1M-/ { streamw = $5 }
  /^BenchmarkDropbearWriteFile-/        { sftp = $5 }
  END {
    # TSV rows for bench/run.sh: metric, tinyfarm, anchor, anchor value, ratio
    if (warm && ossh) printf "ssh: command on a warm connection (ms, goal <=5)\t%.2f\tOpenSSH ssh per command\t%.2f\t%.0fx faster\n", warm/1e6, ossh/1e6, ossh/warm
    if (dial)    printf "ssh: new connection + command (ms)\t%.2f\t-\t-\t-\n", dial/1e6
    if (stream && streamw) printf "ssh: tar-stream copy (MB/s)\t%.1f\tsame, dropbear -W 1M\t%.1f\t-\n", stream, streamw
    if (sftp)    printf "ssh: sftp atomic 1 MiB write (MB/s)\t%.1f\t-\t-\t-\n", sftp
    if (warm > 5e6) { print "ssh.warm_run above the 5 ms goal" > "/dev/stderr" }
  }'
