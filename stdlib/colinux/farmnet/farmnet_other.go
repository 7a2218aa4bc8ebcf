//go:build !linux

package farmnet

import (
	"context"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// Main is a no-op off Linux.
func Main() {}

// AttachTap needs Linux.
func AttachTap(ctx context.Context, s TapSpec) (string, error) {
	return "", driver.Unsupported("qemu", "bridge networking", "a tap on the farm bridge needs a Linux host")
}

// DetachTap is a no-op off Linux.
func DetachTap(ctx context.Context, guest, bridge, leases string) error { return nil }

// DHCPRunning is false off Linux.
func DHCPRunning(leases, bridge string) bool { return false }

// LinkExists is false off Linux.
func LinkExists(string) bool { return false }

// DeleteBridge is a no-op off Linux.
func DeleteBridge(string) error { return nil }

// RestoreFarmBridge is a no-op off Linux.
func RestoreFarmBridge(name, gatewayCIDR, owner string) (bool, error) { return false, nil }

// RemoveFarmBridge is a no-op off Linux.
func RemoveFarmBridge(name, owner string) (bool, error) { return false, nil }
