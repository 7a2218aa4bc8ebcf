package colinuxd

import (
	"errors"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// What the colinux driver tells the colinux module beyond Start and
// Attach (see the optional interfaces in package driver).
var (
	_ driver.SpecChecker  = (*Runner)(nil)
	_ driver.Sharer       = (*Runner)(nil)
	_ driver.InitrdBooter = (*Runner)(nil)
)

// CheckSpec: a coLinux guest boots coLinux's own kernel and reaches the
// network through slirp (user mode) only.
func (r *Runner) CheckSpec(s driver.Spec) error {
	if err := driver.CheckVMSpec("colinux", s); err != nil {
		return err
	}
	if s.Net.Mode == "bridge" {
		return errors.New("the colinux driver has no bridge networking: set net = \"user\"")
	}
	return nil
}

// ShareMethod: a share is a cofs device in the conf.
func (r *Runner) ShareMethod() string { return "cofsN= in the coLinux conf at guest start" }

// ReleaseKernel: a frugal coLinux guest gets the core as its initrd (its
// conf's initrd=…/core.gz); its kernel is coLinux's own vmlinux, never
// the release's.
func (r *Runner) ReleaseKernel() bool { return false }
