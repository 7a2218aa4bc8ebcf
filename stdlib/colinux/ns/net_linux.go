package ns

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
)

// hostVeth is the host-side name of a guest's veth: "tf-" + a hash of the
// guest name, because interface names are limited to 15 bytes.
func hostVeth(name string) string {
	h := sha256.Sum256([]byte(name))
	return "tf-" + hex.EncodeToString(h[:])[:10]
}

// netPlan is a guest's network, as the monitor sets it up.
type netPlan struct {
	Bridge  string
	IP      string // "10.77.0.5/24"
	Gateway string // "10.77.0.1"
	MAC     string
	Owner   string // the farm's guests directory ("" outside a farm)
}

// setupVeth creates the guest's veth pair with its peer directly in the
// namespace of pid, plugs the host end into the bridge, and configures
// eth0, lo and the default route inside the guest.
func setupVeth(guest string, pid int, p netPlan) (string, error) {
	prefix := "10.77.0.1/24"
	if _, ipnet, err := net.ParseCIDR(p.IP); err == nil {
		ones, _ := ipnet.Mask.Size()
		prefix = fmt.Sprintf("%s/%d", p.Gateway, ones)
	}
	br, err := farmnet.EnsureFarmBridge(p.Bridge, prefix, p.Owner)
	if err != nil {
		return "", err
	}
	host := hostVeth(guest)
	_ = farmnet.DeleteLink(host) // left by a guest that was killed mid-setup
	peer := "tfg" + host[3:]
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: host, MasterIndex: br.Attrs().Index},
		PeerName:      peer,
		PeerNamespace: netlink.NsPid(pid),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return "", fmt.Errorf("veth %s: create: %w", host, err)
	}
	hl, err := netlink.LinkByName(host)
	if err != nil {
		return host, fmt.Errorf("veth %s: %w", host, err)
	}
	if err := farmnet.IsolatePort(hl); err != nil {
		return host, err
	}
	if err := netlink.LinkSetUp(hl); err != nil {
		return host, fmt.Errorf("veth %s: up: %w", host, err)
	}
	return host, configureInside(pid, peer, p)
}

func configureInside(pid int, peer string, p netPlan) error {
	// Netlink handles bound to another namespace need no thread switch,
	// but netns.GetFromPid opens /proc/<pid>/ns/net, which must stay
	// valid while we use it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	nsh, err := netns.GetFromPid(pid)
	if err != nil {
		return fmt.Errorf("guest netns of pid %d: %w", pid, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return fmt.Errorf("guest netns: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("guest lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("guest lo: up: %w", err)
	}
	l, err := h.LinkByName(peer)
	if err != nil {
		return fmt.Errorf("guest veth: %w", err)
	}
	if err := h.LinkSetName(l, "eth0"); err != nil {
		return fmt.Errorf("guest veth: rename eth0: %w", err)
	}
	if p.MAC != "" {
		mac, err := net.ParseMAC(p.MAC)
		if err != nil {
			return fmt.Errorf("guest mac %q: %w", p.MAC, err)
		}
		if err := h.LinkSetHardwareAddr(l, mac); err != nil {
			return fmt.Errorf("guest eth0: set mac: %w", err)
		}
	}
	addr, err := netlink.ParseAddr(p.IP)
	if err != nil {
		return fmt.Errorf("guest ip %q: %w", p.IP, err)
	}
	if err := h.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("guest eth0: add %s: %w", p.IP, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("guest eth0: up: %w", err)
	}
	gw := net.ParseIP(p.Gateway)
	if gw != nil {
		if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw}); err != nil {
			return fmt.Errorf("guest eth0: default route via %s: %w", p.Gateway, err)
		}
	}
	return nil
}

// deleteVeth removes the host end (the peer dies with the guest's netns,
// and with it the pair); a missing link is fine.
func deleteVeth(name string) error { return farmnet.DeleteLink(name) }

// VethExists reports whether the host end of a guest's veth is present
// (tests check teardown with it).
func VethExists(s driver.Spec) bool {
	return farmnet.LinkExists(hostVeth(s.Instance()))
}

// DeleteBridge removes a farm bridge (tests remove the one they made).
func DeleteBridge(name string) error { return farmnet.DeleteBridge(name) }
