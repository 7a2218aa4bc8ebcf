#!/usr/bin/env bash
# qemu.sh: boot→ready time of the qemu driver (stdlib/colinux/qemu) against
# plain qemu-system-x86_64 run by hand with the same kernel and initrd
# (TCG), and restore-from-checkpoint time against a cold boot. Prints TSV
# rows for bench/run.sh. About 1 minute with N=3 (boots are interleaved).
#
#   bash bench/qemu.sh        # N=3 boots per variant
#
# Needs: go, qemu-system-x86_64, the mini Tiny Core release (make minicore).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v qemu-system-x86_64 >/dev/null || { echo "qemu.sh: qemu-system-x86_64 not found" >&2; exit 1; }
go run ./bench/qemuboot -n "${N:-3}"
