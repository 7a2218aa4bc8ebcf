package farm

import (
	"context"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

// releaseNeeds says what ReleaseDefaults would fill in d.
func (f *Farm) releaseNeeds(d *Definition) (core, kernel, initrd bool) {
	frugal := d.Layout == driver.Frugal
	ib, initrdBoot := f.Backend(d.Driver).(driver.InitrdBooter)
	core = frugal && d.Core == ""
	kernel = frugal && initrdBoot && ib.ReleaseKernel() && d.Kernel == "" && len(d.Initrds) == 0
	initrd = frugal && initrdBoot && !ib.ReleaseKernel() && len(d.Initrds) == 0
	return core, kernel, initrd
}

// NeedsRelease says whether ReleaseDefaults has anything to fill in d.
func (f *Farm) NeedsRelease(d *Definition) bool {
	core, kernel, initrd := f.releaseNeeds(d)
	return core || kernel || initrd
}

// ReleaseDefaults fills what a guest leaves empty from the release on c's
// mirror, as the official mirror names it for its arch (tcz.ReleaseFiles):
// a frugal guest's core (corepure64.gz on x86_64, core.gz on x86), and,
// for a driver that boots the release kernel with the core as its initrd
// (driver.InitrdBooter: qemu), that kernel (vmlinuz64, vmlinuz): Tiny
// Core's own frugal boot (a bzImage has no PVH entry, so qemu boots it on
// the pc machine, not microvm). A driver that brings its own kernel
// (coLinux's vmlinux) gets only the core as its initrd. Scatter guests
// name their kernel themselves. With o.Check nothing is downloaded: a file
// not cached yet is named where it will be.
func (f *Farm) ReleaseDefaults(ctx context.Context, d *Definition, c *tcz.Client, o ChangeOptions) error {
	_, needKernel, needInitrd := f.releaseNeeds(d)
	if !f.NeedsRelease(d) {
		return nil
	}
	rn, err := tcz.ReleaseFiles(c.Config().Arch)
	if err != nil {
		return err
	}
	fetch := func(name string) (string, error) {
		p, _, err := c.FetchRelease(ctx, name, tcz.FetchOptions{Check: o.Check})
		if err != nil {
			return "", err
		}
		if p == "" { // check mode, not cached yet: where it will be
			p = c.ReleaseCachePath(name)
		}
		return p, nil
	}
	if d.Core == "" {
		if d.Core, err = fetch(rn.Core); err != nil {
			return err
		}
	}
	if needKernel {
		if d.Kernel, err = fetch(rn.Kernel); err != nil {
			return err
		}
		d.Initrds = []string{d.Core}
	}
	if needInitrd {
		d.Initrds = []string{d.Core}
	}
	return nil
}
