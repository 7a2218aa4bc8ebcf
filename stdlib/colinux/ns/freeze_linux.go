package ns

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

var (
	_ driver.FSFreezer = (*guest)(nil)
	_ driver.Execer    = (*guest)(nil)
	_ driver.Suspender = (*guest)(nil)
)

// CheckHost: namespace guests need root (cgroups, mounts, veths).
func (r *Runner) CheckHost() error {
	if unix.Geteuid() != 0 {
		return driver.Unsupported("ns", "running guests", "namespace guests need root")
	}
	return nil
}

// FIFREEZE and FITHAW are _IOWR('X', 119, int) and _IOWR('X', 120, int).
const (
	ioctlFIFREEZE = 0xc0045877
	ioctlFITHAW   = 0xc0045878
)

// FreezeFS flushes and freezes the file system holding the root of the
// guest's init (its disk, mounted only in its namespace), so a copy of
// its image is clean. A guest that does not run has nothing to freeze.
func (g *guest) FreezeFS(ctx context.Context) (func(), error) {
	rt, err := g.runtime()
	if err != nil || !rt.alive() || g.spec.Layout != driver.Scatter {
		return func() {}, nil
	}
	return freezeRoot(rt.InitPID)
}

// freezeRoot freezes the file system holding the root of process pid;
// the returned function thaws it.
func freezeRoot(pid int) (func(), error) {
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("freeze filesystem: %w", err)
	}
	if _, err := unix.IoctlGetInt(fd, ioctlFIFREEZE); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("freeze filesystem: %w", err)
	}
	return func() {
		unix.IoctlGetInt(fd, ioctlFITHAW)
		unix.Close(fd)
	}, nil
}

// ThawFS thaws the root file system of the guest's init, frozen by a
// FreezeFS whose caller was killed. Not frozen (EINVAL) is fine.
func (g *guest) ThawFS(ctx context.Context) error {
	rt, err := g.runtime()
	if err != nil || !rt.alive() || g.spec.Layout != driver.Scatter {
		return nil
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/root", rt.InitPID), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("thaw filesystem: %w", err)
	}
	defer unix.Close(fd)
	if _, err := unix.IoctlGetInt(fd, ioctlFITHAW); err != nil && err != unix.EINVAL {
		return fmt.Errorf("thaw filesystem: %w", err)
	}
	return nil
}
