package farmnet

import (
	"fmt"
	"net"
	"sort"
	"strings"
)

// Port is a guest's port on the farm bridge (the host end of its veth or
// its tap) and the only addresses its guest may send from.
type Port struct {
	Name string           // host end: a veth "tf-..." or a tap "tq-..."
	MAC  net.HardwareAddr // the guest's MAC
	IP   net.IP           // the guest's IPv4 address
}

func (p Port) validate() error {
	if len(p.MAC) != 6 {
		return fmt.Errorf("port %s: guest MAC %q: want 6 bytes", p.Name, p.MAC)
	}
	if p.IP.To4() == nil {
		return fmt.Errorf("port %s: guest address %q: want IPv4", p.Name, p.IP)
	}
	return nil
}

// portAliasPrefix starts the interface alias of a guarded port; the rest
// is the guest's MAC and IPv4 address. The kernel keeps them with the
// port, so the filter can be rebuilt from the ports alone (RebuildGuards)
// and a port that goes away takes its addresses with it.
const portAliasPrefix = "tinyfarm port "

func (p Port) alias() string { return portAliasPrefix + p.MAC.String() + " " + p.IP.To4().String() }

// parsePortAlias reads a port's addresses back from its alias; ok is
// false for a port tinyfarm did not guard.
func parsePortAlias(name, alias string) (p Port, ok bool) {
	rest, ok := strings.CutPrefix(alias, portAliasPrefix)
	if !ok {
		return Port{}, false
	}
	f := strings.Fields(rest)
	if len(f) != 2 {
		return Port{}, false
	}
	mac, err := net.ParseMAC(f[0])
	if err != nil {
		return Port{}, false
	}
	p = Port{Name: name, MAC: mac, IP: net.ParseIP(f[1])}
	return p, p.validate() == nil
}

// portTable is the nftables table (bridge family) of the port filters of
// every farm bridge on the host. One table for all: a bridge-family hook
// sees the frames of every bridge on the host, and the kernel may lack
// the match on the bridge's name (meta ibrname), so the table tells
// ports apart by their own names.
const portTable = "tinyfarm"

// guestPortPatterns match the host ends of every guest port tinyfarm
// makes: ns veths ("tf-...") and qemu taps (TapPrefix).
var guestPortPatterns = []string{"tf-*", TapPrefix + "*"}

// portRules is the nft script that replaces the port filters by ones for
// ports, in one transaction (nft -f applies a script atomically: no frame
// ever passes a half-built filter).
//
// Every frame a guest sends enters its bridge through its port and meets
// the prerouting hook first, before the bridge forwards it or hands it to
// the host. There each guarded port jumps to its own chain, which accepts
// only the guest's own traffic. Frames from a guest port without a filter
// (tinyfarm's port names) are dropped; other bridges' ports are left
// alone.
func portRules(ports []Port) string {
	ports = append([]Port(nil), ports...)
	sort.Slice(ports, func(i, j int) bool { return ports[i].Name < ports[j].Name })
	var b strings.Builder
	// add-then-delete: delete alone fails when the table is missing.
	fmt.Fprintf(&b, "add table bridge %s\ndelete table bridge %s\n", portTable, portTable)
	fmt.Fprintf(&b, "table bridge %s {\n", portTable)
	b.WriteString("\tmap ports {\n\t\ttype ifname : verdict\n")
	if len(ports) > 0 {
		var el []string
		for _, p := range ports {
			el = append(el, fmt.Sprintf("%q : jump port-%s", p.Name, p.Name))
		}
		fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(el, ", "))
	}
	b.WriteString("\t}\n")
	b.WriteString("\tchain prerouting {\n\t\ttype filter hook prerouting priority -300; policy accept;\n")
	var pats []string
	for _, p := range guestPortPatterns {
		pats = append(pats, fmt.Sprintf("%q", p))
	}
	fmt.Fprintf(&b, "\t\tiifname vmap @ports\n\t\tiifname { %s } drop\n\t}\n", strings.Join(pats, ", "))
	for _, p := range ports {
		mac, ip := p.MAC.String(), p.IP.To4().String()
		fmt.Fprintf(&b, "\tchain port-%s {\n", p.Name)
		fmt.Fprintf(&b, "\t\tether saddr != %s drop\n", mac)
		// ARP only about itself: its own MAC and address as sender (0.0.0.0
		// for an address probe, RFC 5227, which no host learns from).
		fmt.Fprintf(&b, "\t\tether type arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ether %s arp saddr ip { %s, 0.0.0.0 } accept\n", mac, ip)
		b.WriteString("\t\tether type ip udp sport 67 drop\n") // DHCP server replies: only the farm answers
		b.WriteString("\t\tether type ip icmp type redirect drop\n")
		fmt.Fprintf(&b, "\t\tether type ip ip saddr %s accept\n", ip)
		// DHCP discover and request before the guest has its address.
		b.WriteString("\t\tether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept\n")
		// Everything else: IPv6 (router advertisements, NDP: the farm
		// network is IPv4 only), VLAN tags, other protocols.
		b.WriteString("\t\tdrop\n\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}
