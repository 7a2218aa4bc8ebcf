#!/bin/sh
# filetool.sh: back up or restore the files listed in /opt/.filetool.lst
# (tinyfarm minicore; written for tinyfarm, following Tiny Core's usage).
#
# Usage: filetool.sh -b|-r [-s] [-d] [-v] [DEV/DIR | /ABS/DIR]
#   -b back up to DEV/DIR/mydata.tgz   -r restore from it
#   -s keep the previous backup as mydatabk.tgz   -d dry run (size only)
# The target defaults to /etc/sysconfig/backup_device, then the tce dir.
. /etc/init.d/tc-functions
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
B= R= S= D= V=
while getopts brsdvp opt; do
	case "$opt" in
	b) B=1 ;; r) R=1 ;; s) S=1 ;; d) D=1 ;; v) V=1 ;;
	p) echo "filetool.sh: encrypted backups are not supported" >&2; exit 1 ;;
	*) exit 1 ;;
	esac
done
shift $((OPTIND - 1))
[ -n "$B$R" ] || { echo "usage: filetool.sh -b|-r [-s] [-d] [-v] [DEV/DIR]" >&2; exit 1; }
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
MYDATA=$(cat /etc/sysconfig/mydata 2>/dev/null)
[ -n "$MYDATA" ] || MYDATA=mydata
T=$1
[ -n "$T" ] || T=$(cat /etc/sysconfig/backup_device 2>/dev/null)
if [ -z "$T" ]; then
	T=$(readlink /etc/sysconfig/tcedir)
	T=${T#/mnt/}
fi
[ -n "$T" ] || { echo "filetool.sh: no backup device" >&2; exit 1; }
case "$T" in
/*) DIR=$T ;;
*)
	d=${T%%/*}
	$SUDO mkdir -p "/mnt/$d"
	ismounted "/mnt/$d" || $SUDO mount "/dev/$d" "/mnt/$d" ||
		{ echo "filetool.sh: cannot mount /dev/$d" >&2; exit 1; }
	DIR="/mnt/$T"
	;;
esac
F="$DIR/$MYDATA.tgz"
if [ -n "$B" ]; then
	if [ -n "$D" ]; then
		$SUDO tar -C / -T /opt/.filetool.lst -X /opt/.xfiletool.lst -czf - 2>/dev/null | wc -c
		exit 0
	fi
	[ -n "$S" ] && [ -f "$F" ] && $SUDO mv -f "$F" "$DIR/${MYDATA}bk.tgz"
	$SUDO tar -C / -T /opt/.filetool.lst -X /opt/.xfiletool.lst -czf "$F" 2>/tmp/backup_status
	if grep -v 'socket ignored' /tmp/backup_status | grep -q .; then
		cat /tmp/backup_status >&2
		echo "filetool.sh: backup to $F failed" >&2
		exit 1
	fi
	[ -n "$V" ] && tar -tzf "$F"
	echo "$F"
	exit 0
fi
[ -f "$F" ] || { echo "filetool.sh: $F not found" >&2; exit 1; }
$SUDO tar -C / -zxf "$F" || exit 1
exit 0
