package farmnet

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
)

// Tenants are isolated on the farm bridge in four ways:
//
//   - every guest port (veth or tap) is an isolated bridge port, so the
//     bridge never forwards frames from one guest to another; guests reach
//     only the bridge itself, that is the host;
//   - every guest port has an anti-spoofing filter (nftables, bridge
//     family, table "tinyfarm": see portRules): a guest sends only frames with its own MAC,
//     ARP with its own MAC and IPv4 address, IPv4 from its own address
//     (and DHCP requests from 0.0.0.0), no DHCP server replies, no ICMP
//     redirects and no IPv6 at all (so no router advertisements);
//   - the host accepts from the bridge only replies to connections it
//     opened (the proxy, SSH, the DHCP server's own traffic) and DHCP
//     requests, over IPv4 (iptables) and IPv6 (ip6tables) alike; a guest
//     cannot open connections to host services that listen on the gateway
//     address or on all addresses;
//   - IPv6 is off on the bridge and on the host ends of the ports
//     (disable_ipv6, accept_ra = 0, autoconf = 0): the host has no
//     link-local address there and never configures itself from a router
//     advertisement.

// IsolatePort marks a guest's bridge port isolated.
func IsolatePort(link netlink.Link) error {
	if err := netlink.LinkSetIsolated(link, true); err != nil {
		return fmt.Errorf("isolate port %s: %w", link.Attrs().Name, err)
	}
	return nil
}

func guardChain(bridge string) string { return "TF-" + bridge }

// guardHost installs the INPUT filter for bridge once, for IPv4
// (iptables) and IPv6 (ip6tables) with the same rules (the chain's
// existence means it is installed). Without the tools it fails: tinyfarm
// does not start guests it cannot fence off.
func guardHost(bridge string) error {
	// Both families at once: every guest start checks them (a few ms
	// per iptables run).
	errs := make(chan error, 2)
	for _, tool := range []string{"iptables", "ip6tables"} {
		go func() { errs <- guardHostWith(tool, bridge) }()
	}
	return errors.Join(<-errs, <-errs)
}

func guardHostWith(tool, bridge string) error {
	ipt, err := exec.LookPath(tool)
	if err != nil {
		return fmt.Errorf("bridge %s: host firewall: %s not found (scripts/deps.sh installs iptables): guests could reach host services", bridge, tool)
	}
	chain := guardChain(bridge)
	run := func(args ...string) (string, error) {
		out, err := exec.Command(ipt, append([]string{"-w"}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	// One listing of the filter table answers both questions (is the
	// chain there, does INPUT jump to it) in the common case: installed.
	jump := "-A INPUT -i " + bridge + " -j " + chain
	if out, err := run("-S"); err == nil && hasLine(out, "-N "+chain) && hasLine(out, jump) {
		return nil
	}
	if _, err := run("-n", "-L", chain); err != nil {
		if out, err := run("-N", chain); err != nil && !strings.Contains(out, "exists") {
			return fmt.Errorf("bridge %s: host firewall (%s): %s: %w", bridge, tool, out, err)
		}
		for _, rule := range [][]string{
			{"-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
			{"-A", chain, "-p", "udp", "--dport", "67", "-j", "ACCEPT"},
			{"-A", chain, "-j", "DROP"},
		} {
			if out, err := run(rule...); err != nil {
				return fmt.Errorf("bridge %s: host firewall (%s): %s: %w", bridge, tool, out, err)
			}
		}
	}
	if _, err := run("-C", "INPUT", "-i", bridge, "-j", chain); err != nil {
		if out, err := run("-I", "INPUT", "1", "-i", bridge, "-j", chain); err != nil {
			return fmt.Errorf("bridge %s: host firewall (%s): %s: %w", bridge, tool, out, err)
		}
	}
	return nil
}

func hasLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}

// unguardHost removes the bridge's INPUT filters (with the bridge).
func unguardHost(bridge string) {
	for _, tool := range []string{"iptables", "ip6tables"} {
		ipt, err := exec.LookPath(tool)
		if err != nil {
			continue
		}
		chain := guardChain(bridge)
		for exec.Command(ipt, "-w", "-D", "INPUT", "-i", bridge, "-j", chain).Run() == nil {
		}
		exec.Command(ipt, "-w", "-F", chain).Run()
		exec.Command(ipt, "-w", "-X", chain).Run()
	}
}

// noIPv6 turns IPv6 off on a host interface of the farm network (the
// bridge, the host ends of guest ports) before it comes up: no link-local
// address a guest could reach host services on, no router advertisements
// accepted, no autoconfiguration. A host without IPv6 needs nothing.
func noIPv6(ifname string) error {
	dir := filepath.Join("/proc/sys/net/ipv6/conf", ifname)
	if _, err := os.Stat(dir); err != nil {
		if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
			return nil // IPv6 not compiled in or disabled at boot
		}
		return fmt.Errorf("link %s: ipv6 settings: %w", ifname, err)
	}
	for _, kv := range [][2]string{{"accept_ra", "0"}, {"autoconf", "0"}, {"disable_ipv6", "1"}} {
		if err := os.WriteFile(filepath.Join(dir, kv[0]), []byte(kv[1]), 0o644); err != nil {
			return fmt.Errorf("link %s: ipv6 %s = %s: %w", ifname, kv[0], kv[1], err)
		}
	}
	return nil
}
