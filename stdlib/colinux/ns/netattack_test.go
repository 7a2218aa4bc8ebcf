//go:build linux

package ns_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
)

// The network attack suite runs on a bridge and subnet of its own.
const (
	secBridge = "tfsec0"
	secNet    = "10.77.240."
	secGW     = secNet + "1"
)

// TestNetAttacksFromUserNSGuestRoot: a tenant's root (user-namespace mode,
// the default) forges frames on the farm bridge: ARP for another guest's
// address, spoofed IPv4 source and MAC, a rogue DHCP offer, a router
// advertisement to the host, and tries host services over IPv6 link-local
// and the bridge's IPv4 address. Without CAP_NET_RAW (the default) it
// cannot open a packet socket at all; with net_raw = true it can, and the
// port filter drops the forged frames. Each result is checked on the host.
func TestNetAttacksFromUserNSGuestRoot(t *testing.T) { netAttackSuite(t, true) }

// TestNetAttacksFromGuestRoot is the same with userns = false.
func TestNetAttacksFromGuestRoot(t *testing.T) { netAttackSuite(t, false) }

func secSpec(t *testing.T, name, disk string, last int, userns, netRaw bool) driver.Spec {
	return driver.Spec{
		Name: name, Dir: filepath.Join(t.TempDir(), "run"), MemBytes: 64 << 20, CPUs: 0.5,
		Layout: driver.Scatter, Disks: []driver.Disk{{Path: disk}}, UserNS: userns, NetRaw: netRaw,
		Net: driver.Net{Mode: "bridge", Bridge: secBridge, IP: fmt.Sprintf("%s%d/24", secNet, last),
			Gateway: secGW, MAC: fmt.Sprintf("02:74:66:00:f0:%02x", last)},
	}
}

// attackRow is one line of an attack suite's table.
type attackRow struct {
	attack, expected, got string
	ok                    bool
}

func logAttackTable(t *testing.T, rows []attackRow) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-58s %-34s %-4s %s\n", "ATTACK", "EXPECTED", "OK", "GOT")
	for _, r := range rows {
		ok := "yes"
		if !r.ok {
			ok = "NO"
		}
		fmt.Fprintf(&b, "%-52s %-42s %-4s %s\n", r.attack, r.expected, ok, r.got)
	}
	t.Log(b.String())
}

func netAttackSuite(t *testing.T, userns bool) {
	needRoot(t)
	if userns && !ns.UserNSAvailable() {
		t.Skip("user namespaces unavailable here")
	}
	t.Cleanup(func() { ns.DeleteBridge(secBridge) }) // last: after the guests
	helper := guesttest.NetAttack(t)
	base := 20
	if userns {
		base = 40
	}
	disk := scatterDisk(t, "mkdir -p /opt/www; echo VICTIM-PAGE > /opt/www/index.html; httpd -p 80 -h /opt/www")
	victimIP := fmt.Sprintf("%s%d", secNet, base+2)
	victim := secSpec(t, fmt.Sprintf("secvictim%d", base), disk, base+2, userns, false)
	start(t, victim)
	victimMAC := victim.Net.MAC

	// The host knows the victim: a neighbour entry and a bridge FDB entry.
	web := &http.Client{Timeout: 3 * time.Second}
	reachVictim := func() error {
		resp, err := web.Get("http://" + victimIP + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := reachVictim(); err != nil {
		t.Fatalf("host to victim: %v", err)
	}
	victimPort := guesttest.FDBPort(secBridge, victimMAC)
	if got := guesttest.NeighMAC(victimIP, secBridge); got != victimMAC || victimPort == "" {
		t.Fatalf("test setup: host neighbour of the victim %q (want %s), fdb port %q", got, victimMAC, victimPort)
	}
	br, err := net.InterfaceByName(secBridge)
	if err != nil {
		t.Fatal(err)
	}
	brMAC := br.HardwareAddr.String()
	ipv6Before := guesttest.HostIPv6(secBridge)
	sniff := guesttest.Sniff(t, secBridge)

	// A host service on every address, IPv4 and IPv6.
	ln, err := net.Listen("tcp", ":0")
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
	port := ln.Addr().(*net.TCPAddr).Port

	var rows []attackRow
	var full string
	check := func(attack, expected string, ok bool, got string) {
		rows = append(rows, attackRow{attack, expected, got, ok})
		if !ok {
			t.Errorf("attack %q: expected %s, got:\n%s", attack, expected, full)
		}
	}
	short := func(s string) string {
		s = strings.ReplaceAll(strings.TrimSpace(s), "\n", " | ")
		if len(s) > 60 {
			s = s[:60] + "…"
		}
		return s
	}

	for i, netRaw := range []bool{false, true} {
		ip := fmt.Sprintf("%s%d", secNet, base+3+i)
		s := secSpec(t, fmt.Sprintf("secatk%d", base+i), scatterDisk(t, ""), base+3+i, userns, netRaw)
		g := start(t, s)
		ex := g.(driver.Execer)
		f, err := os.Open(helper)
		if err != nil {
			t.Fatal(err)
		}
		res, err := ex.Exec(context.Background(), []string{"sh", "-c", "cat > /tmp/netattack && chmod 755 /tmp/netattack"}, driver.ExecOptions{Stdin: f})
		f.Close()
		if err != nil || res.Code != 0 {
			t.Fatalf("copy netattack into the guest: %v %s", err, res.Stderr)
		}
		run := func(cmd string) (string, int) {
			res, err := ex.Exec(context.Background(), []string{"sh", "-c", cmd}, driver.ExecOptions{})
			if err != nil {
				t.Fatalf("exec %q: %v", cmd, err)
			}
			full = strings.TrimSpace(string(res.Stdout) + string(res.Stderr))
			return full, res.Code
		}
		tag, blocked := "", "no packet socket"
		sentOK := func(code int) bool { return code == 3 } // netattack: EPERM
		if netRaw {
			tag, blocked = " (net_raw)", "sent, dropped at the port"
			sentOK = func(code int) bool { return code == 0 }
		}
		mark := func(what string) string { return fmt.Sprintf("TFATK-%s-%d-%d", what, base, i) }

		// Controls: the guest's own traffic does reach the host, so the
		// host side would see a forged frame that got through.
		m := mark("legit")
		out, code := run(fmt.Sprintf("/tmp/netattack send %s:9 %s", secGW, m))
		check("control: own UDP datagram to the host"+tag, "reaches the host", code == 0 && sniff.Seen(m), short(out))
		if netRaw {
			m = mark("legitraw")
			out, code = run(fmt.Sprintf("/tmp/netattack udp eth0 %s %s %s %s 9 %s", s.Net.MAC, ip, brMAC, secGW, m))
			check("control: own frame on a packet socket"+tag, "reaches the host", code == 0 && sniff.Seen(m), short(out))
		} else {
			// Busybox's ping applet opens a raw socket only; ICMP datagram
			// sockets (iputils ping, language libraries) need no capability.
			out, code = run("/tmp/netattack ping " + ip)
			check("ping (ICMP datagram socket) without CAP_NET_RAW", "works (ping_group_range)", code == 0 && strings.Contains(out, "echo reply"), short(out))
		}

		out, code = run(fmt.Sprintf("/tmp/netattack arp-reply eth0 %s %s %s", victimIP, secGW, brMAC))
		neigh := guesttest.NeighMAC(victimIP, secBridge)
		reach := reachVictim()
		check("ARP reply: victim's IP is-at my MAC"+tag, blocked+"; neighbour right",
			sentOK(code) && neigh == victimMAC && reach == nil, short(fmt.Sprintf("%s; host neighbour %s, reach %v", out, neigh, reach)))

		m = mark("ipspoof")
		out, code = run(fmt.Sprintf("/tmp/netattack udp eth0 %s %s %s %s 9 %s", s.Net.MAC, victimIP, brMAC, secGW, m))
		check("IPv4 source spoofing (victim's address)"+tag, blocked, sentOK(code) && !sniff.Seen(m), short(out))

		m = mark("macspoof")
		out, code = run(fmt.Sprintf("/tmp/netattack udp eth0 %s %s %s %s 9 %s", victimMAC, ip, brMAC, secGW, m))
		fdb := guesttest.FDBPort(secBridge, victimMAC)
		check("MAC spoofing (victim's MAC)"+tag, blocked+"; fdb right",
			sentOK(code) && !sniff.Seen(m) && fdb == victimPort && reachVictim() == nil, short(fmt.Sprintf("%s; fdb %s", out, fdb)))

		m = mark("dhcp")
		out, code = run(fmt.Sprintf("/tmp/netattack dhcp-offer eth0 %s%d %s", secNet, 99, m))
		check("rogue DHCP offer"+tag, blocked, sentOK(code) && !sniff.Seen(m), short(out))

		m = mark("ra")
		out, code = run("/tmp/netattack ra eth0 2001:db8:77:: " + m)
		after := guesttest.HostIPv6(secBridge)
		check("router advertisement to the host"+tag, blocked+"; host IPv6 same",
			sentOK(code) && !sniff.Seen(m) && after == ipv6Before, short(fmt.Sprintf("%s; host ipv6 on bridge: %q", out, after)))

		ll := guesttest.LinkLocal(br.HardwareAddr)
		out, _ = run(fmt.Sprintf("/tmp/netattack tcp '[%s%%eth0]:%d' 3s", ll, port))
		check("host service over IPv6 link-local"+tag, "refused", !strings.Contains(out, "HOST-SECRET"), short(out))

		out, _ = run(fmt.Sprintf("/tmp/netattack tcp %s:%d 3s", secGW, port))
		check("host service on the bridge's IPv4 address"+tag, "refused", !strings.Contains(out, "HOST-SECRET"), short(out))
	}
	logAttackTable(t, rows)
}
