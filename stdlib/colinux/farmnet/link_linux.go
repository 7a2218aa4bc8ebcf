package farmnet

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EnsureBridge creates the farm bridge with the gateway address
// (gatewayCIDR, e.g. "10.77.0.1/24") if it is missing, and brings it up.
// Idempotent.
func EnsureBridge(name, gatewayCIDR string) (netlink.Link, error) {
	br, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("bridge %s: %w", name, err)
		}
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("bridge %s: create: %w", name, err)
		}
		if br, err = netlink.LinkByName(name); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", name, err)
		}
	}
	addr, err := netlink.ParseAddr(gatewayCIDR)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: gateway %q: %w", name, gatewayCIDR, err)
	}
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	has := false
	for _, a := range addrs {
		if a.IPNet.String() == addr.IPNet.String() {
			has = true
		}
	}
	if !has {
		if err := netlink.AddrAdd(br, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("bridge %s: add %s: %w", name, gatewayCIDR, err)
		}
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("bridge %s: up: %w", name, err)
	}
	if err := guardHost(name); err != nil {
		return nil, err
	}
	return br, nil
}

// DeleteBridge removes a farm bridge (tests remove the one they made); a
// missing bridge is fine.
func DeleteBridge(name string) error {
	unguardHost(name)
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("bridge %s: delete: %w", name, err)
	}
	return nil
}

// DeleteLink removes a network interface; a missing one is fine.
func DeleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("link %s: delete: %w", name, err)
	}
	return nil
}

// LinkExists reports whether a network interface is present.
func LinkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// createTap makes the persistent tap device name (IFF_NO_PI and
// IFF_VNET_HDR, as QEMU opens it) on the bridge and brings it up. A tap
// of the same name left by a guest killed mid-start is replaced.
func createTap(name string, br netlink.Link) error {
	if err := DeleteLink(name); err != nil {
		return err
	}
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: name, MasterIndex: br.Attrs().Index},
		Mode:      netlink.TUNTAP_MODE_TAP,
		Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
	}
	if err := netlink.LinkAdd(tap); err != nil {
		return fmt.Errorf("tap %s: create: %w", name, err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tap %s: %w", name, err)
	}
	if err := IsolatePort(l); err != nil {
		DeleteLink(name)
		return err
	}
	if err := netlink.LinkSetUp(l); err != nil {
		DeleteLink(name)
		return fmt.Errorf("tap %s: up: %w", name, err)
	}
	return nil
}

// tapsOn counts the qemu guest taps plugged into the bridge; ok is false
// when the bridge is gone.
func tapsOn(bridge string) (n int, ok bool) {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return 0, false
	}
	links, err := netlink.LinkList()
	if err != nil {
		return 1, true // unsure: count as busy
	}
	for _, l := range links {
		a := l.Attrs()
		if a.MasterIndex == br.Attrs().Index && strings.HasPrefix(a.Name, TapPrefix) {
			n++
		}
	}
	return n, true
}
