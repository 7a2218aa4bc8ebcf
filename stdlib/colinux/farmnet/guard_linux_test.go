package farmnet_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

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
	for _, kv := range [][2]string{{"disable_ipv6", "1"}, {"accept_ra", "0"}, {"autoconf", "0"}} {
		if b, _ := os.ReadFile("/proc/sys/net/ipv6/conf/" + port + "/" + kv[0]); strings.TrimSpace(string(b)) != kv[1] {
			t.Errorf("port ipv6 %s = %q, want %s", kv[0], b, kv[1])
		}
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

// TestPortFilterLeavesOtherBridgesAlone: with a guest port guarded on a
// farm bridge, a plain bridge of the host (docker0, virbr0, another
// farm's) still carries its own ports' traffic, while a port there with a
// guest port's name but no filter is dropped. Real traffic: the host
// fetches a page from busybox httpd in network namespaces the test makes.
func TestPortFilterLeavesOtherBridgesAlone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bridges need root")
	}
	for _, tool := range []string{"nft", "busybox", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh)", tool)
		}
	}
	const farmBr, guestPort, plainBr = "tfsec5", "tf-secg5", "tfsec4"
	t.Cleanup(func() {
		farmnet.DeletePort(guestPort)
		farmnet.DeleteBridge(farmBr)
		farmnet.DeleteLink(plainBr)
	})
	br, err := farmnet.EnsureBridge(farmBr, "10.77.245.1/24")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: guestPort, MasterIndex: br.Attrs().Index}, PeerName: "tf-secg5x"}); err != nil {
		t.Fatal(err)
	}
	if err := farmnet.GuardPort(farmnet.Port{Name: guestPort, MAC: []byte{2, 0x74, 0x66, 0, 0xf5, 2}, IP: []byte{10, 77, 245, 2}}); err != nil {
		t.Fatal(err)
	}
	sh := func(script string) {
		t.Helper()
		if out, err := exec.Command("sh", "-ec", script).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	sh("ip link add " + plainBr + " type bridge && ip addr add 10.77.244.1/24 dev " + plainBr + " && ip link set " + plainBr + " up")
	// endpoint puts a network namespace with a web server on the plain
	// bridge through a port named port, at 10.77.244.<last>.
	endpoint := func(port string, last int) string {
		nsName := fmt.Sprintf("tfsecns%d", last)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "pids", nsName).Output(); err == nil {
				for _, pid := range strings.Fields(string(out)) {
					exec.Command("kill", "-9", pid).Run() // the httpd this test started
				}
			}
			exec.Command("ip", "netns", "del", nsName).Run()
			farmnet.DeleteLink(port)
		})
		www := t.TempDir()
		os.WriteFile(www+"/index.html", []byte("PLAIN-BRIDGE-OK\n"), 0o644)
		sh(fmt.Sprintf(`ip netns add %[1]s
ip link add %[2]s master %[3]s type veth peer name eth0 netns %[1]s
ip link set %[2]s up
ip -n %[1]s link set lo up
ip -n %[1]s addr add 10.77.244.%[4]d/24 dev eth0
ip -n %[1]s link set eth0 up
ip netns exec %[1]s busybox httpd -p 80 -h %[5]s`, nsName, port, plainBr, last, www))
		return fmt.Sprintf("http://10.77.244.%d/", last)
	}
	plain := endpoint("tfsec4p", 2)
	unguarded := endpoint("tf-secu4", 3)
	web := &http.Client{Timeout: 2 * time.Second}
	get := func(url string) (string, error) {
		resp, err := web.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if body, err := get(plain); err != nil || !strings.Contains(body, "PLAIN-BRIDGE-OK") {
		t.Errorf("a plain bridge's port with the guest filters on: %q, %v\n%s", body, err, nftTable())
	}
	if body, err := get(unguarded); err == nil {
		t.Errorf("an unguarded port with a guest port's name passed traffic: %q", body)
	}
}
