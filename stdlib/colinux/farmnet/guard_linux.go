package farmnet

import (
	"fmt"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"
)

// Tenants are isolated on the farm bridge in two ways:
//
//   - every guest port (veth or tap) is an isolated bridge port, so the
//     bridge never forwards frames from one guest to another; guests reach
//     only the bridge itself, that is the host;
//   - the host accepts from the bridge only replies to connections it
//     opened (the proxy, SSH, the DHCP server's own traffic) and DHCP
//     requests; a guest cannot open connections to host services that
//     listen on the gateway address or on all addresses.

// IsolatePort marks a guest's bridge port isolated.
func IsolatePort(link netlink.Link) error {
	if err := netlink.LinkSetIsolated(link, true); err != nil {
		return fmt.Errorf("isolate port %s: %w", link.Attrs().Name, err)
	}
	return nil
}

func guardChain(bridge string) string { return "TF-" + bridge }

// guardHost installs the INPUT filter for bridge once (iptables; the
// chain's existence means it is installed). Without iptables on the host
// it fails: tinyfarm does not start guests it cannot fence off.
func guardHost(bridge string) error {
	ipt, err := exec.LookPath("iptables")
	if err != nil {
		return fmt.Errorf("bridge %s: host firewall: iptables not found (scripts/deps.sh installs it): guests could reach host services", bridge)
	}
	chain := guardChain(bridge)
	run := func(args ...string) (string, error) {
		out, err := exec.Command(ipt, append([]string{"-w"}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if _, err := run("-n", "-L", chain); err != nil {
		if out, err := run("-N", chain); err != nil && !strings.Contains(out, "exists") {
			return fmt.Errorf("bridge %s: host firewall: %s: %w", bridge, out, err)
		}
		for _, rule := range [][]string{
			{"-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
			{"-A", chain, "-p", "udp", "--dport", "67", "-j", "ACCEPT"},
			{"-A", chain, "-j", "DROP"},
		} {
			if out, err := run(rule...); err != nil {
				return fmt.Errorf("bridge %s: host firewall: %s: %w", bridge, out, err)
			}
		}
	}
	if _, err := run("-C", "INPUT", "-i", bridge, "-j", chain); err != nil {
		if out, err := run("-I", "INPUT", "1", "-i", bridge, "-j", chain); err != nil {
			return fmt.Errorf("bridge %s: host firewall: %s: %w", bridge, out, err)
		}
	}
	return nil
}

// unguardHost removes the bridge's INPUT filter (with the bridge).
func unguardHost(bridge string) {
	ipt, err := exec.LookPath("iptables")
	if err != nil {
		return
	}
	chain := guardChain(bridge)
	for exec.Command(ipt, "-w", "-D", "INPUT", "-i", bridge, "-j", chain).Run() == nil {
	}
	exec.Command(ipt, "-w", "-F", chain).Run()
	exec.Command(ipt, "-w", "-X", chain).Run()
}
