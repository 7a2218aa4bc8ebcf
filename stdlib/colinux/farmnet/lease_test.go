package farmnet_test

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
)

func writeGuest(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name, "guest.json"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func leases(t *testing.T) []farmnet.Lease {
	dir := t.TempDir()
	writeGuest(t, dir, "vm1", `{"name":"vm1","driver":"qemu","ip":"10.77.0.5/24","mac":"02:74:66:aa:bb:cc","net":"bridge"}`)
	writeGuest(t, dir, "usr", `{"name":"usr","driver":"qemu","mac":"02:74:66:00:00:01","net":"user"}`)
	writeGuest(t, dir, "far", `{"name":"far","driver":"ns","ip":"10.99.0.5/24","mac":"02:74:66:00:00:02","net":"bridge"}`)
	writeGuest(t, dir, "bad", `{"name":`)
	_, subnet, _ := net.ParseCIDR("10.77.0.0/24")
	l, err := farmnet.ReadLeases(dir, subnet)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestReadLeases(t *testing.T) {
	l := leases(t)
	if len(l) != 1 || l[0].Name != "vm1" || l[0].IP.String() != "10.77.0.5" || l[0].MAC.String() != "02:74:66:aa:bb:cc" {
		t.Fatalf("leases = %+v, want only vm1 (user-mode, other-subnet and broken definitions skipped)", l)
	}
}

func responder() farmnet.Responder {
	return farmnet.Responder{Server: &net.IPNet{IP: net.IPv4(10, 77, 0, 1).To4(), Mask: net.CIDRMask(24, 32)}, LeaseTime: 10 * time.Minute}
}

func TestReplyKnownMAC(t *testing.T) {
	l := leases(t)
	mac, _ := net.ParseMAC("02:74:66:aa:bb:cc")
	disc, err := dhcpv4.NewDiscovery(mac)
	if err != nil {
		t.Fatal(err)
	}
	offer, err := responder().Reply(disc, l)
	if err != nil || offer == nil {
		t.Fatalf("discover: %v, %v", offer, err)
	}
	check := func(m *dhcpv4.DHCPv4, mt dhcpv4.MessageType) {
		t.Helper()
		if m.MessageType() != mt || !m.YourIPAddr.Equal(net.IPv4(10, 77, 0, 5)) || m.TransactionID != disc.TransactionID ||
			!m.ServerIdentifier().Equal(net.IPv4(10, 77, 0, 1)) || m.SubnetMask().String() != "ffffff00" ||
			len(m.Router()) != 1 || !m.Router()[0].Equal(net.IPv4(10, 77, 0, 1)) ||
			m.HostName() != "vm1" || m.IPAddressLeaseTime(0) != 10*time.Minute ||
			!m.BroadcastAddress().Equal(net.IPv4(10, 77, 0, 255)) {
			t.Errorf("reply:\n%s", m.Summary())
		}
	}
	check(offer, dhcpv4.MessageTypeOffer)
	req, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := responder().Reply(req, l)
	if err != nil || ack == nil {
		t.Fatalf("request: %v, %v", ack, err)
	}
	check(ack, dhcpv4.MessageTypeAck)

	// A request for another address is refused; one for another server
	// is not ours to answer.
	other, _ := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 77, 0, 9))))
	if nak, _ := responder().Reply(other, l); nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("request for another ip: %v, want NAK", nak)
	}
	foreign, _ := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 77, 0, 254))))
	if r, _ := responder().Reply(foreign, l); r != nil {
		t.Errorf("request to another server answered: %s", r.Summary())
	}
}

func TestReplyUnknownMAC(t *testing.T) {
	l := leases(t)
	for _, s := range []string{"02:74:66:00:00:01", "02:74:66:00:00:02", "52:54:00:12:34:56"} {
		mac, _ := net.ParseMAC(s)
		disc, _ := dhcpv4.NewDiscovery(mac)
		if r, err := responder().Reply(disc, l); r != nil || err != nil {
			t.Errorf("%s: discover answered: %v %v", s, r, err)
		}
		req, _ := dhcpv4.NewRequestFromOffer(&dhcpv4.DHCPv4{ClientHWAddr: mac, YourIPAddr: net.IPv4(10, 77, 0, 5),
			Options: dhcpv4.OptionsFromList(dhcpv4.OptServerIdentifier(net.IPv4(10, 77, 0, 1)))})
		if r, err := responder().Reply(req, l); r != nil || err != nil {
			t.Errorf("%s: request answered: %v %v", s, r, err)
		}
	}
}

func TestTapName(t *testing.T) {
	n := farmnet.TapName("a-guest-name-of-thirty-two-chars")
	if len(n) > 15 || n[:3] != "tq-" || n == farmnet.TapName("other") {
		t.Errorf("tap name %q", n)
	}
	if g, err := farmnet.GatewayCIDR("10.77.249.3/24", "10.77.249.1"); err != nil || g != "10.77.249.1/24" {
		t.Errorf("gateway cidr = %q, %v", g, err)
	}
}

// TestReplyKeptAddress: a guest that kept an address of another subnet
// (a live move from another host's farm, with its gateway) is answered
// as its old farm did: its address, its own netmask, its gateway as
// router and server, so its renewals (unicast to that server) keep
// working; a renewal in RENEWING state (no server identifier) is acked.
func TestReplyKeptAddress(t *testing.T) {
	dir := t.TempDir()
	writeGuest(t, dir, "moved", `{"name":"moved","driver":"qemu","ip":"10.99.3.7/25","gateway":"10.99.3.1","mac":"02:74:66:00:00:07","net":"bridge"}`)
	writeGuest(t, dir, "odd", `{"name":"odd","driver":"qemu","ip":"10.99.4.7/24","gateway":"10.99.5.1","mac":"02:74:66:00:00:08","net":"bridge"}`)
	_, subnet, _ := net.ParseCIDR("10.77.0.0/24")
	l, err := farmnet.ReadLeases(dir, subnet)
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0].Name != "moved" || l[0].Server == nil || l[0].Server.String() != "10.99.3.1/25" {
		t.Fatalf("leases = %+v, want moved with its own server (a gateway outside its subnet skipped)", l)
	}
	mac, _ := net.ParseMAC("02:74:66:00:00:07")
	disc, _ := dhcpv4.NewDiscovery(mac)
	offer, err := responder().Reply(disc, l)
	if err != nil || offer == nil {
		t.Fatalf("discover: %v, %v", offer, err)
	}
	if !offer.YourIPAddr.Equal(net.IPv4(10, 99, 3, 7)) || !offer.ServerIdentifier().Equal(net.IPv4(10, 99, 3, 1)) ||
		offer.SubnetMask().String() != "ffffff80" || len(offer.Router()) != 1 || !offer.Router()[0].Equal(net.IPv4(10, 99, 3, 1)) ||
		!offer.BroadcastAddress().Equal(net.IPv4(10, 99, 3, 127)) {
		t.Errorf("offer:\n%s", offer.Summary())
	}
	renew, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(10, 99, 3, 7)))
	if ack, _ := responder().Reply(renew, l); ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(net.IPv4(10, 99, 3, 7)) {
		t.Errorf("renewal: %v", ack)
	}
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	if ack, _ := responder().Reply(req, l); ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("request to its kept server: %v", ack)
	}
}
