package ns

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// loopAttach attaches file to a free loop device with autoclear set, so the
// device frees itself when its last mount goes (for a guest: when its mount
// namespace dies, even after kill -9). It returns the device path.
func loopAttach(file string, readOnly bool) (string, error) {
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("loop: open /dev/loop-control: %w", err)
	}
	defer unix.Close(ctl)
	flags := unix.O_RDWR
	if readOnly {
		flags = unix.O_RDONLY
	}
	ff, err := unix.Open(file, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("loop: open %s: %w", file, err)
	}
	defer unix.Close(ff)
	for attempt := 0; attempt < 16; attempt++ {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", fmt.Errorf("loop: get free device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		lfd, err := unix.Open(dev, flags|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", fmt.Errorf("loop: open %s: %w", dev, err)
		}
		info := unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR}
		if readOnly {
			info.Flags |= unix.LO_FLAGS_READ_ONLY
		}
		copy(info.File_name[:], file)
		// LOOP_CONFIGURE (Linux 5.8) binds the file and sets the flags in
		// one call; LOOP_SET_FD then LOOP_SET_STATUS64 freezes the
		// device's queue in between, which cost ~10 ms of a guest's start.
		err = unix.IoctlLoopConfigure(lfd, &unix.LoopConfig{Fd: uint32(ff), Info: info})
		if err == unix.EBUSY { // raced with another attach: try the next one
			unix.Close(lfd)
			continue
		}
		if err == nil {
			return dev, nil
		}
		if err != unix.EINVAL && err != unix.ENOTTY {
			unix.Close(lfd)
			return "", fmt.Errorf("loop: attach %s to %s: %w", file, dev, err)
		}
		if err := unix.IoctlSetInt(lfd, unix.LOOP_SET_FD, ff); err != nil {
			unix.Close(lfd)
			if err == unix.EBUSY { // raced with another attach: try the next one
				continue
			}
			return "", fmt.Errorf("loop: attach %s to %s: %w", file, dev, err)
		}
		if err := unix.IoctlLoopSetStatus64(lfd, &info); err != nil {
			unix.IoctlSetInt(lfd, unix.LOOP_CLR_FD, 0)
			unix.Close(lfd)
			return "", fmt.Errorf("loop: set status of %s: %w", dev, err)
		}
		// Keep lfd open until the mount holds the device; the caller's
		// process exit (or exec) closes it.
		return dev, nil
	}
	return "", fmt.Errorf("loop: no free device for %s", file)
}

// mountDisk loop-mounts an ext2/3/4 image at dir.
func mountDisk(image, dir string, readOnly bool) error {
	dev, err := loopAttach(image, readOnly)
	if err != nil {
		return err
	}
	var flags uintptr
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(dev, dir, "ext4", flags, ""); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", image, dev, dir, err)
	}
	return nil
}

// devNode is one device node a guest gets in its private /dev.
type devNode struct {
	name         string
	major, minor uint32
	mode         uint32
}

// guestDevices are the only device nodes in a guest's /dev: the ones a
// Tiny Core userland needs, none that reach host hardware.
var guestDevices = []devNode{
	{"null", 1, 3, 0o666}, {"zero", 1, 5, 0o666}, {"full", 1, 7, 0o666},
	{"random", 1, 8, 0o666}, {"urandom", 1, 9, 0o666}, {"tty", 5, 0, 0o666},
}

// prepareRoot builds the guest's view under newRoot, still seeing the host
// root: proc (with the guest's bootcodes over /proc/cmdline), read-only
// sysfs, a tmpfs /dev with only safe nodes, a private devpts, the console
// pty, and the host directories shared into the guest.
func prepareRoot(newRoot string, cmdlineFile, consolePty string, shares []shareMount) error {
	mk := func(p string, mode os.FileMode) error {
		if err := os.MkdirAll(filepath.Join(newRoot, p), mode); err != nil {
			return fmt.Errorf("rootfs: mkdir %s: %w", p, err)
		}
		return nil
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run"} {
		if err := mk(d, 0o755); err != nil {
			return err
		}
	}
	steps := []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}{
		{"proc", "proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{cmdlineFile, "proc/cmdline", "", unix.MS_BIND, ""},
		{"sysfs", "sys", "sysfs", unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"tmpfs", "dev", "tmpfs", unix.MS_NOSUID | unix.MS_STRICTATIME, "mode=755,size=65536k"},
	}
	for _, s := range steps {
		if err := unix.Mount(s.src, filepath.Join(newRoot, s.dst), s.fstype, s.flags, s.data); err != nil {
			return fmt.Errorf("rootfs: mount %s on /%s: %w", s.src, s.dst, err)
		}
	}
	// A bind mount ignores MS_RDONLY on the first call: remount it.
	if err := unix.Mount("", filepath.Join(newRoot, "proc/cmdline"), "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("rootfs: read-only /proc/cmdline: %w", err)
	}
	dev := filepath.Join(newRoot, "dev")
	userns := os.Getenv("TINYFARM_NS_USERNS") == "1"
	for _, n := range guestDevices {
		p := filepath.Join(dev, n.name)
		if userns {
			// A user namespace may not mknod: bind the host's node.
			if err := os.WriteFile(p, nil, 0o666); err != nil {
				return fmt.Errorf("rootfs: /dev/%s: %w", n.name, err)
			}
			if err := unix.Mount("/dev/"+n.name, p, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("rootfs: bind /dev/%s: %w", n.name, err)
			}
			continue
		}
		if err := unix.Mknod(p, unix.S_IFCHR|n.mode, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("rootfs: mknod /dev/%s: %w", n.name, err)
		}
		_ = unix.Chmod(p, n.mode) // mknod honours the umask
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return fmt.Errorf("rootfs: mkdir /dev/%s: %w", d, err)
		}
	}
	if err := unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		return fmt.Errorf("rootfs: mount devpts: %w", err)
	}
	if err := unix.Mount("shm", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=65536k"); err != nil {
		return fmt.Errorf("rootfs: mount /dev/shm: %w", err)
	}
	if err := os.Symlink("pts/ptmx", filepath.Join(dev, "ptmx")); err != nil {
		return fmt.Errorf("rootfs: /dev/ptmx: %w", err)
	}
	for _, l := range [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}} {
		_ = os.Symlink(l[0], filepath.Join(dev, l[1]))
	}
	if consolePty != "" {
		c := filepath.Join(dev, "console")
		if err := os.WriteFile(c, nil, 0o600); err != nil {
			return fmt.Errorf("rootfs: /dev/console: %w", err)
		}
		if err := unix.Mount(consolePty, c, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("rootfs: bind console %s: %w", consolePty, err)
		}
	}
	for _, s := range shares {
		dst := filepath.Join(newRoot, strings.TrimPrefix(filepath.Clean("/"+s.GuestPath), "/"))
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fmt.Errorf("share %s on %s: %w", s.HostPath, s.GuestPath, err)
		}
		if s.fd >= 0 {
			// Read-only and idmapped already (idmappedShare).
			err := unix.MoveMount(s.fd, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH)
			unix.Close(s.fd)
			if err != nil {
				return fmt.Errorf("share %s on %s: attach: %w", s.HostPath, s.GuestPath, err)
			}
			continue
		}
		if err := unix.Mount(s.HostPath, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("share %s on %s: %w", s.HostPath, s.GuestPath, err)
		}
		if s.ReadOnly {
			if err := unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_REC, ""); err != nil {
				return fmt.Errorf("share %s: read-only: %w", s.GuestPath, err)
			}
		}
	}
	return nil
}

// pivotInto makes newRoot the root of this mount namespace and detaches the
// host's root, so no path (not even .. from / or a saved fd) leads out.
func pivotInto(newRoot string) error {
	if err := unix.Mount(newRoot, newRoot, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("pivot: bind %s: %w", newRoot, err)
	}
	if err := unix.Chdir(newRoot); err != nil {
		return fmt.Errorf("pivot: chdir: %w", err)
	}
	// pivot_root(".", ".") stacks the old root on top of the new one; the
	// lazy unmount then removes it without needing a directory for it.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root %s: %w", newRoot, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("pivot: detach old root: %w", err)
	}
	return unix.Chdir("/")
}
