package farmnet

import (
	"net"
	"strings"
	"testing"
)

func TestPortAliasRoundTrip(t *testing.T) {
	mac, _ := net.ParseMAC("02:74:66:00:00:05")
	p := Port{Name: "tf-0123456789", MAC: mac, IP: net.ParseIP("10.77.0.5")}
	got, ok := parsePortAlias(p.Name, p.alias())
	if !ok || got.MAC.String() != mac.String() || !got.IP.Equal(p.IP) || got.Name != p.Name {
		t.Fatalf("round trip of %q: %+v, %v", p.alias(), got, ok)
	}
	for _, alias := range []string{"", "tinyfarm farm /x", "tinyfarm port 02:74:66:00:00:05", "tinyfarm port zz 10.77.0.5", "tinyfarm port 02:74:66:00:00:05 fe80::1"} {
		if _, ok := parsePortAlias("tf-x", alias); ok {
			t.Errorf("alias %q taken for a guarded port", alias)
		}
	}
}

// TestPortRules: each port gets its own chain with exactly the guest's
// addresses; frames of an unguarded guest port are dropped, those of other
// bridges' ports left alone.
func TestPortRules(t *testing.T) {
	mac, _ := net.ParseMAC("02:74:66:00:00:05")
	s := portRules([]Port{{Name: "tq-aa", MAC: mac, IP: net.ParseIP("10.77.0.5")}})
	for _, want := range []string{
		"add table bridge tinyfarm\ndelete table bridge tinyfarm\n",
		`elements = { "tq-aa" : jump port-tq-aa }`,
		"type filter hook prerouting priority -300; policy accept;\n\t\tiifname vmap @ports\n\t\tiifname { \"tf-*\", \"tq-*\" } drop\n\t}\n",
		"chain port-tq-aa {\n\t\tether saddr != 02:74:66:00:00:05 drop\n",
		"arp saddr ether 02:74:66:00:00:05 arp saddr ip { 10.77.0.5, 0.0.0.0 } accept",
		"ether type ip udp sport 67 drop",
		"ether type ip icmp type redirect drop",
		"ether type ip ip saddr 10.77.0.5 accept",
		"ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept",
		"\t\tdrop\n\t}\n}\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("rules lack %q:\n%s", want, s)
		}
	}
	if s := portRules(nil); strings.Contains(s, "elements") || !strings.Contains(s, "iifname vmap @ports\n\t\tiifname { \"tf-*\", \"tq-*\" } drop") {
		t.Errorf("no ports: every guest port's frames dropped, got:\n%s", s)
	}
}
