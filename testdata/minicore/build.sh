#!/usr/bin/env bash
# build.sh OUT: build tinyfarm's mini Tiny Core release from Debian packages.
#
# Output (see README.md): OUT/mirror/15.x/x86_64/{tcz,release/distribution_files}
# (distribution_files named as on the official mirror: corepure64.gz =
# rootfs64.gz + modules64.gz, vmlinuz64, each with <name>.md5.txt),
# OUT/kernel/{vmlinux,vmlinuz,modules.gz,version}, OUT/cache (downloaded .deb).
# Rebuilt only when an input changed: the files beside this script, the
# versions of the Debian packages used, the kernel package, the Go version.
# Needs the packages of scripts/deps.sh; the kernel .deb comes from
# `apt-get download` (cached in OUT/cache). Run as root for exact ownership.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${1:-$HERE/out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

VERSION_ID=15.0
MAJOR=15.x
# MINICORE_ARCH=x86 builds the 32-bit release from Debian i386 packages
# (downloaded into OUT/cache and unpacked into a sysroot there; needs
# `dpkg --add-architecture i386`, which the build does as root).
ARCH=${MINICORE_ARCH:-x86_64}
# Release file names of the official mirror for ARCH (TINYCORE.md §1):
# x86_64 has corepure64.gz = rootfs64.gz + modules64.gz and vmlinuz64; x86
# has core.gz = rootfs.gz + modules.gz and vmlinuz. No other names.
case $ARCH in
x86_64) SFX=64 CORE=corepure64.gz DEBARCH=amd64 KMETA=linux-image-amd64 GOARCH=amd64 MLIB=/lib/x86_64-linux-gnu ;;
x86) SFX= CORE=core.gz DEBARCH=i386 KMETA=linux-image-686:i386 GOARCH=386 MLIB=/lib/i386-linux-gnu ;;
*) echo "minicore: arch $ARCH: want x86_64 or x86" >&2; exit 1 ;;
esac
export GOARCH
# Debian packages whose files go into the release. The x86 release has the
# SSH part only (no nginx, openssh or openssl extensions).
DEBS=(busybox-static libc6 libc-bin dropbear-bin openssh-sftp-server openssh-client libwrap0 nginx nginx-common
	libssl3 libpcre2-8-0 zlib1g libcrypt1 libgmp10 libtommath1 libtomcrypt1)
[ "$ARCH" = x86 ] && DEBS=(busybox-static libc6 libc-bin dropbear-bin openssh-sftp-server zlib1g libcrypt1 libgmp10 libtommath1 libtomcrypt1)
# Modules the Debian kernel needs for virtio disks/net, ext2/3/4, loop,
# squashfs and virtio-9p host shares (9p needs netfs and fscache), in load
# order (PLATFORM.md §2). The package has no modules.dep: dependencies are
# from `modinfo -F depends`.
MODS=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_mmio
	virtio_blk crc16 mbcache jbd2 crc32c_generic ext4 failover net_failover virtio_net loop squashfs
	netfs fscache 9pnet 9pnet_virtio 9p)

log() { echo "minicore: $*"; }
die() { echo "minicore: $*" >&2; exit 1; }
T0=$(date +%s.%N)

GO=${GO:-go}
command -v "$GO" >/dev/null || GO=/usr/local/go/bin/go
for t in mksquashfs cpio gzip xz md5sum sha256sum dpkg-deb dpkg-query depmod apt-get apt-cache "$GO"; do
	command -v "$t" >/dev/null || die "missing tool $t (run: make deps)"
done
CACHE=$OUT/cache
mkdir -p "$CACHE"
# SYS is where the packages' files are read: the build host itself for
# x86_64 (the packages of scripts/deps.sh), a sysroot of downloaded i386
# packages for x86. debver PKG is the version used.
if [ "$ARCH" = x86_64 ]; then
	SYS=
	missing=$(dpkg-query -W -f='${Package} ${Status}\n' "${DEBS[@]}" 2>&1 | grep -v ' install ok installed$' || true)
	[ -z "$missing" ] || die "Debian packages missing (run: make deps): $missing"
	debvers() { dpkg-query -W -f='${Package} ${Version}\n' "${DEBS[@]}"; }
	debver() { dpkg-query -W -f='${Version}' "$1"; }
	else
	SYS=$CACHE/sysroot-$DEBARCH
	if ! dpkg --print-foreign-architectures | grep -qx "$DEBARCH"; then
		[ "$(id -u)" = 0 ] || die "run as root, or: dpkg --add-architecture $DEBARCH && apt-get update"
		dpkg --add-architecture "$DEBARCH"
		apt-get update -qq >/dev/null 2>&1 || true
	fi
	debs=()
	for p in "${DEBS[@]}"; do
		v=$(apt-cache policy "$p:$DEBARCH" 2>/dev/null | awk '/Candidate:/ { print $2; exit }')
		[ -n "$v" ] && [ "$v" != "(none)" ] || die "no $p:$DEBARCH in the apt lists (apt-get update?)"
		f=$(ls "$CACHE/debs/${p}_${v//:/%3a}_$DEBARCH.deb" 2>/dev/null || true)
		if [ -z "$f" ]; then
			mkdir -p "$CACHE/debs"
			(cd "$CACHE/debs" && apt-get download -q "$p:$DEBARCH=$v" 2>&1 | grep -v 'unsandboxed' || true)
			f=$(ls "$CACHE/debs/${p}_${v//:/%3a}_$DEBARCH.deb" 2>/dev/null || true)
			[ -n "$f" ] || die "apt-get download $p:$DEBARCH=$v failed"
		fi
		debs+=("$f")
	done
	sig=$(printf '%s\n' "${debs[@]}" | sha256sum | cut -c1-16)
	if [ "$(cat "$SYS/.sig" 2>/dev/null)" != "$sig" ]; then
		rm -rf "$SYS"
		mkdir -p "$SYS"
		for f in "${debs[@]}"; do dpkg-deb -x "$f" "$SYS"; done
		echo "$sig" >"$SYS/.sig"
	fi
	debvers() { for f in "${debs[@]}"; do basename "$f"; done; }
	debver() { local f; f=$(ls "$CACHE/debs/${1}_"*"_$DEBARCH.deb" | head -n 1); dpkg-deb -f "$f" Version; }
fi

# The kernel package: linux-image-amd64 depends on linux-image-<abi>-amd64.
kpkg() { apt-cache depends "$KMETA" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
# apt-cache takes about a second; its answer changes only with the lists.
LISTSIG=$(stat -c '%Y %s %n' /var/lib/apt/lists/*Packages* 2>/dev/null | sha256sum | cut -c1-16)
KPKG= KDEBVER=
if [ -f "$CACHE/kernel.pkg" ]; then
	read -r sig p v <"$CACHE/kernel.pkg" || true
	[ "$sig" = "$LISTSIG" ] && KPKG=$p KDEBVER=$v
fi
if [ -z "$KPKG" ]; then
	KPKG=$(kpkg || true)
	if [ -z "$KPKG" ] && [ "$(id -u)" = 0 ]; then
		apt-get update -qq >/dev/null 2>&1 || true
		LISTSIG=$(stat -c '%Y %s %n' /var/lib/apt/lists/*Packages* 2>/dev/null | sha256sum | cut -c1-16)
		KPKG=$(kpkg || true)
	fi
	if [ -n "$KPKG" ]; then
		KPKG=${KPKG%:*}
		KDEBVER=$(apt-cache policy "$KPKG:$DEBARCH" | awk '/Candidate:/ { print $2; exit }')
		echo "$LISTSIG $KPKG $KDEBVER" >"$CACHE/kernel.pkg"
	fi
fi
if [ -n "$KPKG" ]; then
	KDEB=$(ls "$CACHE/${KPKG}_${KDEBVER//:/%3a}_"*.deb 2>/dev/null | head -n 1 || true)
else # offline: use a cached kernel package
	KDEB=$(ls -t "$CACHE"/linux-image-*.deb 2>/dev/null | head -n 1 || true)
	[ -n "$KDEB" ] || die "cannot find the kernel package (apt-cache depends linux-image-amd64) and none is cached"
	KPKG=$(dpkg-deb -f "$KDEB" Package)
	KDEBVER=$(dpkg-deb -f "$KDEB" Version)
fi

# Stamp: a hash over every input.
inputs() {
	(cd "$HERE" && find build.sh README.md rootfs modinit pkgs sudo -type f | sort | xargs sha256sum)
	(cd "$HERE" && find rootfs modinit pkgs -perm -u+x -type f | sort)
	debvers
	echo "arch $ARCH kernel $KPKG $KDEBVER"
	"$GO" version
	echo "uid $(id -u)"
}
KEY=$(inputs | sha256sum | cut -d' ' -f1)
TCZ=$OUT/mirror/$MAJOR/$ARCH/tcz
DIST=$OUT/mirror/$MAJOR/$ARCH/release/distribution_files
if [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$KEY" ] &&
	[ -f "$DIST/$CORE" ] && [ -f "$OUT/kernel/vmlinux" ] && [ -f "$TCZ/dropbear.tcz" ]; then
	log "up to date ($OUT)"
	exit 0
fi
rm -f "$OUT/.stamp"

if [ -z "$KDEB" ]; then
	log "downloading $KPKG $KDEBVER"
	rm -f "$CACHE"/linux-image-*.deb
	(cd "$CACHE" && apt-get download -q "$KPKG:$DEBARCH=$KDEBVER" 2>&1 | grep -v 'unsandboxed' || true)
	KDEB=$(ls "$CACHE/${KPKG}_"*.deb 2>/dev/null | head -n 1 || true)
	[ -n "$KDEB" ] || die "apt-get download $KPKG failed"
fi

# openssh.tcz's sshd: Debian's openssh-server, downloaded (installing it
# would start an sshd on the build host), same version as the installed
# openssh-client and openssh-sftp-server (one source package).
OSSHVER=$(debver openssh-sftp-server)
OSDEB=$(ls "$CACHE/openssh-server_${OSSHVER//:/%3a}_"*.deb 2>/dev/null | head -n 1 || true)
if [ "$ARCH" = x86_64 ] && [ -z "$OSDEB" ]; then
	log "downloading openssh-server $OSSHVER"
	rm -f "$CACHE"/openssh-server_*.deb
	(cd "$CACHE" && apt-get download -q "openssh-server=$OSSHVER" 2>&1 | grep -v 'unsandboxed' || true)
	OSDEB=$(ls "$CACHE/openssh-server_"*.deb 2>/dev/null | head -n 1 || true)
	[ -n "$OSDEB" ] || die "apt-get download openssh-server=$OSSHVER failed"
fi

W=$OUT/.work
rm -rf "$W"
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT

# ---------------------------------------------------------------- kernel
log "kernel from $(basename "$KDEB")"
KX=$W/kx
mkdir -p "$KX"
pats=('./boot/vmlinuz-*' './boot/config-*' './lib/modules/*/modules.builtin*' './lib/modules/*/modules.order'
	'./lib/modules/*/kernel/fs/overlayfs/overlay.ko')
for m in "${MODS[@]}"; do pats+=("./lib/modules/*/kernel/*/$m.ko"); done
dpkg-deb --fsys-tarfile "$KDEB" | tar -x -C "$KX" --wildcards --wildcards-match-slash "${pats[@]}"
KVER=$(ls "$KX/lib/modules")
[ -n "$KVER" ] && [ -f "$KX/boot/vmlinuz-$KVER" ] || die "kernel package $KDEB has no vmlinuz/modules"
K=$W/kernel
mkdir -p "$K"
cp "$KX/boot/vmlinuz-$KVER" "$K/vmlinuz"
cp "$KX/boot/config-$KVER" "$K/config"
echo "$KVER" >"$K/version"
# PVH vmlinux: the bzImage's xz payload is an ELF with a PVH entry point;
# booting it directly skips firmware and decompression (PLATFORM.md §3).
off=$(grep -obUaP '\xfd7zXZ\x00' "$K/vmlinuz" | head -n 1 | cut -d: -f1)
[ -n "$off" ] || die "no xz payload in vmlinuz-$KVER"
tail -c +$((off + 1)) "$K/vmlinuz" | xz -dc --single-stream >"$K/vmlinux" 2>/dev/null || true
[ "$(head -c 4 "$K/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ] || die "decompressed vmlinux is not an ELF"

# Modules initramfs: busybox, the modules, and an /init that loads them.
MI=$W/modinitrd
MD=$MI/lib/modules/$KVER
mkdir -p "$MI/bin" "$MI/dev" "$MI/proc" "$MI/sys" "$MI/newroot" "$MD"
cp "$SYS/bin/busybox" "$MI/bin/busybox"
ln -s busybox "$MI/bin/sh"
install -m 0755 "$HERE/modinit/init" "$MI/init"
: >"$MD/minicore.order"
for m in "${MODS[@]}"; do
	src=$(cd "$KX/lib/modules/$KVER" && find kernel -name "$m.ko" | head -n 1)
	[ -n "$src" ] || die "module $m.ko not in $KPKG"
	mkdir -p "$MD/$(dirname "$src")"
	cp "$KX/lib/modules/$KVER/$src" "$MD/$src"
	echo "$src" >>"$MD/minicore.order"
done
cp "$KX/lib/modules/$KVER"/modules.builtin* "$KX/lib/modules/$KVER/modules.order" "$MD/"
depmod -b "$MI" "$KVER"
(cd "$MI" && find . | sort | cpio -o -H newc -R 0:0 --quiet | gzip -9) >"$K/modules.gz"

# ---------------------------------------------------------------- rootfs
log "rootfs$SFX.gz"
C=$W/core
mkdir -p "$C"/{bin,sbin,lib,dev,proc,sys,tmp,mnt,home,root,opt,run,etc/sysconfig,etc/init.d}
mkdir -p "$C"/usr/{bin,sbin,lib,share} "$C"/usr/local/{bin,sbin,lib,etc,share,tce.installed}
mkdir -p "$C"/var/{run,log,tmp,lock,spool,lib}
cp "$SYS/bin/busybox" "$C/bin/busybox"
for a in $("$SYS/bin/busybox" --list-full); do
	[ "$a" = bin/busybox ] && continue
	mkdir -p "$C/$(dirname "$a")"
	[ -e "$C/$a" ] || ln -s /bin/busybox "$C/$a"
done
# glibc (Tiny Core keeps it in core's /lib) and the static ldconfig.
if [ "$ARCH" = x86_64 ]; then
	libc=$(dpkg -L libc6)
else
	libc=$(dpkg-deb -c "$(ls "$CACHE/debs/libc6_"*"_$DEBARCH.deb")" | awk '{ print substr($6, 2) }')
fi
for f in $(echo "$libc" | grep -E "^$MLIB/[^/]+\.so(\.[0-9]+)*\$"); do
	cp -L "$SYS$f" "$C/lib/$(basename "$f")"
done
# The loader where the ELF interpreter names it: /lib64/ld-linux-x86-64.so.2
# (also how tce-load tells x86_64), /lib/ld-linux.so.2 on x86.
[ "$ARCH" = x86_64 ] && ln -s lib "$C/lib64"
cp "$SYS/sbin/ldconfig" "$C/sbin/ldconfig"
# sudo: a small setuid-root Go program (sudo/main.go).
(cd "$REPO" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags='-s -w' -o "$C/usr/bin/sudo" ./testdata/minicore/sudo)
cp -a "$HERE/rootfs/." "$C/"
cat >"$C/etc/os-release" <<EOF
NAME="TinyCore"
ID=tinycore
VARIANT_ID=minicore
VERSION="$VERSION_ID (tinyfarm minicore)"
VERSION_ID=$VERSION_ID
PRETTY_NAME="TinyCore $VERSION_ID (tinyfarm minicore, Debian binaries)"
HOME_URL="https://github.com/tinyfarm/tinyfarm"
EOF
chmod 1777 "$C/tmp" "$C/var/tmp"
chmod 700 "$C/root"
chmod 600 "$C/etc/shadow"
chmod 440 "$C/etc/sudoers"
chmod 775 "$C/opt" "$C/usr/local/tce.installed" "$C"/opt/*.sh
CPIO_OWNER=()
if [ "$(id -u)" = 0 ]; then
	chown -R 0:0 "$C"
	chgrp -R 50 "$C/opt" "$C/usr/local/tce.installed"
	chmod 4755 "$C/usr/bin/sudo"
	"$C/sbin/ldconfig" -r "$C" 2>/dev/null || true
else
	CPIO_OWNER=(-R 0:0)
	log "warning: not root, rootfs$SFX.gz files owned by root:root and sudo is not setuid"
fi
mkdir -p "$W/dist"
(cd "$C" && find . | sort | cpio -o -H newc "${CPIO_OWNER[@]}" --quiet | gzip -9) >"$W/dist/rootfs$SFX.gz"

# ---------------------------------------------------------------- extensions
log "extensions"
M=$W/tcz
mkdir -p "$M"
P=

# pkg NAME: start a package tree (seeded from pkgs/NAME if present).
pkg() {
	P=$W/pkg/$1
	mkdir -p "$P"
	if [ -d "$HERE/pkgs/$1" ]; then cp -a "$HERE/pkgs/$1/." "$P/"; fi
}
# put SRC DEST [MODE]: copy a Debian file into the package.
put() {
	local src=$1
	case $src in "$W"/*) ;; *) src=$SYS$src ;; esac
	mkdir -p "$P/$(dirname "$2")"
	cp -L "$src" "$P/$2"
	chmod "${3:-0755}" "$P/$2"
}
# lib SONAME...: the library's real file plus its soname link in usr/local/lib.
lib() {
	local so real
	mkdir -p "$P/usr/local/lib"
	for so in "$@"; do
		real=$(readlink -f "$SYS$MLIB/$so")
		# A sysroot is not usr-merged: some libraries are in /usr/lib.
		[ -f "$real" ] || real=$(readlink -f "$SYS/usr$MLIB/$so")
		[ -f "$real" ] || die "library $so not found in $SYS$MLIB"
		cp "$real" "$P/usr/local/lib/"
		chmod 0755 "$P/usr/local/lib/$(basename "$real")"
		[ "$(basename "$real")" = "$so" ] || ln -sf "$(basename "$real")" "$P/usr/local/lib/$so"
	done
}
# done NAME "DEPS" VERSION "DESCRIPTION" "TAGS" SITE LICENSE: squash and sidecars.
done_pkg() {
	local n=$1 deps=$2 ver=$3 desc=$4 tags=$5 site=$6 lic=$7 f=$M/$1.tcz d size
	find "$P" -type d -exec chmod 0755 {} +
	mksquashfs "$P" "$f" -b 4k -no-xattrs -all-root -noappend -quiet -no-progress \
		-mkfs-time 0 -all-time 0 >/dev/null
	(cd "$M" && md5sum "$n.tcz" >"$n.tcz.md5.txt")
	(cd "$P" && find . ! -type d | sed 's|^\./||' | sort) >"$f.list"
	if [ -n "$deps" ]; then
		for d in $deps; do echo "$d.tcz"; done >"$f.dep"
	fi
	size=$(du -k "$f" | cut -f1)
	cat >"$f.info" <<EOF
Title:          $n.tcz
Description:    $desc
Version:        $ver
Author:         see Original-site
Original-site:  $site
Copying-policy: $lic
Size:           ${size}K
Extension_by:   tinyfarm minicore (Debian 12 binaries)
Tags:           $tags
Comments:       Built by testdata/minicore/build.sh from the Debian
                packages installed on the build host.
Change-log:     ----
Current:        $ver
EOF
	printf '%s.tcz\t%s\n' "$n" "$tags" >>"$W/tags.db"
}

pkg zlib
lib libz.so.1
done_pkg zlib "" "$(debver zlib1g)" "zlib compression library" "zlib compression library" https://zlib.net Zlib
pkg libxcrypt
lib libcrypt.so.1
done_pkg libxcrypt "" "$(debver libcrypt1)" "libcrypt password hashing (libxcrypt)" "crypt password library" https://github.com/besser82/libxcrypt LGPL-2.1
pkg gmp
lib libgmp.so.10
done_pkg gmp "" "$(debver libgmp10)" "GNU multiprecision arithmetic library" "math bignum library" https://gmplib.org LGPL-3
pkg libtommath
lib libtommath.so.1
done_pkg libtommath "" "$(debver libtommath1)" "LibTomMath multiple-precision integer library" "math library" https://www.libtom.net Unlicense
pkg libtomcrypt
lib libtomcrypt.so.1
done_pkg libtomcrypt "libtommath gmp" "$(debver libtomcrypt1)" "LibTomCrypt cryptographic toolkit" "crypto library" https://www.libtom.net Unlicense
if [ "$ARCH" = x86_64 ]; then
pkg libcrypto
lib libcrypto.so.3
done_pkg libcrypto "" "$(debver libssl3)" "OpenSSL 3 libcrypto" "openssl crypto library" https://www.openssl.org Apache-2.0
pkg openssl
lib libssl.so.3
done_pkg openssl "libcrypto" "$(debver libssl3)" "OpenSSL 3 libssl (TLS)" "openssl ssl tls library" https://www.openssl.org Apache-2.0
pkg pcre2
lib libpcre2-8.so.0
done_pkg pcre2 "" "$(debver libpcre2-8-0)" "PCRE2 regular expressions (8 bit)" "regex library" https://www.pcre.org BSD-3-Clause
fi

pkg dropbear
put /usr/sbin/dropbear usr/local/sbin/dropbear
put /usr/bin/dropbearkey usr/local/bin/dropbearkey
put /usr/bin/dropbearconvert usr/local/bin/dropbearconvert
put /usr/bin/dbclient usr/local/bin/dbclient
# Debian's dropbear execs /usr/lib/sftp-server for the sftp subsystem.
put /usr/lib/openssh/sftp-server usr/lib/sftp-server
done_pkg dropbear "libtomcrypt libtommath zlib libxcrypt gmp" "$(debver dropbear-bin)" \
	"Dropbear SSH server and client, with OpenSSH's sftp-server" "ssh server sftp dropbear" https://matt.ucc.asn.au/dropbear/dropbear.html MIT

# openssh, laid out as Tiny Core's openssh.tcz (TINYCORE.md "SSH servers"):
# /usr/local/sbin/sshd, config and keys in /usr/local/etc/ssh, init script
# /usr/local/etc/init.d/openssh, sftp server /usr/local/lib/openssh/sftp-server.
# Libraries other extensions ship are dependencies; the rest (Debian's
# sshd links PAM, Kerberos, SELinux, systemd, libwrap) are bundled.
if [ "$ARCH" = x86_64 ]; then
OSX=$W/openssh-server
dpkg-deb -x "$OSDEB" "$OSX"
pkg openssh
put "$OSX/usr/sbin/sshd" usr/local/sbin/sshd
put /usr/bin/ssh-keygen usr/local/bin/ssh-keygen
put /usr/lib/openssh/sftp-server usr/local/lib/openssh/sftp-server
ossh_deps="libcrypto zlib libxcrypt pcre2"
bundled=()
for so in $(ldd "$OSX/usr/sbin/sshd" /usr/bin/ssh-keygen /usr/lib/openssh/sftp-server | awk '/=>/ { print $1 }' | sort -u); do
	case $so in libcrypto.so.3 | libz.so.1 | libcrypt.so.1 | libpcre2-8.so.0) continue ;; esac
	[ -e "$C/lib/$so" ] && continue # glibc, in core
	bundled+=("$so")
done
lib "${bundled[@]}"
done_pkg openssh "$ossh_deps" "$OSSHVER" \
	"OpenSSH server (Debian openssh-server binary), ssh-keygen and sftp-server" "ssh server sftp openssh" https://www.openssh.com BSD

pkg nginx
put /usr/sbin/nginx usr/local/sbin/nginx
put /etc/nginx/mime.types usr/local/etc/nginx/mime.types 0644
done_pkg nginx "libxcrypt pcre2 openssl zlib" "$(debver nginx)" \
	"nginx HTTP server (Debian nginx-light binary)" "web server http nginx" https://nginx.org BSD-2-Clause

pkg hello-site
done_pkg hello-site "nginx" 1.0 "A tiny static site served by nginx" "web site demo" https://github.com/tinyfarm/tinyfarm MIT
fi

pkg "overlay-modules-$KVER"
put "$KX/lib/modules/$KVER/kernel/fs/overlayfs/overlay.ko" "usr/local/lib/modules/$KVER/kernel/fs/overlayfs/overlay.ko" 0644
done_pkg "overlay-modules-$KVER" "" "$KDEBVER" "overlayfs kernel module for $KVER" "kernel module overlay" https://kernel.org GPL-2.0
pkg overlayfs
done_pkg overlayfs "overlay-modules-KERNEL" 1.0 "overlayfs support: loads the overlay module" "overlay filesystem" https://kernel.org GPL-2.0

# .tree files: the dependency tree, three spaces per level.
tree() { # tree NAME DEPTH
	local n=${1%.tcz} d
	printf '%*s%s.tcz\n' $(($2 * 3)) '' "$n"
	n=${n/%-KERNEL/-$KVER}
	[ -f "$M/$n.tcz.dep" ] || return 0
	for d in $(cat "$M/$n.tcz.dep"); do tree "$d" $(($2 + 1)); done
}
for f in "$M"/*.tcz; do
	n=$(basename "$f" .tcz)
	tree "$n" 0 >"$f.tree"
done

# Repo-wide indexes for search and size checks.
(cd "$M" && for f in *.tcz; do cat "$f.md5.txt"; done) | gzip -9n >"$M/md5.db.gz"
(cd "$M" && for f in *.tcz; do echo "$f $(stat -c %s "$f")"; done) | gzip -9n >"$M/sizelist.gz"
sort "$W/tags.db" | gzip -9n >"$M/tags.db.gz"
(cd "$M" && for f in *.tcz; do echo "$f"; cat "$f.list"; echo; done) >"$M/provides.db"
(cd "$M" && ls *.tcz) >"$M/info.lst"

# ---------------------------------------------------------------- assemble
cp "$K/vmlinuz" "$W/dist/vmlinuz$SFX"
# modules64.gz holds /lib/modules/<kver> only, as on the official mirror
# (core's /init loads them on a frugal boot).
(cd "$MI" && find ./lib | sort | cpio -o -H newc -R 0:0 --quiet | gzip -9) >"$W/dist/modules$SFX.gz"
# The core the official mirror ships: both archives as two gzip members.
cat "$W/dist/rootfs$SFX.gz" "$W/dist/modules$SFX.gz" >"$W/dist/$CORE"
(cd "$W/dist" && for f in *; do md5sum "$f" >"$f.md5.txt"; done)
mkdir -p "$W/mirror/$MAJOR/$ARCH/release"
mv "$M" "$W/mirror/$MAJOR/$ARCH/tcz"
mv "$W/dist" "$W/mirror/$MAJOR/$ARCH/release/distribution_files"
rm -rf "$OUT/mirror" "$OUT/kernel"
mv "$W/mirror" "$OUT/mirror"
mv "$K" "$OUT/kernel"
echo "$KEY" >"$OUT/.stamp"
log "built $OUT (kernel $KVER) in $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $T0 }")s"
