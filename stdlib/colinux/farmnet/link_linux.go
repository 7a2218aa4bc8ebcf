package farmnet

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EnsureBridge creates the farm bridge with the gateway address
// (gatewayCIDR, e.g. "10.77.0.1/24") if it is missing, and brings it up.
// Idempotent.
func EnsureBridge(name, gatewayCIDR string) (netlink.Link, error) {
	return EnsureFarmBridge(name, gatewayCIDR, "")
}

// EnsureFarmBridge is EnsureBridge for the farm whose guests directory is
// owner: the bridge is marked as that farm's (its interface alias), and a
// bridge another farm's guests are on is refused, so two state dirs
// cannot hand out the same addresses on one segment. A bridge with no
// ports, or whose farm's directory is gone, is taken over.
func EnsureFarmBridge(name, gatewayCIDR, owner string) (netlink.Link, error) {
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
	if err := pinBridgeMAC(br); err != nil {
		return nil, err
	}
	if owner != "" {
		if err := claimBridge(br, owner); err != nil {
			return nil, err
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
	// Before it comes up: no moment with a link-local address or
	// accept_ra. Bridges made by an earlier tinyfarm get the same.
	if err := noIPv6(name); err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("bridge %s: up: %w", name, err)
	}
	if err := guardHost(name); err != nil {
		return nil, err
	}
	return br, nil
}

// pinBridgeMAC gives the bridge a fixed MAC address. A Linux bridge whose
// address was never set takes the lowest MAC among its ports, so it
// changes when a guest's veth or tap joins; guests that had resolved the
// gateway then send to the old address, which the bridge drops as meant
// for another host, until their ARP entry expires: SSH handshakes hung
// for 10 s when many guests started at once. Setting the address (to the
// one it has) makes it stay. Bridges made by an earlier tinyfarm are
// pinned the same way.
func pinBridgeMAC(br netlink.Link) error {
	name := br.Attrs().Name
	b, err := os.ReadFile("/sys/class/net/" + name + "/addr_assign_type")
	if err == nil && strings.TrimSpace(string(b)) == "3" { // NET_ADDR_SET
		return nil
	}
	mac := br.Attrs().HardwareAddr
	if len(mac) != 6 || bytes.Equal(mac, make(net.HardwareAddr, 6)) {
		h := sha256.Sum256([]byte(name))
		mac = net.HardwareAddr{0x02, 0x74, 0x66, 0xfe, h[0], h[1]} // locally administered
	}
	if err := netlink.LinkSetHardwareAddr(br, mac); err != nil {
		return fmt.Errorf("bridge %s: set its MAC address: %w", name, err)
	}
	return nil
}

// bridgeOwnerPrefix starts the alias that names a bridge's farm.
const bridgeOwnerPrefix = "tinyfarm farm "

// BridgeOwner is the guests directory of the farm that marked the bridge
// as its own, or "".
func BridgeOwner(name string) string {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return ""
	}
	o, _ := strings.CutPrefix(l.Attrs().Alias, bridgeOwnerPrefix)
	return o
}

func claimBridge(br netlink.Link, owner string) error {
	name := br.Attrs().Name
	cur, marked := strings.CutPrefix(br.Attrs().Alias, bridgeOwnerPrefix)
	if marked && cur == owner {
		return nil
	}
	if marked {
		ports, _ := os.ReadDir("/sys/class/net/" + name + "/brif")
		if _, err := os.Stat(cur); err == nil && len(ports) > 0 {
			return fmt.Errorf("bridge %s belongs to the farm in %s, whose guests are on it: give this farm a network of its own with colinux.network{bridge = ..., subnet = ...}",
				name, filepath.Dir(cur))
		}
	}
	if err := netlink.LinkSetAlias(br, bridgeOwnerPrefix+owner); err != nil {
		return fmt.Errorf("bridge %s: mark it as the farm's: %w", name, err)
	}
	return nil
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
	// Its ports left it: their filters go (the table with the last one).
	unlock, err := lockPorts()
	if err != nil {
		return err
	}
	defer unlock()
	return rebuildPorts()
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

// createTap makes the persistent tap device p.Name (IFF_NO_PI and
// IFF_VNET_HDR, as QEMU opens it) on the bridge, guards it (GuardPort) and
// brings it up. A tap of the same name left by a guest killed mid-start
// is replaced.
func createTap(p Port, br netlink.Link) error {
	name := p.Name
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
	if err := GuardPort(p); err != nil {
		DeletePort(name)
		return err
	}
	if err := netlink.LinkSetUp(l); err != nil {
		DeletePort(name)
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
