package qemu

import (
	"context"
	"fmt"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
)

// attachNet puts a bridge-mode guest's tap on the farm bridge and makes
// sure the farm DHCP server runs (see farmnet). Other modes need nothing.
func (r *Runner) attachNet(ctx context.Context, spec driver.Spec) error {
	if spec.Net.Mode != "bridge" {
		return nil
	}
	if spec.Net.Leases == "" {
		return fmt.Errorf("net bridge: no lease directory for the farm DHCP server (Spec.Net.Leases)")
	}
	mac, err := guestMAC(spec)
	if err != nil {
		return fmt.Errorf("net bridge: %w", err)
	}
	_, err = farmnet.AttachTap(ctx, farmnet.TapSpec{
		Guest: spec.Instance(), Bridge: spec.Net.Bridge, IP: spec.Net.IP, Gateway: spec.Net.Gateway,
		MAC: mac, Leases: spec.Net.Leases, Exe: r.Exe, Subnet: spec.Net.Subnet, KeptGateway: spec.Net.KeptGateway,
	})
	return err
}

// detachNet removes a bridge-mode guest's tap (and so, with the last one,
// the farm DHCP server). It runs whenever a run's resources are released:
// Stop, a reaped guest, a failed start, and the first Status or Stop that
// finds QEMU gone (after tinyfarm was killed, say).
func detachNet(ctx context.Context, spec driver.Spec) error {
	if spec.Net.Mode != "bridge" {
		return nil
	}
	return farmnet.DetachTap(context.WithoutCancel(ctx), spec.Instance(), spec.Net.Bridge, spec.Net.Leases)
}
