package ns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/lockfile"
)

// A layered guest (Spec.Base set) has a root made of two disks: the base,
// a read-only Tiny Core root shared by every guest built from the same
// core and extensions, and the guest's own layer disk, which holds an
// overlayfs upper/ (everything the guest wrote: /opt/bootlocal.sh, tce-load
// installs, /home) and work/. The base is loop-mounted once per host: every
// guest's mount of it is the same ext4 superblock, so the files of the base
// (busybox, nginx, their libraries) sit in the page cache once, however many
// guests run them. Separate disk copies, even identical ones, each have
// their own page cache: that is what bounded density (issue #21).
//
// Isolation holds as for a plain disk: overlayfs never writes to a lower
// layer (and the base is mounted read-only besides); each guest's upper is
// on its own disk, mounted only in its own mount namespace; after the
// pivot the layers themselves are unreachable from the guest.

// layerSize is the size of a layer disk tinyfarm makes: sparse, so it
// takes only what the guest writes.
const layerSize = "1G"

// baseLock serialises finding or attaching the loop device of a base, so
// two guests starting at once share one device (and one page cache).
const baseLock = "/run/tinyfarm-ns/base.lock"

// ensureLayer makes an empty ext4 layer disk at path unless one is there.
func ensureLayer(path string) error {
	if _, err := os.Stat(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("layer disk %s: %w", path, err)
	}
	tmp := path + ".tmp"
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "layer", "-E", "root_owner=0:0", tmp, layerSize).CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("layer disk %s: mkfs.ext4: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("layer disk %s: %w", path, err)
	}
	return nil
}

// sharedBase returns a detached read-only mount of the base image (the
// caller attaches it with move_mount), on the loop device that already
// backs image if there is one, so every guest's base is one superblock.
// The loop device is autoclear: it goes when the last guest using it ends.
// userNSPid > 0 idmaps the mount to that process's user namespace.
func sharedBase(image string, userNSPid int) (int, error) {
	if err := os.MkdirAll(filepath.Dir(baseLock), 0o711); err != nil {
		return -1, fmt.Errorf("base %s: %w", image, err)
	}
	unlock, err := lockfile.Lock(baseLock)
	if err != nil {
		return -1, fmt.Errorf("base %s: %w", image, err)
	}
	defer unlock()
	// The loop device records the path it was attached with: compare
	// the real path, then the inode.
	if real, err := filepath.EvalSymlinks(image); err == nil {
		image, _ = filepath.Abs(real)
	}
	var st unix.Stat_t
	if err := unix.Stat(image, &st); err != nil {
		return -1, fmt.Errorf("base %s: %w", image, err)
	}
	dev, lfd := findLoop(image, &st)
	if lfd >= 0 {
		// Held open until the mount holds the device: it cannot autoclear
		// between our check and the mount.
		defer unix.Close(lfd)
	} else if dev, err = loopAttach(image, true); err != nil {
		return -1, fmt.Errorf("base: %w", err)
	}
	fsfd, err := unix.Fsopen("ext4", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("base %s: fsopen: %w", image, err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetString(fsfd, "source", dev); err != nil {
		return -1, fmt.Errorf("base %s: source %s: %w", image, dev, err)
	}
	if err := unix.FsconfigSetFlag(fsfd, "ro"); err != nil {
		return -1, fmt.Errorf("base %s: ro: %w", image, err)
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fmt.Errorf("base %s: mount %s: %w", image, dev, err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOSUID)
	if err != nil {
		return -1, fmt.Errorf("base %s: fsmount: %w", image, err)
	}
	if userNSPid > 0 {
		if err := idmap(mfd, userNSPid, false); err != nil {
			unix.Close(mfd)
			return -1, fmt.Errorf("base %s: %w", image, err)
		}
	}
	return mfd, nil
}

// findLoop returns the read-only loop device already backed by image (the
// file st describes) and an open fd on it, or -1.
func findLoop(image string, st *unix.Stat_t) (string, int) {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || strings.TrimSpace(string(b)) != image {
			continue
		}
		dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f)))
		fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		info, err := unix.IoctlLoopGetStatus64(fd)
		if err == nil && info.Inode == st.Ino && info.Device == st.Dev && info.Flags&unix.LO_FLAGS_READ_ONLY != 0 {
			return dev, fd
		}
		unix.Close(fd)
	}
	return "", -1
}

// idmap makes the detached mount mfd idmapped to the user namespace of pid.
func idmap(mfd, pid int, readOnly bool) error {
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", pid))
	if err != nil {
		return err
	}
	defer ns.Close()
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns.Fd())}
	if readOnly {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(mfd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("idmap: %w", err)
	}
	return nil
}

// overlayRoot mounts the guest's root on newRoot: dir/base (the shared
// base) under dir/layer/upper (the guest's own writes, on its layer disk).
// userxattr (overlay's xattrs in user.overlay.*) in both modes: a user
// namespace may not set trusted.* xattrs, and one layer disk must read
// the same whether its guest runs with userns or without.
func overlayRoot(dir, newRoot string) error {
	for _, d := range []string{"layer/upper", "layer/work"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("layer: %w", err)
		}
	}
	// Relative layer paths (from dir): overlay's option string would
	// split a state directory path with a comma or colon in it.
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	if err := os.Chdir(dir); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	defer os.Chdir(wd)
	if err := unix.Mount("overlay", newRoot, "overlay", 0, "lowerdir=base,upperdir=layer/upper,workdir=layer/work,userxattr"); err != nil {
		return fmt.Errorf("layer: overlay of the base and the guest's layer: %w", err)
	}
	return nil
}
