package ns

import (
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/lockfile"
)

// A guest in user-namespace mode runs as a range of unprivileged host
// uids: its root is host uid Base, its uid N is Base+N. The disk is
// loop-mounted by the monitor (a user namespace may not mount ext4) with
// the new mount API, idmapped to the guest's user namespace (files owned
// by 0 on disk show as the guest's root, and the guest's writes land as
// 0 on disk), and handed to the guest's init over a socket, which moves
// it into its own mount namespace.

// idRange is the size of a guest's uid/gid range.
const idRange = 65536

// idSlots is how many guest ranges fit above the ranges distributions
// hand to users (/etc/subuid starts at 100000; ours start at 64 ranges
// up) and below 2^31.
const idSlots = 30000

// idClaims holds one file per uid range in use on this host, named by
// slot, holding "instance monitor-pid monitor-start". /run is a tmpfs:
// a host reboot frees every range.
const idClaims = "/run/tinyfarm-ns/ids"

// claimIDRange gives the guest instance a uid/gid range that no other
// running guest on this host has, so one tenant's root is never the same
// host uid as another's (a hash of the name alone would collide). The
// slot the instance name hashes to is tried first, so a guest mostly
// keeps its range across restarts; a slot whose monitor is gone is free.
// The claim lives as long as the calling monitor; releaseIDRange drops it.
func claimIDRange(instance string) (base int, err error) {
	if err := os.MkdirAll(idClaims, 0o700); err != nil {
		return 0, fmt.Errorf("userns: uid ranges: %w", err)
	}
	unlock, err := lockfile.Lock(filepath.Join(idClaims, ".lock"))
	if err != nil {
		return 0, fmt.Errorf("userns: uid ranges: %w", err)
	}
	defer unlock()
	start, err := procStart(os.Getpid())
	if err != nil {
		return 0, fmt.Errorf("userns: uid ranges: %w", err)
	}
	me := fmt.Sprintf("%s %d %d", instance, os.Getpid(), start)
	first := int(crc32.ChecksumIEEE([]byte(instance)) % idSlots)
	for i := 0; i < idSlots; i++ {
		slot := (first + i) % idSlots
		p := filepath.Join(idClaims, strconv.Itoa(slot))
		if b, err := os.ReadFile(p); err == nil && claimLive(string(b)) {
			continue
		}
		if err := fsutil.WriteFileAtomic(p, []byte(me), 0o600); err != nil {
			return 0, fmt.Errorf("userns: claim uid range %d: %w", slot, err)
		}
		return idRange * (64 + slot), nil
	}
	return 0, fmt.Errorf("userns: all %d uid ranges are in use", idSlots)
}

// releaseIDRange gives back the uid range at base when this process
// (pid and start time: a monitor re-executed by settle keeps both) holds
// its claim.
func releaseIDRange(instance string, base int) {
	start, err := procStart(os.Getpid())
	if err != nil {
		return
	}
	p := filepath.Join(idClaims, strconv.Itoa(base/idRange-64))
	if b, err := os.ReadFile(p); err == nil && string(b) == fmt.Sprintf("%s %d %d", instance, os.Getpid(), start) {
		os.Remove(p)
	}
}

// claimLive reports whether a claim's monitor still runs.
func claimLive(claim string) bool {
	f := strings.Fields(claim)
	if len(f) != 3 {
		return false
	}
	pid, err1 := strconv.Atoi(f[1])
	want, err2 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	st, err := procStart(pid)
	return err == nil && st == want
}

// idmappedDisk loop-mounts image (autoclear) as a detached mount idmapped
// to the user namespace of pid, and returns the mount's fd.
func idmappedDisk(image string, readOnly bool, pid int) (int, error) {
	dev, err := loopAttach(image, readOnly)
	if err != nil {
		return -1, err
	}
	fs, err := unix.Fsopen("ext4", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("userns disk %s: fsopen: %w", image, err)
	}
	defer unix.Close(fs)
	if err := unix.FsconfigSetString(fs, "source", dev); err != nil {
		return -1, fmt.Errorf("userns disk %s: source %s: %w", image, dev, err)
	}
	if readOnly {
		if err := unix.FsconfigSetFlag(fs, "ro"); err != nil {
			return -1, fmt.Errorf("userns disk %s: ro: %w", image, err)
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, fmt.Errorf("userns disk %s: create: %w", image, err)
	}
	mfd, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("userns disk %s: fsmount: %w", image, err)
	}
	ns, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/user")
	if err != nil {
		unix.Close(mfd)
		return -1, fmt.Errorf("userns disk %s: %w", image, err)
	}
	defer ns.Close()
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns.Fd())}
	if err := unix.MountSetattr(mfd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(mfd)
		return -1, fmt.Errorf("userns disk %s: idmap: %w", image, err)
	}
	return mfd, nil
}

// idmappedShare clones the host directory dir (with the mounts below
// it) as a detached mount idmapped to the user namespace of pid, like the
// disk: a host file owned by uid N is the guest's uid N (0 its root, 1001
// Tiny Core's tc), and what the guest writes lands as N on the host. A
// host uid beyond the guest's range shows as the overflow uid (nobody).
func idmappedShare(dir string, readOnly bool, pid int) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return -1, fmt.Errorf("userns share %s: %w", dir, err)
	}
	ns, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/user")
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("userns share %s: %w", dir, err)
	}
	defer ns.Close()
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns.Fd())}
	if readOnly {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		unix.Close(fd)
		var st unix.Statfs_t
		fsType := "unknown"
		if unix.Statfs(dir, &st) == nil {
			fsType = fmt.Sprintf("0x%x", st.Type)
		}
		return -1, fmt.Errorf("userns share %s: idmap (file system type %s): %w; "+
			"share a directory on a file system that supports idmapped mounts (ext4, btrfs, xfs, tmpfs) "+
			"with no other mounts below it, or define the guest with userns = false", dir, fsType, err)
	}
	return fd, nil
}

// sendFD passes fd over the unix socket sock.
func sendFD(sock *os.File, fd int) error {
	return unix.Sendmsg(int(sock.Fd()), []byte("m"), unix.UnixRights(fd), nil, 0)
}

// recvFD receives one fd from the unix socket fd sock.
func recvFD(sock int) (int, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, 0)
	if err != nil {
		return -1, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("no fd in the message (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, fmt.Errorf("no fd in the message (%v)", err)
	}
	return fds[0], nil
}

// UserNSAvailable reports whether guests can run in user-namespace mode
// here: user namespaces enabled, and the new mount API (fsopen for ext4)
// that idmapped disks need, as root.
func UserNSAvailable() bool {
	b, err := os.ReadFile("/proc/sys/user/max_user_namespaces")
	if err != nil || strings.TrimSpace(string(b)) == "0" || os.Geteuid() != 0 {
		return false
	}
	fd, err := unix.Fsopen("ext4", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}
