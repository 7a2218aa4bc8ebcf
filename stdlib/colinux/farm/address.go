package farm

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// BridgeIdentityProblem says why guest name cannot have the bridge
// address ip and MAC mac here ("" when it can): the address is outside
// this farm's subnet, or another guest has the address or the MAC.
func (f *Farm) BridgeIdentityProblem(name, ip, mac string) string {
	addr, _, err := net.ParseCIDR(ip)
	if err != nil {
		return fmt.Sprintf("address %q is not an address with a prefix", ip)
	}
	if _, subnet, err := net.ParseCIDR(f.opts.Subnet); err != nil || !subnet.Contains(addr) || ip != addr.String()+"/"+strings.SplitN(f.opts.Subnet, "/", 2)[1] {
		return fmt.Sprintf("%s is not an address of this farm's subnet %s", ip, f.opts.Subnet)
	}
	return f.identityTaken(name, addr, mac)
}

// KeptAddressProblem is BridgeIdentityProblem for a bridged VM moving
// here live, which keeps its address and MAC (they are in its memory):
// an address of this farm's subnet must be free here; an address of
// another subnet (another host's farm: a cluster gives every host its
// own) is kept as a foreign one (Definition.Gateway), which needs that
// subnet to be nowhere on this host (not overlapping the farm's, on no
// other interface) and the address and MAC to be no other guest's.
func (f *Farm) KeptAddressProblem(name, ip, mac string) string {
	addr, ipnet, err := net.ParseCIDR(ip)
	if err != nil || addr.To4() == nil {
		return fmt.Sprintf("address %q is not an IPv4 address with a prefix", ip)
	}
	_, subnet, err := net.ParseCIDR(f.opts.Subnet)
	if err != nil {
		return fmt.Sprintf("this farm's subnet %q: %v", f.opts.Subnet, err)
	}
	if subnet.Contains(addr) {
		return f.BridgeIdentityProblem(name, ip, mac)
	}
	if ipnet.Contains(subnet.IP) {
		return fmt.Sprintf("its subnet %s overlaps this farm's subnet %s", ipnet, f.opts.Subnet)
	}
	if ifc, a := hostAddressIn(ipnet, f.opts.Bridge); ifc != "" {
		return fmt.Sprintf("its subnet %s is this host's own network (%s on %s)", ipnet, a, ifc)
	}
	return f.identityTaken(name, addr, mac)
}

// identityTaken says which other guest here has the address addr or the
// MAC mac, or "".
func (f *Farm) identityTaken(name string, addr net.IP, mac string) string {
	all, err := f.List()
	if err != nil {
		return err.Error()
	}
	for _, o := range all {
		if o.Name == name {
			continue
		}
		if oa, _, err := net.ParseCIDR(o.IP); err == nil && oa.Equal(addr) {
			return fmt.Sprintf("%s is guest %s's here", o.IP, o.Name)
		}
		if strings.EqualFold(o.MAC, mac) {
			return fmt.Sprintf("MAC %s is guest %s's here", mac, o.Name)
		}
	}
	return ""
}

// hostAddressIn is an interface other than bridge with an address in
// ipnet, and that address; "" when none.
func hostAddressIn(ipnet *net.IPNet, bridge string) (string, string) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", ""
	}
	for _, ifc := range ifs {
		if ifc.Name == bridge {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipnet.Contains(ipn.IP) {
				return ifc.Name, ipn.String()
			}
		}
	}
	return "", ""
}

// keptGateway checks and settles d.Gateway (see Definition.Gateway): an
// address of this farm's subnet needs none (the farm's own gateway is
// dropped: a guest that moved back home), a foreign one needs a gateway
// of its own subnet, which a redefinition with the same address keeps
// from old. Callers hold the lock.
func (f *Farm) keptGateway(d, old *Definition) error {
	if d.Gateway == "" && old != nil && old.IP == d.IP {
		d.Gateway = old.Gateway
	}
	if d.Gateway == "" {
		return nil
	}
	addr, ipnet, err := net.ParseCIDR(d.IP)
	gw := net.ParseIP(d.Gateway)
	if err != nil || d.Net != "bridge" || gw == nil || !ipnet.Contains(gw) || gw.Equal(addr) {
		return fmt.Errorf("guest %s: gateway %s: a kept gateway is for a bridged guest, an address of its subnet (ip %s): %w", d.Name, d.Gateway, d.IP, ErrInvalid)
	}
	if _, subnet, err := net.ParseCIDR(f.opts.Subnet); err == nil && subnet.Contains(addr) {
		if !gw.Equal(net.ParseIP(f.Gateway())) {
			return fmt.Errorf("guest %s: gateway %s: ip %s is of this farm's subnet, whose gateway is %s: %w", d.Name, d.Gateway, d.IP, f.Gateway(), ErrInvalid)
		}
		d.Gateway = ""
	}
	return nil
}

func hasForward(fs []driver.Forward, guestPort int) bool {
	for _, f := range fs {
		if f.GuestPort == guestPort {
			return true
		}
	}
	return false
}

// freeHostPort is the lowest host port from start that no other guest
// forwards and nothing listens on now. Callers hold the lock.
func (f *Farm) freeHostPort(name string, start int) (int, error) {
	used := map[int]bool{}
	all, err := f.List()
	if err != nil {
		return 0, err
	}
	for _, o := range all {
		if o.Name == name {
			continue
		}
		for _, fw := range o.Forwards {
			used[fw.HostPort] = true
		}
	}
	for p := start; p < start+1000; p++ {
		if used[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ln.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no free host port from %d for guest %s's SSH forward: set forward = {[PORT] = 22}", start, name)
}

// allocIP picks the lowest free address of the farm subnet (.2 up).
// Callers hold the lock.
func (f *Farm) allocIP(name string) (string, error) {
	_, ipnet, err := net.ParseCIDR(f.opts.Subnet)
	if err != nil {
		return "", fmt.Errorf("farm subnet %q: %w", f.opts.Subnet, err)
	}
	ones, bits := ipnet.Mask.Size()
	used := map[string]bool{}
	all, err := f.List()
	if err != nil {
		return "", err
	}
	for _, o := range all {
		if o.Name != name && o.IP != "" {
			ip, _, _ := net.ParseCIDR(o.IP)
			used[ip.String()] = true
		}
	}
	base := ipnet.IP.To4()
	size := 1 << (bits - ones)
	for i := 2; i < size-1; i++ {
		ip := make(net.IP, 4)
		copy(ip, base)
		n := uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3]) + uint32(i)
		ip = net.IPv4(byte(n>>24), byte(n>>16), byte(n>>8), byte(n)).To4()
		if !used[ip.String()] {
			return fmt.Sprintf("%s/%d", ip, ones), nil
		}
	}
	return "", fmt.Errorf("farm subnet %s is full: destroy a guest, or use a state dir whose farm has a larger subnet (colinux.network{subnet = ...})", f.opts.Subnet)
}

// Gateway is the host's address on the farm bridge (.1 of the subnet).
func (f *Farm) Gateway() string {
	_, ipnet, err := net.ParseCIDR(f.opts.Subnet)
	if err != nil {
		return ""
	}
	ip := ipnet.IP.To4()
	return net.IPv4(ip[0], ip[1], ip[2], ip[3]+1).String()
}
