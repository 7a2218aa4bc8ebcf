package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// Why a loop mount in a private mount namespace (and not debugfs or a
// rebuild): the target interface needs random access with owners, modes,
// symlinks and atomic renames, which the kernel's ext driver gives exactly.
// The mount lives in a mount namespace private to one locked OS thread
// that exists only for this purpose: the host's mount table never sees
// it, and if the process dies the namespace, the mount and (through
// LO_FLAGS_AUTOCLEAR) the loop device go with it. Work on the mounted tree
// goes through an os.Root opened inside the namespace; its file
// descriptor keeps working from every other thread.

// mounted is an image mounted in a private namespace.
type mounted struct {
	img     string
	mnt     string // host-side mount point directory, removed by Close
	dir     *target.Dir
	root    *os.Root // the same tree as dir, for package-internal walks
	release chan struct{}
	done    chan error
	closed  bool
}

// mountImage loop-mounts img (read-only with ro) and opens its root.
// Close always unmounts.
func mountImage(ctx context.Context, img string, ro bool) (*mounted, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("mount %s: needs root (loop devices and mounts): %w", img, ErrUnsupported)
	}
	abs, err := filepath.Abs(img)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", img, err)
	}
	if dev := loopOf(abs); dev != "" {
		return nil, fmt.Errorf("mount %s: attached to %s (a running guest?): %w", img, dev, ErrBusy)
	}
	mnt, err := os.MkdirTemp("", "tinyfarm-mnt-")
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", img, err)
	}
	type ready struct {
		dir  *target.Dir
		root *os.Root
		err  error
	}
	readyc := make(chan ready, 1)
	m := &mounted{img: abs, release: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		// Never unlocked: the thread ends with this goroutine, and its
		// mount namespace with it.
		runtime.LockOSThread()
		dir, loop, err := mountPrivate(abs, mnt, ro)
		var root *os.Root
		if err == nil {
			if root, err = os.OpenRoot(mnt); err != nil {
				dir.Close()
				unix.Unmount(mnt, 0)
			}
		}
		readyc <- ready{dir, root, err}
		if err != nil {
			m.done <- err
			return
		}
		<-m.release
		var uerr error
		for i := 0; i < 50; i++ {
			if uerr = unix.Unmount(mnt, 0); uerr != unix.EBUSY {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if uerr != nil {
			uerr = fmt.Errorf("unmount %s: %w", img, uerr)
		}
		waitLoopFree(loop)
		m.done <- uerr
	}()
	r := <-readyc
	if r.err != nil {
		<-m.done
		os.Remove(mnt)
		return nil, fmt.Errorf("mount %s: %w", img, r.err)
	}
	m.dir, m.root = r.dir, r.root
	m.mnt = mnt
	return m, nil
}

// Close closes the root, unmounts and waits for the loop device to be
// released. It is safe to call twice.
func (m *mounted) Close() error {
	if m.closed {
		return nil
	}
	m.closed = true
	m.dir.Close()
	m.root.Close()
	close(m.release)
	err := <-m.done
	// Only now: removing a directory that is a mount point in another
	// namespace would detach that mount.
	os.Remove(m.mnt)
	return err
}

// mountPrivate runs on a locked thread: new private mount namespace, loop
// device with autoclear, mount, os.Root. It returns the loop device name.
func mountPrivate(img, mnt string, ro bool) (*target.Dir, string, error) {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return nil, "", fmt.Errorf("unshare mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, "", fmt.Errorf("make mounts private: %w", err)
	}
	dev, lf, err := attachLoop(img, ro)
	if err != nil {
		return nil, "", err
	}
	// Autoclear fires on the device's last close: keep this descriptor
	// open until the mount holds the device.
	defer lf.Close()
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if ro {
		flags |= unix.MS_RDONLY
	}
	var merr error
	for _, fstype := range []string{"ext4", "ext3", "ext2"} {
		if merr = unix.Mount(dev, mnt, fstype, flags, ""); merr == nil {
			break
		}
	}
	if merr != nil {
		return nil, dev, fmt.Errorf("mount %s on %s: %w", dev, mnt, merr)
	}
	d, err := target.OpenDir(mnt, target.DirOptions{AllowDevices: true})
	if err != nil {
		unix.Unmount(mnt, 0)
		return nil, dev, err
	}
	return d, dev, nil
}

// attachLoop binds img to a free loop device with LO_FLAGS_AUTOCLEAR (the
// device detaches when the filesystem on it is unmounted) and returns its
// path and an open descriptor of it, which the caller closes once the
// device is in use (closing the last one detaches an autoclear device).
func attachLoop(img string, ro bool) (string, *os.File, error) {
	flag := os.O_RDWR
	if ro {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(img, flag, 0)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", nil, fmt.Errorf("loop-control: %w", err)
	}
	defer ctl.Close()
	for attempt := 0; attempt < 20; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", nil, fmt.Errorf("loop-control: get free: %w", err)
		}
		dev := "/dev/loop" + strconv.Itoa(n)
		lf, err := os.OpenFile(dev, flag, 0)
		if err != nil {
			return "", nil, fmt.Errorf("open %s: %w", dev, err)
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		if ro {
			cfg.Info.Flags |= unix.LO_FLAGS_READ_ONLY
		}
		copy(cfg.Info.File_name[:], img)
		err = unix.IoctlLoopConfigure(int(lf.Fd()), &cfg)
		if err == nil {
			return dev, lf, nil
		}
		lf.Close()
		if !errors.Is(err, unix.EBUSY) {
			return "", nil, fmt.Errorf("configure %s: %w", dev, err)
		}
		// Another process took it between GET_FREE and CONFIGURE.
	}
	return "", nil, fmt.Errorf("no free loop device: %w", ErrBusy)
}

// loopOf returns the loop device img is attached to, or "". A file that
// does not exist is attached to none (a loop device whose file was
// deleted names it "... (deleted)"), so a new image costs no scan of the
// host's loop devices (there may be hundreds).
func loopOf(img string) string {
	if _, err := os.Lstat(img); errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	ents, _ := os.ReadDir("/sys/block")
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "loop") {
			continue
		}
		b, err := os.ReadFile("/sys/block/" + e.Name() + "/loop/backing_file")
		if err == nil && strings.TrimSpace(string(b)) == img {
			return "/dev/" + e.Name()
		}
	}
	return ""
}

// waitLoopFree waits (up to 2 s) for an autoclear loop device to detach,
// so that callers see `losetup -a` clean when Close returns.
func waitLoopFree(dev string) {
	if dev == "" {
		return
	}
	bf := "/sys/block/" + filepath.Base(dev) + "/loop/backing_file"
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(bf); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Edit mounts the disk image at path read-write (a loop mount in a private
// mount namespace, see above), calls fn with its root as a target, and
// always unmounts, even when fn fails or panics. The target is valid only
// during fn. Needs root; an image attached to a loop device already (a
// running guest) is refused with ErrBusy. When the image has a Build
// sidecar, the sidecar is updated so that a later Build with the same
// inputs keeps the edited image (it rebuilds, dropping the edits, only
// when the inputs change).
func Edit(ctx context.Context, path string, fn func(t target.Target) error) (err error) {
	return edit(ctx, path, false, fn)
}

// View is Edit with a read-only mount, for inspecting a disk.
func View(ctx context.Context, path string, fn func(t target.Target) error) error {
	return edit(ctx, path, true, fn)
}

func edit(ctx context.Context, path string, ro bool, fn func(t target.Target) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	abs, _ := filepath.Abs(path)
	sc, serr := readSidecar(abs)
	track := serr == nil && sc.fresh(abs) && !ro
	m, err := mountImage(ctx, path, ro)
	if err != nil {
		return fmt.Errorf("image edit %s: %w", path, err)
	}
	defer func() {
		if cerr := m.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("image edit %s: %w", path, cerr)
		}
		if err == nil && track {
			sc.Edited = true
			if werr := writeSidecar(m.img, sc); werr != nil {
				err = fmt.Errorf("image edit %s: sidecar: %w", path, werr)
			}
		}
	}()
	return fn(m.dir)
}
