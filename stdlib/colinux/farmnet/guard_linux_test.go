package farmnet_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
)

func nftTable() string {
	out, _ := exec.Command("nft", "list", "table", "bridge", "tinyfarm").CombinedOutput()
	return string(out)
}

// TestPortGuardLifecycle: a port's filter comes with GuardPort (twice is
// once), comes back with RebuildGuards after a firewall flush, and goes
// with DeletePort; the bridge has IPv6 off and an IPv6 host guard.
func TestPortGuardLifecycle(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bridges need root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed (scripts/deps.sh)")
	}
	const bridge, port = "tfsec1", "tfsec1p"
	t.Cleanup(func() { farmnet.DeleteLink(port); farmnet.DeleteBridge(bridge) })
	br, err := farmnet.EnsureBridge(bridge, "10.77.241.1/24")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{{"disable_ipv6", "1"}, {"accept_ra", "0"}, {"autoconf", "0"}} {
		if b, _ := os.ReadFile("/proc/sys/net/ipv6/conf/" + bridge + "/" + kv[0]); strings.TrimSpace(string(b)) != kv[1] {
			t.Errorf("bridge ipv6 %s = %q, want %s", kv[0], b, kv[1])
		}
	}
	if out, err := exec.Command("ip6tables", "-w", "-C", "INPUT", "-i", bridge, "-j", "TF-"+bridge).CombinedOutput(); err != nil {
		t.Errorf("no IPv6 host guard: %v %s", err, out)
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, MasterIndex: br.Attrs().Index}, PeerName: port + "x"}); err != nil {
		t.Fatal(err)
	}
	p := farmnet.Port{Name: port, MAC: []byte{2, 0x74, 0x66, 0, 0xf1, 5}, IP: []byte{10, 77, 241, 5}}
	if err := farmnet.GuardPort(p); err != nil {
		t.Fatal(err)
	}
	first := nftTable()
	if !strings.Contains(first, "chain port-"+port) || !strings.Contains(first, "ip saddr 10.77.241.5 accept") {
		t.Fatalf("no filter for the port:\n%s", first)
	}
	if err := farmnet.GuardPort(p); err != nil || nftTable() != first {
		t.Errorf("GuardPort twice: %v\n%s", err, nftTable())
	}
	exec.Command("nft", "delete", "table", "bridge", "tinyfarm").Run()
	exec.Command("ip6tables", "-w", "-D", "INPUT", "-i", bridge, "-j", "TF-"+bridge).Run()
	if err := farmnet.RebuildGuards(bridge); err != nil {
		t.Fatal(err)
	}
	if got := nftTable(); got != first {
		t.Errorf("after a flush, RebuildGuards made:\n%s\nwant:\n%s", got, first)
	}
	if err := exec.Command("ip6tables", "-w", "-C", "INPUT", "-i", bridge, "-j", "TF-"+bridge).Run(); err != nil {
		t.Errorf("RebuildGuards did not put back the IPv6 host guard: %v", err)
	}
	if err := farmnet.DeletePort(port); err != nil {
		t.Fatal(err)
	}
	if got := nftTable(); strings.Contains(got, port) || farmnet.LinkExists(port) {
		t.Errorf("after DeletePort: link %v, filter:\n%s", farmnet.LinkExists(port), got)
	}
	if err := farmnet.GuardPort(p); err == nil {
		t.Errorf("GuardPort of a deleted port: no error")
	}
}

// BenchmarkGuardPort measures what a guest start pays for its port filter
// on a bridge that already carries 100 guarded ports (the
// whole table is rebuilt in one nft transaction). Root only:
//
//	go test ./stdlib/colinux/farmnet -run XXX -bench GuardPort
func BenchmarkGuardPort(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("bridges need root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		b.Skip("nft not installed (scripts/deps.sh)")
	}
	const bridge, n = "tfsecb0", 100
	var ports []farmnet.Port
	b.Cleanup(func() {
		for _, p := range ports {
			farmnet.DeleteLink(p.Name)
		}
		farmnet.DeleteBridge(bridge)
	})
	br, err := farmnet.EnsureBridge(bridge, "10.77.243.1/24")
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("tfsecp%d", i)
		farmnet.DeleteLink(name) // from the benchmark's calibration run
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MasterIndex: br.Attrs().Index}, PeerName: name + "x"}); err != nil {
			b.Fatalf("veth %s: %v", name, err)
		}
		p := farmnet.Port{Name: name, MAC: []byte{2, 0x74, 0x66, 0, 0xf3, byte(i)}, IP: []byte{10, 77, 243, byte(i + 2)}}
		ports = append(ports, p)
		if err := farmnet.GuardPort(p); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := farmnet.GuardPort(ports[i%n]); err != nil {
			b.Fatal(err)
		}
	}
}
