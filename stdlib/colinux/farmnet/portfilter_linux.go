package farmnet

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// GuardPort gives a guest's port its anti-spoofing filter: it records the
// guest's addresses with the port (its alias), turns IPv6 off on it and
// rebuilds the port filters. Call it once the port is on its bridge and
// before it comes up; until then, and without it, the bridge drops the
// port's frames. Idempotent.
func GuardPort(p Port) error {
	if err := p.validate(); err != nil {
		return err
	}
	unlock, err := lockPorts()
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
	return rebuildPorts()
}

// DeletePort removes a guest's port and its filter; a missing port is
// fine.
func DeletePort(name string) error {
	unlock, err := lockPorts()
	if err != nil {
		return err
	}
	defer unlock()
	if err := DeleteLink(name); err != nil {
		return err
	}
	return rebuildPorts()
}

// RebuildGuards puts back every filter of a farm bridge from what the
// kernel holds: IPv6 off on the bridge and its ports, the host's INPUT
// guard (IPv4 and IPv6) and the port filters (each guarded port has its
// guest's addresses in its alias). For `tinyfarm boot` and after a
// firewall flush; idempotent.
func RebuildGuards(bridge string) error {
	if err := noIPv6(bridge); err != nil {
		return err
	}
	if err := guardHost(bridge); err != nil {
		return err
	}
	unlock, err := lockPorts()
	if err != nil {
		return err
	}
	defer unlock()
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("bridge %s: list ports: %w", bridge, err)
	}
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			if err := noIPv6(l.Attrs().Name); err != nil {
				return err
			}
		}
	}
	return rebuildPorts()
}

// lockPorts serialises changes to the port filters among all tinyfarm
// processes on the host (each rebuild reads every port, so two at once
// could drop a port the other one just added).
func lockPorts() (unlock func(), err error) {
	if err := os.MkdirAll("/run/tinyfarm", 0o755); err != nil {
		return nil, fmt.Errorf("port filter: lock: %w", err)
	}
	f, err := os.OpenFile(filepath.Join("/run/tinyfarm", "farmnet-ports.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("port filter: lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("port filter: lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// rebuildPorts replaces the port filters by ones for the guarded ports on
// the host's bridges as they are now (the caller holds lockPorts). With
// no guarded port left, the table goes.
func rebuildPorts() error {
	nft, err := exec.LookPath("nft")
	if err != nil {
		return fmt.Errorf("port filter: nft not found (scripts/deps.sh installs nftables): guests could spoof addresses")
	}
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("port filter: list links: %w", err)
	}
	var ports []Port
	for _, l := range links {
		a := l.Attrs()
		if a.MasterIndex == 0 {
			continue // not on a bridge (any more)
		}
		if p, ok := parsePortAlias(a.Name, a.Alias); ok {
			ports = append(ports, p)
		}
	}
	if len(ports) == 0 {
		exec.Command(nft, "delete", "table", "bridge", portTable).Run() // missing is fine
		return nil
	}
	cmd := exec.Command(nft, "-f", "-")
	cmd.Stdin = strings.NewReader(portRules(ports))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("port filter: nft: %s: %w", strings.TrimSpace(out.String()), err)
	}
	return nil
}
