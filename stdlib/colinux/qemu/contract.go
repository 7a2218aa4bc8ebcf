package qemu

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// What the qemu driver offers the colinux module beyond Start and Attach
// (see the optional interfaces in package driver).
var (
	_ driver.SpecChecker  = (*Runner)(nil)
	_ driver.Sharer       = (*Runner)(nil)
	_ driver.InitrdBooter = (*Runner)(nil)
	_ driver.Restorer     = (*Runner)(nil)
	_ driver.LiveTarget   = (*Runner)(nil)
	_ driver.Configurer   = (*Runner)(nil)

	_ driver.Suspender    = (*Guest)(nil)
	_ driver.Checkpointer = (*Guest)(nil)
	_ driver.LiveSource   = (*Guest)(nil)
	_ driver.Announcer    = (*Guest)(nil)
	_ driver.OwnKernel    = (*Guest)(nil)
	_ driver.ShareMounter = (*Guest)(nil)
)

// CheckSpec: a VM needs a kernel; on the farm bridge it gets its address
// by DHCP from the farm, so nodhcp would leave it without one.
func (r *Runner) CheckSpec(s driver.Spec) error {
	if err := driver.CheckVMSpec("qemu", s); err != nil {
		return err
	}
	if s.Net.Mode == "bridge" && slices.Contains(strings.Fields(s.Bootcodes), "nodhcp") {
		return fmt.Errorf("a qemu guest on the bridge gets its address by DHCP from the farm: remove nodhcp from bootcodes")
	}
	return nil
}

// ReleaseKernel: a frugal qemu guest boots the release's kernel
// (vmlinuz64, a bzImage: the pc machine) with the core as its initrd,
// Tiny Core's own frugal boot.
func (r *Runner) ReleaseKernel() bool { return true }

// CheckState: QEMU's migration stream starts with "QEVM" and version 3.
func (r *Runner) CheckState(file string) error {
	fh, err := os.Open(file)
	if err != nil {
		return err
	}
	defer fh.Close()
	head := make([]byte, 8)
	if _, err := io.ReadFull(fh, head); err != nil || !bytes.Equal(head, []byte{'Q', 'E', 'V', 'M', 0, 0, 0, 3}) {
		return fmt.Errorf("not a QEMU machine state")
	}
	return nil
}

// Restore is RestoreGuest as the driver contract has it.
func (r *Runner) Restore(ctx context.Context, spec driver.Spec, file string) (driver.Guest, error) {
	g, err := r.RestoreGuest(ctx, spec, file)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// StartIncoming is StartIncomingGuest as the driver contract has it.
func (r *Runner) StartIncoming(ctx context.Context, spec driver.Spec, uri string) (driver.Guest, error) {
	g, err := r.StartIncomingGuest(ctx, spec, uri)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// Announce: QMP announce-self, gratuitous ARPs from the guest's NICs
// (QEMU sends one after an incoming migration too; harmless with
// user-mode networking).
func (g *Guest) Announce(ctx context.Context) error {
	return g.Command(ctx, "announce-self", map[string]any{"initial": 50, "max": 550, "rounds": 5, "step": 100}, nil)
}

// OwnKernel: a VM shuts down cleanly by its own poweroff (microvm has no
// ACPI button) and keeps unwritten data in its own page cache.
func (g *Guest) OwnKernel() {}
