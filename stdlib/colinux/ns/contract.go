package ns

import (
	"context"
	"os/exec"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// What the ns driver tells the colinux module beyond Start and Attach
// (see the optional interfaces in package driver).
var (
	_ driver.SpecChecker = (*Runner)(nil)
	_ driver.Defaulter   = (*Runner)(nil)
	_ driver.HostChecker = (*Runner)(nil)
	_ driver.Explainer   = (*Runner)(nil)
	_ driver.Sharer      = (*Runner)(nil)
	_ driver.Overheader  = (*Runner)(nil)
)

// CheckSpec refuses what the ns driver cannot run, when the guest is
// defined rather than when its monitor fails: frugal guests (the monitor
// has no frugal root yet: see frugalRoot).
func (r *Runner) CheckSpec(s driver.Spec) error {
	if s.Layout == driver.Frugal {
		return driver.Unsupported("ns", "frugal guests",
			"a namespace guest runs its disk's root file system; build a scatter disk (image.build's default layout), or use the qemu driver, which boots frugal disks")
	}
	return nil
}

// Defaults: namespace guests sit on the farm bridge, and run in a user
// namespace (guest root an unprivileged host uid) where the platform
// allows it (scatter disks; frugal guests have no such mode).
func (r *Runner) Defaults(layout driver.Layout) driver.Defaults {
	return driver.Defaults{Net: "bridge", UserNS: (layout == "" || layout == driver.Scatter) && UserNSAvailable()}
}

// ShareMethod: a share is a bind mount into the guest's mount namespace.
func (r *Runner) ShareMethod() string { return "bind mount at guest start" }

// WhyUnsupported explains the abilities namespace guests lack: both
// would move a guest's processes, which needs CRIU.
func (r *Runner) WhyUnsupported(ctx context.Context, ability string) string {
	switch ability {
	case "checkpoint":
		return criuReason(ctx)
	case "live migration":
		return "a namespace guest's processes cannot be moved (CRIU does not work on this kernel); migrate offline (live = false)"
	}
	return ""
}

// criuReason says why a namespace guest cannot be checkpointed here.
func criuReason(ctx context.Context) string {
	const need = "saving a namespace guest's processes needs CRIU"
	bin, err := exec.LookPath("criu")
	if err != nil {
		return need + ", and criu is not installed (PLATFORM.md: CRIU 3.17.1 fails on kernel 6.18 anyway); use suspend/resume, or the qemu driver, whose VMs checkpoint"
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, bin, "check").CombinedOutput()
	if err != nil {
		return need + ", and `criu check` fails on this kernel: " + lastLineOf(string(out))
	}
	return need + "; criu check passes here, but dumping tinyfarm's namespace guests with it is not implemented yet"
}

func lastLineOf(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// GuestOverhead is the host memory an ns guest takes beyond its memory
// quota: its monitor's own memory (USS) and kernel memory for its
// namespaces, veth, page tables and mounts. Measured by bench/density.sh
// (222 guests running init + dropbear + nginx on a shared base in a 1 GiB
// cgroup, monitors from tinyfarm-guest, settled): monitor 0.9 MiB +
// kernel 1.7 MiB. Rounded up to a quarter MiB.
const GuestOverhead = 11 << 18

// GuestOverhead: see the constant.
func (r *Runner) GuestOverhead() int64 { return GuestOverhead }
