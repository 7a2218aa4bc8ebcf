// Package farmnet is the host side of the farm network: the farm bridge
// (tfbr0 with the gateway address .1 of the farm subnet), the per-guest
// links on it (ns guests: a veth; qemu guests: a tap), and the farm's DHCP
// server for guests that configure themselves like real Tiny Core does.
//
// # Bridge and taps
//
// EnsureBridge creates the bridge with the gateway address if it is
// missing (the ns driver and the qemu driver share it). A qemu guest with
// Net.Mode "bridge" gets a persistent tap device named TapName(guest)
// ("tq-" + 10 hex digits of a hash of the name: interface names are at
// most 15 bytes) plugged into the bridge; QEMU opens it by name
// (-netdev tap,ifname=...,script=no,downscript=no). AttachTap makes it,
// DetachTap removes it when the guest stops, is reaped, or is found dead
// by a later Status or Stop, so a tinyfarm killed with -9 leaks nothing
// once the guest is looked at again.
//
// # Isolation
//
// Every guest port is an isolated bridge port with an anti-spoofing
// filter (GuardPort: nftables, bridge family), the host guards its INPUT
// from the bridge for IPv4 and IPv6, and IPv6 is off on the bridge and
// the host ends of the ports; guard_linux.go says exactly what passes.
// RebuildGuards puts all of it back from the kernel's own state.
//
// # DHCP
//
// Tiny Core configures its network with udhcpc on every interface. The
// farm answers with static leases only: a guest definition in the state
// directory (<state>/guests/*/guest.json with net = "bridge") maps its MAC
// to its IP; the reply carries that IP, the subnet mask, the gateway as
// router and server identifier, and the guest name as host name. Unknown
// MACs get no answer at all, so the farm never hands out an address to
// anything else on the bridge. The lease logic (ReadLeases, Responder) is
// pure and unit-tested.
//
// The server is this binary re-executed (Main, role "dhcp"), one per
// bridge and state directory, detached in its own session so it outlives
// the tinyfarm that started it, like the guests do. It binds UDP port 67
// on the bridge interface only (SO_BINDTODEVICE), holds an flock on
// <state>/guests/.dhcp-BRIDGE.lock (so at most one runs; the lock file
// holds its PID), logs its replies to .dhcp-BRIDGE.log next to it, and
// re-reads the leases on every request, so new guests need no restart. It
// lives exactly as long as the bridge carries a tap of a qemu guest: it
// checks every second and exits when none is left (DetachTap waits for
// that after removing the last tap). AttachTap starts it when it does not
// run.
//
// # Kept addresses
//
// A qemu guest that moved here live from another host's farm keeps its
// address, of that farm's subnet: the bridge answers for its old gateway
// and routes its address (TapSpec.KeptGateway; see kept_linux.go), and
// the DHCP server answers it as its old farm did (Lease.Server).
package farmnet

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
)

// TapPrefix starts the name of every qemu guest's tap device.
const TapPrefix = "tq-"

// TapName is the host tap device of a qemu guest on the farm bridge.
func TapName(guest string) string {
	h := sha256.Sum256([]byte(guest))
	return TapPrefix + hex.EncodeToString(h[:])[:10]
}

// bridgeCIDR is the farm bridge's own address with its prefix, and the
// guest's gateway when its address is a kept one (else nil).
func (s TapSpec) bridgeCIDR() (string, net.IP, error) {
	if s.KeptGateway == "" {
		cidr, err := GatewayCIDR(s.IP, s.Gateway)
		return cidr, nil, err
	}
	_, subnet, err := net.ParseCIDR(s.Subnet)
	if err != nil {
		return "", nil, fmt.Errorf("farm subnet %q: %w", s.Subnet, err)
	}
	cidr, err := GatewayCIDR(subnet.String(), s.Gateway)
	if err != nil {
		return "", nil, err
	}
	ip, ipnet, err := net.ParseCIDR(s.IP)
	if err != nil {
		return "", nil, fmt.Errorf("guest ip %q: %w", s.IP, err)
	}
	gw := net.ParseIP(s.KeptGateway).To4()
	if gw == nil || !ipnet.Contains(gw) || subnet.Contains(ip) || ipnet.Contains(subnet.IP) {
		return "", nil, fmt.Errorf("kept gateway %q: want an address of the guest's subnet %s, which must not overlap the farm's %s", s.KeptGateway, ipnet, subnet)
	}
	return cidr, gw, nil
}

// GatewayCIDR is the bridge address for a guest address with prefix
// ("10.77.0.5/24") and the gateway ("10.77.0.1"): "10.77.0.1/24".
func GatewayCIDR(guestIP, gateway string) (string, error) {
	_, ipnet, err := net.ParseCIDR(guestIP)
	if err != nil {
		return "", fmt.Errorf("guest ip %q: %w", guestIP, err)
	}
	gw := net.ParseIP(gateway).To4()
	if gw == nil {
		return "", fmt.Errorf("gateway %q: not an IPv4 address", gateway)
	}
	if !ipnet.Contains(gw) {
		return "", fmt.Errorf("gateway %s: not in the guest's subnet %s", gateway, ipnet)
	}
	ones, _ := ipnet.Mask.Size()
	return fmt.Sprintf("%s/%d", gw, ones), nil
}

// TapSpec is what AttachTap needs.
type TapSpec struct {
	Guest   string // guest name
	Bridge  string // farm bridge, e.g. "tfbr0"
	IP      string // guest address with prefix, e.g. "10.77.0.5/24"
	Gateway string // host address on the bridge, e.g. "10.77.0.1"
	MAC     string // the guest's MAC: the port filter lets only it through
	// Subnet and KeptGateway: for a guest whose IP is not of the farm's
	// subnet (kept from another host's farm by a live move), the farm's
	// subnet (the bridge's own address is Gateway in it) and the gateway
	// of the IP's subnet, which the bridge answers for (kept_linux.go).
	Subnet, KeptGateway string
	// Leases is the directory of guest definitions the DHCP server reads
	// (<state>/guests).
	Leases string
	// Exe is the binary re-executed as the DHCP server; it must call Main
	// first thing. Default guestexe.Path().
	Exe string
}

func (s TapSpec) validate() error {
	var missing []string
	for _, f := range []struct{ name, v string }{{"guest", s.Guest}, {"bridge", s.Bridge}, {"ip", s.IP}, {"gateway", s.Gateway}, {"mac", s.MAC}, {"leases", s.Leases}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("tap spec: %s required", strings.Join(missing, ", "))
	}
	return nil
}
