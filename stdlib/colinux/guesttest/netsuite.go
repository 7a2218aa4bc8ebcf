//go:build linux

package guesttest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// NetAttackSuite is the network attack suite of the guest drivers: a
// victim guest serving HTTP on port 80 and a host service on every
// address, against which attacker guests forge frames with netattack.
// Every result is checked on the host: its neighbour table, the bridge's
// FDB, its IPv6 addresses and routes, and what reaches the bridge.
type NetAttackSuite struct {
	Bridge, Gateway     string
	VictimIP, VictimMAC string

	helper     string
	victimPort string
	brMAC      net.HardwareAddr
	ipv6Before string
	sniff      *Sniffer
	port       int
	web        *http.Client
	rows       []attackRow
}

// Attacker is a guest on the bridge that runs the attacks as root.
type Attacker struct {
	Tag     string // appended to each row's name, e.g. " (net_raw)"
	IP, MAC string
	Raw     bool // the guest's root has CAP_NET_RAW (qemu guests, ns guests with net_raw)
	// Exec runs a shell command line in the guest as root.
	Exec func(cmd string, stdin io.Reader) (out string, code int, err error)
}

type attackRow struct {
	attack, expected, got string
	ok                    bool
}

// NewNetAttackSuite starts the host side once the victim runs: it checks
// that the host reaches the victim (so it has a neighbour and an FDB
// entry for it), captures on the bridge and opens the host service.
func NewNetAttackSuite(t *testing.T, bridge, gateway, victimIP, victimMAC string) *NetAttackSuite {
	t.Helper()
	s := &NetAttackSuite{Bridge: bridge, Gateway: gateway, VictimIP: victimIP, VictimMAC: victimMAC,
		helper: NetAttack(t), web: &http.Client{Timeout: 3 * time.Second}}
	if err := s.reachVictim(); err != nil {
		t.Fatalf("host to victim: %v", err)
	}
	s.victimPort = FDBPort(bridge, victimMAC)
	if got := NeighMAC(victimIP, bridge); got != victimMAC || s.victimPort == "" {
		t.Fatalf("test setup: host neighbour of the victim %q (want %s), fdb port %q", got, victimMAC, s.victimPort)
	}
	br, err := net.InterfaceByName(bridge)
	if err != nil {
		t.Fatal(err)
	}
	s.brMAC = br.HardwareAddr
	s.ipv6Before = HostIPv6(bridge)
	s.sniff = Sniff(t, bridge)
	// A host service on every address, IPv4 and IPv6.
	s.port = HostSecret(t, ":0")
	return s
}

// HostSecret is a host service that a guest must not reach: it listens on
// addr ("127.0.0.1:0", ":0") until the test ends, answers every
// connection with "HOST-SECRET", and returns its port.
func HostSecret(t testing.TB, addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HOST-SECRET\n"))
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func (s *NetAttackSuite) reachVictim() error {
	resp, err := s.web.Get("http://" + s.VictimIP + "/")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Run copies netattack into a and runs every attack from it.
func (s *NetAttackSuite) Run(t *testing.T, a Attacker) {
	t.Helper()
	f, err := os.Open(s.helper)
	if err != nil {
		t.Fatal(err)
	}
	out, code, err := a.Exec("cat > /tmp/netattack && chmod 755 /tmp/netattack", f)
	f.Close()
	if err != nil || code != 0 {
		t.Fatalf("copy netattack into the guest: %v %s", err, out)
	}
	var full string
	run := func(cmd string) (string, int) {
		out, code, err := a.Exec(cmd, nil)
		if err != nil {
			t.Fatalf("exec %q: %v", cmd, err)
		}
		full = strings.TrimSpace(out)
		return full, code
	}
	check := func(attack, expected string, ok bool, got string) {
		s.rows = append(s.rows, attackRow{attack + a.Tag, expected, got, ok})
		if !ok {
			t.Errorf("attack %q: expected %s, got:\n%s", attack+a.Tag, expected, full)
		}
	}
	short := func(s string) string {
		s = strings.ReplaceAll(strings.TrimSpace(s), "\n", " | ")
		if len(s) > 60 {
			s = s[:60] + "…"
		}
		return s
	}
	blocked, sentOK := "no packet socket", func(code int) bool { return code == 3 } // netattack: EPERM
	if a.Raw {
		blocked, sentOK = "sent, dropped at the port", func(code int) bool { return code == 0 }
	}
	n := len(s.rows)
	mark := func(what string) string { return fmt.Sprintf("TFATK-%s-%s-%d", what, a.IP, n) }
	gw, br := s.Gateway, s.brMAC.String()

	// Controls: the guest's own traffic does reach the host, so the host
	// side would see a forged frame that got through.
	m := mark("legit")
	out, code = run(fmt.Sprintf("/tmp/netattack send %s:9 %s", gw, m))
	check("control: own UDP datagram to the host", "reaches the host", code == 0 && s.sniff.Seen(m), short(out))
	if a.Raw {
		m = mark("legitraw")
		out, code = run(fmt.Sprintf("/tmp/netattack udp eth0 %s %s %s %s 9 %s", a.MAC, a.IP, br, gw, m))
		check("control: own frame on a packet socket", "reaches the host", code == 0 && s.sniff.Seen(m), short(out))
	} else {
		// Busybox's ping applet opens a raw socket only; ICMP datagram
		// sockets (iputils ping, language libraries) need no capability.
		out, code = run("/tmp/netattack ping " + a.IP)
		check("ping (ICMP datagram socket) without CAP_NET_RAW", "works (ping_group_range)", code == 0 && strings.Contains(out, "echo reply"), short(out))
	}

	out, code = run(fmt.Sprintf("/tmp/netattack arp-reply eth0 %s %s %s", s.VictimIP, gw, br))
	neigh := NeighMAC(s.VictimIP, s.Bridge)
	reach := s.reachVictim()
	check("ARP reply: victim's IP is-at my MAC", blocked+"; neighbour right",
		sentOK(code) && neigh == s.VictimMAC && reach == nil, short(fmt.Sprintf("%s; host neighbour %s, reach %v", out, neigh, reach)))

	m = mark("ipspoof")
	out, code = run(fmt.Sprintf("/tmp/netattack udp eth0 %s %s %s %s 9 %s", a.MAC, s.VictimIP, br, gw, m))
	check("IPv4 source spoofing (victim's address)", blocked, sentOK(code) && !s.sniff.Seen(m), short(out))

	m = mark("macspoof")
	out, code = run(fmt.Sprintf("/tmp/netattack udp eth0 %s %s %s %s 9 %s", s.VictimMAC, a.IP, br, gw, m))
	fdb := FDBPort(s.Bridge, s.VictimMAC)
	check("MAC spoofing (victim's MAC)", blocked+"; fdb right",
		sentOK(code) && !s.sniff.Seen(m) && fdb == s.victimPort && s.reachVictim() == nil, short(fmt.Sprintf("%s; fdb %s", out, fdb)))

	m = mark("dhcp")
	out, code = run(fmt.Sprintf("/tmp/netattack dhcp-offer eth0 %s %s", s.VictimIP, m))
	check("rogue DHCP offer", blocked, sentOK(code) && !s.sniff.Seen(m), short(out))

	m = mark("ra")
	out, code = run("/tmp/netattack ra eth0 2001:db8:77:: " + m)
	after := HostIPv6(s.Bridge)
	check("router advertisement to the host", blocked+"; host IPv6 same",
		sentOK(code) && !s.sniff.Seen(m) && after == s.ipv6Before, short(fmt.Sprintf("%s; host ipv6 on bridge: %q", out, after)))

	out, _ = run(fmt.Sprintf("/tmp/netattack tcp '[%s%%eth0]:%d' 3s", LinkLocal(s.brMAC), s.port))
	check("host service over IPv6 link-local", "refused", !strings.Contains(out, "HOST-SECRET"), short(out))

	out, _ = run(fmt.Sprintf("/tmp/netattack tcp %s:%d 3s", gw, s.port))
	check("host service on the bridge's IPv4 address", "refused", !strings.Contains(out, "HOST-SECRET"), short(out))
}

// Log prints the suite's table.
func (s *NetAttackSuite) Log(t *testing.T) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-58s %-42s %-4s %s\n", "ATTACK", "EXPECTED", "OK", "GOT")
	for _, r := range s.rows {
		ok := "yes"
		if !r.ok {
			ok = "NO"
		}
		fmt.Fprintf(&b, "%-58s %-42s %-4s %s\n", r.attack, r.expected, ok, r.got)
	}
	t.Log(b.String())
}
