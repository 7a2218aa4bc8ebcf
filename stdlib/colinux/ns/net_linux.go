package ns

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
)

// hostVeth is HostVeth.
func hostVeth(name string) string { return HostVeth(name) }

// netPlan is a guest's network, as the monitor sets it up.
type netPlan struct {
	Bridge  string
	IP      string // "10.77.0.5/24"
	Gateway string // "10.77.0.1"
	MAC     string
	Owner   string // the farm's guests directory ("" outside a farm)
}

// setupVeth creates the guest's veth pair with its peer directly in the
// namespace of pid, plugs the host end into the bridge and configures
// eth0, lo, the default route and the ping sysctl inside the guest. The
// host end stays down: up, the port carries frames, so the returned
// finish guards it (farmnet.GuardPort) and only then brings it up, and no
// frame of the guest crosses the bridge unfiltered. The monitor lets the
// guest boot between the two (the guard is an nft run of ~15 ms).
func setupVeth(guest string, pid int, p netPlan) (host string, finish func() error, err error) {
	prefix := "10.77.0.1/24"
	if _, ipnet, err := net.ParseCIDR(p.IP); err == nil {
		ones, _ := ipnet.Mask.Size()
		prefix = fmt.Sprintf("%s/%d", p.Gateway, ones)
	}
	br, err := farmnet.EnsureFarmBridge(p.Bridge, prefix, p.Owner)
	if err != nil {
		return "", nil, err
	}
	trace("veth: bridge and host firewall checked")
	host = hostVeth(guest)
	_ = farmnet.DeleteLink(host) // left by a guest that was killed mid-setup
	peer := "tfg" + host[3:]
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: host, MasterIndex: br.Attrs().Index},
		PeerName:      peer,
		PeerNamespace: netlink.NsPid(pid),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return "", nil, fmt.Errorf("veth %s: create: %w", host, err)
	}
	hl, err := netlink.LinkByName(host)
	if err != nil {
		return host, nil, fmt.Errorf("veth %s: %w", host, err)
	}
	if err := farmnet.IsolatePort(hl); err != nil {
		return host, nil, err
	}
	trace("veth: pair created")
	mac, err := configureInside(pid, peer, p)
	if err != nil {
		return host, nil, err
	}
	trace("veth: guest side configured")
	finish = func() error {
		ip, _, _ := net.ParseCIDR(p.IP)
		if err := farmnet.GuardPort(farmnet.Port{Name: host, MAC: mac, IP: ip}); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(hl); err != nil {
			return fmt.Errorf("veth %s: up: %w", host, err)
		}
		trace("veth: port guarded and up")
		return nil
	}
	return host, finish, nil
}

// guestSysctls are set in every guest's network namespace. A guest has no
// CAP_NET_RAW by default (no raw or packet sockets: no forged frames), so
// ping uses ICMP datagram sockets, which ping_group_range opens to every
// group (as systemd and Docker set it). The TIME-WAIT limit is what the
// kernel derives from a 4096-bucket socket table (see guestEhashEntries):
// a guest closing thousands of connections a minute keeps them in
// TIME-WAIT instead of logging "time wait bucket table overflow".
var guestSysctls = [][2]string{{"net/ipv4/ping_group_range", "0 2147483647"}, {"net/ipv4/tcp_max_tw_buckets", "2048"}}

// writeGuestSysctls sets guestSysctls in the network namespace nsh. Net
// sysctls under /proc/sys/net belong to the namespace of the thread that
// opens them: a locked thread enters nsh, writes and comes back; if it
// cannot come back, it stays locked and Go ends it with its goroutine.
func writeGuestSysctls(nsh netns.NsHandle) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("own netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(nsh); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter guest netns: %w", err)
			return
		}
		var werr error
		for _, kv := range guestSysctls {
			if err := os.WriteFile("/proc/sys/"+kv[0], []byte(kv[1]), 0o644); err != nil {
				werr = fmt.Errorf("guest sysctl %s: %w", strings.ReplaceAll(kv[0], "/", "."), err)
				break
			}
		}
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("leave guest netns: %w", err) // thread stays locked: it dies with this goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- werr
	}()
	return <-errc
}

// configureInside sets up the guest's side and returns its eth0's MAC.
func configureInside(pid int, peer string, p netPlan) (net.HardwareAddr, error) {
	// Netlink handles bound to another namespace need no thread switch,
	// but netns.GetFromPid opens /proc/<pid>/ns/net, which must stay
	// valid while we use it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	nsh, err := netns.GetFromPid(pid)
	if err != nil {
		return nil, fmt.Errorf("guest netns of pid %d: %w", pid, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return nil, fmt.Errorf("guest netns: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("guest lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return nil, fmt.Errorf("guest lo: up: %w", err)
	}
	l, err := h.LinkByName(peer)
	if err != nil {
		return nil, fmt.Errorf("guest veth: %w", err)
	}
	if err := h.LinkSetName(l, "eth0"); err != nil {
		return nil, fmt.Errorf("guest veth: rename eth0: %w", err)
	}
	if p.MAC != "" {
		mac, err := net.ParseMAC(p.MAC)
		if err != nil {
			return nil, fmt.Errorf("guest mac %q: %w", p.MAC, err)
		}
		if err := h.LinkSetHardwareAddr(l, mac); err != nil {
			return nil, fmt.Errorf("guest eth0: set mac: %w", err)
		}
	}
	addr, err := netlink.ParseAddr(p.IP)
	if err != nil {
		return nil, fmt.Errorf("guest ip %q: %w", p.IP, err)
	}
	if err := h.AddrAdd(l, addr); err != nil {
		return nil, fmt.Errorf("guest eth0: add %s: %w", p.IP, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("guest eth0: up: %w", err)
	}
	gw := net.ParseIP(p.Gateway)
	if gw != nil {
		if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw}); err != nil {
			return nil, fmt.Errorf("guest eth0: default route via %s: %w", p.Gateway, err)
		}
	}
	if err := writeGuestSysctls(nsh); err != nil {
		return nil, err
	}
	if l, err = h.LinkByName("eth0"); err != nil {
		return nil, fmt.Errorf("guest eth0: %w", err)
	}
	return l.Attrs().HardwareAddr, nil
}

// deleteVeth removes the host end and its port filter (the peer dies with
// the guest's netns, and with it the pair); a missing link is fine.
func deleteVeth(name string) error { return farmnet.DeletePort(name) }

// VethExists reports whether the host end of a guest's veth is present
// (tests check teardown with it).
func VethExists(s driver.Spec) bool {
	return farmnet.LinkExists(hostVeth(s.Instance()))
}

// DeleteBridge removes a farm bridge (tests remove the one they made).
func DeleteBridge(name string) error { return farmnet.DeleteBridge(name) }
