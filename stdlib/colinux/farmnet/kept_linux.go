package farmnet

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Kept addresses. A bridged VM that moves live from another host's farm
// keeps its address, its netmask and its gateway: they are in its memory
// (and udhcpc renews the lease it has). In a cluster every host's farm
// has a subnet of its own, so the address is foreign here. The bridge
// makes it work as the VM expects, without touching the VM:
//
//   - the VM's old gateway address is added to the bridge as a /32 (no
//     route for the VM's subnet comes with it: that subnet is another
//     host's), so the bridge answers the VM's ARP for its gateway and its
//     DHCP renewals, which go to that address;
//   - a /32 route to the VM's address over the bridge, with the old
//     gateway as its source: the host reaches the VM (the proxy, SSH), and
//     its first ARP to the VM, sent from the gateway address with the
//     bridge's MAC, replaces the VM's stale neighbour entry for its
//     gateway (the old host's bridge MAC; Linux updates an entry from any
//     ARP request addressed to it, arp_process -> neigh_event_ns);
//   - the port filter needs nothing more: it allows the VM its own
//     address, whatever it is (the port's alias), and the host's INPUT
//     guard is per bridge.
//
// Routes carry protocol keptProto; both they and the /32 addresses are
// removed (pruneKept) once no guest port on the bridge has the address.
// The DHCP server answers such a guest as its old farm did (Lease.Server).

// keptProto marks the routes to kept addresses (rtnetlink protocol; 116
// is 't', unassigned in iproute2's rt_protos).
const keptProto = netlink.RouteProtocol(116)

// keepAddress makes the bridge answer for gw (the guest's own gateway)
// and route ip over it.
func keepAddress(br netlink.Link, ip, gw net.IP) error {
	unlock, err := lockPorts()
	if err != nil {
		return err
	}
	defer unlock()
	name := br.Attrs().Name
	a := &netlink.Addr{IPNet: &net.IPNet{IP: gw.To4(), Mask: net.CIDRMask(32, 32)}}
	if err := netlink.AddrAdd(br, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("bridge %s: add the kept gateway %s: %w", name, gw, err)
	}
	rt := &netlink.Route{LinkIndex: br.Attrs().Index, Dst: &net.IPNet{IP: ip.To4(), Mask: net.CIDRMask(32, 32)},
		Src: gw.To4(), Scope: netlink.SCOPE_LINK, Protocol: keptProto}
	if err := netlink.RouteReplace(rt); err != nil {
		return fmt.Errorf("bridge %s: route the kept address %s: %w", name, ip, err)
	}
	return nil
}

// pruneKept removes the kept-address routes of the bridge whose address
// no guest port on it has any more, then the /32 gateway addresses no
// remaining route uses.
func pruneKept(bridge string) error {
	unlock, err := lockPorts()
	if err != nil {
		return err
	}
	defer unlock()
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil // gone with its routes and addresses
	}
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("bridge %s: list ports: %w", bridge, err)
	}
	have := map[string]bool{}
	for _, l := range links {
		if l.Attrs().MasterIndex != br.Attrs().Index {
			continue
		}
		if p, ok := parsePortAlias(l.Attrs().Name, l.Attrs().Alias); ok {
			have[p.IP.String()] = true
		}
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: br.Attrs().Index, Protocol: keptProto},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("bridge %s: list routes: %w", bridge, err)
	}
	used := map[string]bool{}
	var errs []error
	for _, rt := range routes {
		if rt.Dst != nil && have[rt.Dst.IP.String()] {
			used[rt.Src.String()] = true
			continue
		}
		if err := netlink.RouteDel(&rt); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("bridge %s: remove the route to %s: %w", bridge, rt.Dst, err))
		}
	}
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	for _, a := range addrs {
		if ones, _ := a.Mask.Size(); ones != 32 || used[a.IP.String()] {
			continue // the farm's own gateway (its subnet's prefix), or in use
		}
		if err := netlink.AddrDel(br, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("bridge %s: remove the kept gateway %s: %w", bridge, a.IP, err))
		}
	}
	return errors.Join(errs...)
}
