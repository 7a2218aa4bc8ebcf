package guesttest

import (
	"context"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
)

// QemuGuest defines def in farm as a qemu guest of the mini release on a
// fresh SSH disk (root login with the farm key of state), starts it and
// waits until it answers SSH. Fields def leaves empty get the release's
// kernel and modules initrd, the disk, its pinned host key and user root.
// The guest is destroyed at the end of the test. It returns the guest and
// the boot-to-SSH-ready time.
func QemuGuest(tb testing.TB, fm *farm.Farm, state string, def farm.Definition) (*farm.Guest, time.Duration) {
	tb.Helper()
	return QemuGuestWith(tb, fm, state, def, QemuOptions{})
}

// QemuOptions adjust QemuGuestWith.
type QemuOptions struct {
	// BeforeStart runs on the defined guest before its first start, e.g.
	// to share host directories into it. Default nil: nothing.
	BeforeStart func(g *farm.Guest)
}

// QemuGuestWith is QemuGuest with options.
func QemuGuestWith(tb testing.TB, fm *farm.Farm, state string, def farm.Definition, o QemuOptions) (*farm.Guest, time.Duration) {
	tb.Helper()
	rel := Release(tb)
	ctx := context.Background()
	disk := BuildDisk(tb, Options{SSH: true, StateDir: state})
	def.Driver = "qemu"
	if def.Disk == "" {
		def.Disk, def.HostKey = disk.Path, disk.HostKey
	}
	if def.Kernel == "" {
		def.Kernel, def.Initrds = rel.Vmlinux, []string{rel.ModulesInitrd}
	}
	if def.User == "" {
		def.User = "root"
	}
	if def.CPUs == 0 {
		def.CPUs = 1
	}
	if _, err := fm.Define(def, farm.ChangeOptions{}); err != nil {
		tb.Fatal(err)
	}
	g, err := fm.Guest(ctx, def.Name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { g.Destroy(context.Background(), false) })
	if o.BeforeStart != nil {
		o.BeforeStart(g)
	}
	t0 := time.Now()
	if _, err := g.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := g.WaitReady(ctx, 90*time.Second); err != nil {
		tb.Fatal(err)
	}
	return g, time.Since(t0)
}
