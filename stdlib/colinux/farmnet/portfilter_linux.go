package farmnet

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"
)

// GuardPort gives a guest's port its anti-spoofing filter: it records the
// guest's addresses with the port (its alias), turns IPv6 off on it and
// rebuilds the bridge's port filter. Call it before the port comes up;
// until then, and without it, the bridge drops the port's frames.
// Idempotent.
func GuardPort(bridge string, p Port) error {
	if err := p.validate(); err != nil {
		return err
	}
	unlock, err := lockBridge(bridge)
	if err != nil {
		return err
	}
	defer unlock()
	l, err := netlink.LinkByName(p.Name)
	if err != nil {
		return fmt.Errorf("port %s: %w", p.Name, err)
	}
	if err := netlink.LinkSetAlias(l, p.alias()); err != nil {
		return fmt.Errorf("port %s: record the guest's addresses: %w", p.Name, err)
	}
	if err := noIPv6(p.Name); err != nil {
		return err
	}
	return rebuildPorts(bridge)
}

// DeletePort removes a guest's port and its filter; a missing port is
// fine.
func DeletePort(bridge, name string) error {
	unlock, err := lockBridge(bridge)
	if err != nil {
		return err
	}
	defer unlock()
	if err := DeleteLink(name); err != nil {
		return err
	}
	return rebuildPorts(bridge)
}

// RebuildGuards puts back every filter of a farm bridge from what the
// kernel holds: IPv6 off on the bridge and its ports, the host's INPUT
// guard (IPv4 and IPv6) and the port filter of every guarded port (its
// addresses are in its alias). For `tinyfarm boot` and after a firewall
// flush; idempotent.
func RebuildGuards(bridge string) error {
	if err := noIPv6(bridge); err != nil {
		return err
	}
	if err := guardHost(bridge); err != nil {
		return err
	}
	unlock, err := lockBridge(bridge)
	if err != nil {
		return err
	}
	defer unlock()
	ports, err := bridgePorts(bridge)
	if err != nil {
		return err
	}
	for _, name := range ports {
		if err := noIPv6(name); err != nil {
			return err
		}
	}
	return rebuildPorts(bridge)
}

// bridgePorts names the interfaces plugged into bridge.
func bridgePorts(bridge string) ([]string, error) {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", bridge, err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("bridge %s: list ports: %w", bridge, err)
	}
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}

// rebuildPorts replaces the bridge's port filter with one for its ports
// as they are now (the caller holds the bridge lock). Without the bridge,
// the table goes.
func rebuildPorts(bridge string) error {
	nft, err := exec.LookPath("nft")
	if err != nil {
		return fmt.Errorf("bridge %s: port filter: nft not found (scripts/deps.sh installs nftables): guests could spoof addresses", bridge)
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			exec.Command(nft, "delete", "table", "bridge", portTable(bridge)).Run()
			return nil
		}
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("bridge %s: list ports: %w", bridge, err)
	}
	var ports []Port
	for _, l := range links {
		a := l.Attrs()
		if a.MasterIndex != br.Attrs().Index {
			continue
		}
		if p, ok := parsePortAlias(a.Name, a.Alias); ok {
			ports = append(ports, p)
		}
	}
	cmd := exec.Command(nft, "-f", "-")
	cmd.Stdin = strings.NewReader(portRules(bridge, ports))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("bridge %s: port filter: nft: %s: %w", bridge, strings.TrimSpace(out.String()), err)
	}
	return nil
}
