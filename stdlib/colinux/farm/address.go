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
	all, err := f.List()
	if err != nil {
		return err.Error()
	}
	for _, o := range all {
		if o.Name == name {
			continue
		}
		if o.IP == ip {
			return fmt.Sprintf("%s is guest %s's here", ip, o.Name)
		}
		if strings.EqualFold(o.MAC, mac) {
			return fmt.Sprintf("MAC %s is guest %s's here", mac, o.Name)
		}
	}
	return ""
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
