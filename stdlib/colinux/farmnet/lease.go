package farmnet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Lease is a static DHCP lease: a guest's MAC and its farm address.
type Lease struct {
	Name string
	MAC  net.HardwareAddr
	IP   net.IP // IPv4
	// Server is set for a guest that kept an address of another subnet
	// (TapSpec.KeptGateway): its own gateway and netmask, which the
	// answer carries as server, router and mask, as its old farm did.
	Server *net.IPNet
}

// guestJSON is the part of a guest definition (farm.Definition) the
// leases come from.
type guestJSON struct {
	Name string `json:"name"`
	IP   string `json:"ip"`
	// Gateway: a kept address's own gateway (farm.Definition.Gateway).
	Gateway string `json:"gateway"`
	MAC     string `json:"mac"`
	Net     string `json:"net"`
}

// ReadLeases reads dir/*/guest.json and returns the leases of guests on
// the bridge (net "bridge") whose address lies in subnet, or which kept
// an address of another subnet with its gateway (Lease.Server).
// Definitions that do not parse are skipped: one broken file must not
// stop the others.
func ReadLeases(dir string, subnet *net.IPNet) ([]Lease, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*", "guest.json"))
	if err != nil {
		return nil, fmt.Errorf("leases %s: %w", dir, err)
	}
	var out []Lease
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var g guestJSON
		if json.Unmarshal(b, &g) != nil || g.Net != "bridge" {
			continue
		}
		ip, ipnet, err := net.ParseCIDR(g.IP)
		if err != nil || ip.To4() == nil {
			continue
		}
		var server *net.IPNet
		if gw := net.ParseIP(g.Gateway).To4(); gw != nil && !subnet.Contains(ip) && ipnet.Contains(gw) {
			server = &net.IPNet{IP: gw, Mask: ipnet.Mask}
		} else if !subnet.Contains(ip) {
			continue
		}
		mac, err := net.ParseMAC(g.MAC)
		if err != nil {
			continue
		}
		out = append(out, Lease{Name: g.Name, MAC: mac, IP: ip.To4(), Server: server})
	}
	return out, nil
}

// Responder answers DHCPv4 requests from static leases.
type Responder struct {
	Server    *net.IPNet    // the server's (gateway's) address and the subnet mask
	LeaseTime time.Duration // default 1h
}

// Reply is the answer to req given the leases, or nil when there is none
// to give: an unknown MAC, a request for another server, a message that is
// not DISCOVER or REQUEST. A DISCOVER gets an OFFER, a REQUEST for the
// lease's address an ACK, a REQUEST for another address a NAK.
func (r Responder) Reply(req *dhcpv4.DHCPv4, leases []Lease) (*dhcpv4.DHCPv4, error) {
	if req == nil || req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, nil
	}
	var lease *Lease
	for i := range leases {
		if bytes.Equal(leases[i].MAC, req.ClientHWAddr) {
			lease = &leases[i]
			break
		}
	}
	if lease == nil {
		return nil, nil
	}
	srv := r.Server
	if lease.Server != nil {
		srv = lease.Server
	}
	sid := srv.IP.To4()
	lt := r.LeaseTime
	if lt <= 0 {
		lt = time.Hour
	}
	var mt dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		mt = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		if s := req.ServerIdentifier(); s != nil && !s.Equal(sid) {
			return nil, nil // the client chose another server
		}
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr
		}
		mt = dhcpv4.MessageTypeAck
		if want != nil && !want.IsUnspecified() && !want.Equal(lease.IP) {
			return dhcpv4.NewReplyFromRequest(req,
				dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(sid)))
		}
	default:
		return nil, nil
	}
	bcast := make(net.IP, 4)
	for i := range bcast {
		bcast[i] = lease.IP[i] | ^srv.Mask[len(srv.Mask)-4+i]
	}
	return dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithServerIP(sid),
		dhcpv4.WithYourIP(lease.IP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(sid)),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(srv.Mask)),
		dhcpv4.WithOption(dhcpv4.OptRouter(sid)),
		dhcpv4.WithOption(dhcpv4.OptBroadcastAddress(bcast)),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(lt)),
		dhcpv4.WithOption(dhcpv4.OptHostName(lease.Name)),
	)
}
