#!/usr/bin/env bash
# deps.sh installs the Debian packages tinyfarm's build, tests and demo use.
# Idempotent: packages already present are skipped, so a second run costs
# one dpkg query. Run as root on Debian 12.
set -euo pipefail

pkgs=(
  qemu-system-x86 qemu-utils
  busybox-static dropbear-bin
  openssh-sftp-server openssh-client libwrap0
  squashfs-tools e2fsprogs cpio kmod xz-utils
  btrfs-progs
  nginx-light libnginx-mod-stream
  iproute2 iptables nftables procps psmisc util-linux
  tmux
  lua5.1  # the reference Lua for engine's conformance suite and fuzzer
  etcd-server  # an existing etcd cluster for stdlib/cluster's external-etcd test
  ca-certificates curl make wget
)
if [ "${TINYFARM_BENCH_DEPS:-0}" = 1 ]; then
  pkgs+=(wrk hyperfine ansible-core)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian enables and starts nginx on install; tinyfarm starts its own instances.
if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
  systemctl stop nginx || true
fi
# Debian enables and starts etcd on install, on 127.0.0.1:2379; the tests
# start their own, and tinyfarm's cluster members use that port.
if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
  systemctl disable etcd 2>/dev/null || true
fi
echo "deps: ok"
