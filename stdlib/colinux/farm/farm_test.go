//go:build linux

package farm_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
	"github.com/tinyfarm/tinyfarm/stdlib/persist"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

const testBridge = "tftest1"

func TestMain(m *testing.M) { guesttest.Main(m, testBridge) }

func mirror(t *testing.T) string { return minicore.Require(t).Mirror }

// TestProvisionOverSSHSurvivesRestart is the guests issue's acceptance on
// the Go API: two ns guests boot, nginx (with its dependency tree) is
// installed into each over SSH, bootlocal.sh starts it, both restart, and
// each answers HTTP on its own IP afterwards.
func TestProvisionOverSSHSurvivesRestart(t *testing.T) {
	guesttest.NeedRoot(t)
	ctx := context.Background()
	state := t.TempDir()
	fm := farm.New(state, farm.Options{
		Drivers: farm.DefaultDrivers(), Bridge: testBridge, Subnet: "10.77.251.0/24",
	})
	client, err := tcz.New(tcz.Config{URL: "file://" + mirror(t), Version: "15.x", Arch: "x86_64", Cache: filepath.Join(state, "tcz")})
	if err != nil {
		t.Fatal(err)
	}
	var guests []*farm.Guest
	for i, name := range []string{"webone", "webtwo"} {
		disk, hostKey := guesttest.SSHDisk(t, state)
		res, err := fm.Define(farm.Definition{Name: name, Driver: "ns", Disk: disk, MemBytes: 96 << 20, CPUs: 1, HostKey: hostKey, User: "root"}, farm.ChangeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("10.77.251.%d/24", i+2); res.Def.IP != want {
			t.Errorf("%s got ip %s, want %s", name, res.Def.IP, want)
		}
		g, err := fm.Guest(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Destroy(context.Background(), false) })
		if _, err := g.Start(ctx); err != nil {
			t.Fatal(err)
		}
		guests = append(guests, g)
	}
	for _, g := range guests {
		t0 := time.Now()
		if err := g.WaitReady(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s ready (marker + SSH handshake) in %v", g.Def.Name, time.Since(t0))
		tg, err := g.Target(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		ir, err := client.Install(ctx, tg, "nginx", tcz.InstallOptions{})
		if err != nil {
			t.Fatalf("install nginx into %s: %v", g.Def.Name, err)
		}
		t.Logf("%s: nginx + %d deps installed over SSH in %v", g.Def.Name, len(ir.Order)-1, time.Since(t1))
		page := fmt.Sprintf("<h1>%s</h1>\n", g.Def.Name)
		if _, err := persist.Bootlocal(ctx, tg, []string{
			"mkdir -p /usr/local/share/nginx/html",
			"echo '" + strings.TrimSpace(page) + "' > /usr/local/share/nginx/html/index.html",
			"/usr/local/sbin/nginx",
		}, persist.BlockOptions{ID: "nginx"}); err != nil {
			t.Fatal(err)
		}
		again, err := client.Install(ctx, tg, "nginx", tcz.InstallOptions{})
		if err != nil || again.Changed {
			t.Errorf("second install: changed=%v err=%v, want unchanged", again.Changed, err)
		}

	}
	for _, g := range guests {
		if _, err := g.Stop(ctx, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if st, _ := g.Status(ctx); st.State != driver.Stopped {
			t.Fatalf("%s after stop: %+v", g.Def.Name, st)
		}
		if _, err := g.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range guests {
		if err := g.WaitReady(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		addr, _ := g.Addr(80)
		body := httpGet(t, "http://"+addr+"/")
		if !strings.Contains(body, "<h1>"+g.Def.Name+"</h1>") {
			t.Errorf("%s after restart serves %q", g.Def.Name, body)
		}
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := http.Client{Timeout: 3 * time.Second}
	var lastErr error
	for i := 0; i < 50; i++ { // nginx starts in the background from bootlocal.sh
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET %s: %v", url, lastErr)
	return ""
}

func TestOvercommitRefused(t *testing.T) {
	guesttest.NeedRoot(t)
	state := t.TempDir()
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: testBridge,
		Subnet: "10.77.251.0/24", MemTotal: 256 << 20, Reserve: 64 << 20})
	disk, hk := guesttest.SSHDisk(t, state)
	if _, err := fm.Define(farm.Definition{Name: "big", Driver: "ns", Disk: disk, MemBytes: 512 << 20, HostKey: hk, User: "root"}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	g, _ := fm.Guest(context.Background(), "big")
	_, err := g.Start(context.Background())
	if !errors.Is(err, farm.ErrOvercommit) || !strings.Contains(err.Error(), "stop a guest or lower mem") {
		t.Fatalf("start of a guest larger than the host: %v", err)
	}
	if g.Running(context.Background()) {
		t.Error("overcommitting guest runs")
	}
	if _, err := fm.Plan(context.Background(), 128<<20, 64<<20, 2); !errors.Is(err, farm.ErrOvercommit) {
		t.Errorf("plan of 2x128M on 256M-64M: %v", err)
	}
}

func TestDefineValidatesAndKeepsIdentity(t *testing.T) {
	fm := farm.New(t.TempDir(), farm.Options{})
	dir := t.TempDir()
	disk := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	x, y, z := disk("x.img"), disk("y.img"), disk("z.img")
	for _, d := range []farm.Definition{
		{Name: "Bad_Name", Driver: "ns", Disk: x, MemBytes: 64 << 20},
		{Name: "ok", Driver: "vbox", Disk: x, MemBytes: 64 << 20},
		{Name: "ok", Driver: "ns", MemBytes: 64 << 20},
		{Name: "ok", Driver: "ns", Disk: x, MemBytes: 1},
		{Name: "ok", Driver: "qemu", Disk: x, MemBytes: 64 << 20},
		{Name: "ok", Driver: "qemu", Kernel: "/k", Disk: x, MemBytes: 64 << 20, NetRaw: true}, // ns only
		{Name: "ok", Driver: "ns", Disk: x, MemBytes: 64 << 20, AutostartPriority: 3},         // without autostart
		{Name: "ok", Driver: "ns", Disk: x, MemBytes: 64 << 20, Autostart: true, AutostartDelay: -time.Second},
	} {
		if _, err := fm.Define(d, farm.ChangeOptions{}); !errors.Is(err, farm.ErrInvalid) {
			t.Errorf("Define(%+v) = %v, want ErrInvalid", d, err)
		}
	}
	// A frugal namespace guest cannot boot (its monitor has no frugal
	// root): refused when defined, as unsupported, not at its first start.
	_, err := fm.Define(farm.Definition{Name: "fru", Driver: "ns", Layout: driver.Frugal, Core: "/core.gz", Disk: x, MemBytes: 64 << 20}, farm.ChangeOptions{})
	if !errors.Is(err, driver.ErrUnsupported) || !strings.Contains(err.Error(), "frugal guests") {
		t.Errorf("frugal ns guest: %v, want unsupported", err)
	}
	// A disk that does not exist is refused before an address is given
	// out; in check mode (image.build has not made it yet) it is planned.
	missing := filepath.Join(dir, "nosuch.img")
	if _, err := fm.Define(farm.Definition{Name: "m", Driver: "ns", Disk: missing, MemBytes: 64 << 20}, farm.ChangeOptions{}); !errors.Is(err, farm.ErrInvalid) || !strings.Contains(err.Error(), missing+" does not exist") {
		t.Errorf("missing disk: %v", err)
	}
	if _, err := fm.Define(farm.Definition{Name: "m", Driver: "ns", Disk: missing, MemBytes: 64 << 20}, farm.ChangeOptions{Check: true}); err != nil {
		t.Errorf("missing disk in check mode: %v", err)
	}
	r1, err := fm.Define(farm.Definition{Name: "a", Driver: "ns", Disk: x, MemBytes: 64 << 20}, farm.ChangeOptions{})
	if err != nil || !r1.Created || r1.Def.IP != "10.77.0.2/24" {
		t.Fatal(r1, err)
	}
	r2, _ := fm.Define(farm.Definition{Name: "a", Driver: "ns", Disk: x, MemBytes: 64 << 20}, farm.ChangeOptions{})
	if r2.Changed || r2.Def.IP != r1.Def.IP || r2.Def.MAC != r1.Def.MAC {
		t.Errorf("redefining identically: changed=%v ip %s->%s", r2.Changed, r1.Def.IP, r2.Def.IP)
	}
	r3, _ := fm.Define(farm.Definition{Name: "a", Driver: "ns", Disk: x, MemBytes: 128 << 20}, farm.ChangeOptions{Check: true})
	if !r3.Changed || !strings.Contains(r3.Diff, `"mem": 134217728`) {
		t.Errorf("dry-run change: %+v", r3)
	}
	if d, _ := fm.Get("a"); d.MemBytes != 64<<20 {
		t.Error("dry run wrote the definition")
	}
	// One disk, one guest: another guest naming a's disk (also through
	// a symlink) is refused with both names, unless both share it
	// read-only.
	link := filepath.Join(dir, "link.img")
	os.Symlink(x, link)
	for _, p := range []string{x, link} {
		_, err := fm.Define(farm.Definition{Name: "dup", Driver: "ns", Disk: p, MemBytes: 64 << 20}, farm.ChangeOptions{})
		if !errors.Is(err, farm.ErrInvalid) || !strings.Contains(err.Error(), "guest dup: disk") || !strings.Contains(err.Error(), "guest a's") {
			t.Errorf("a second guest on %s: %v", p, err)
		}
	}
	if _, err := fm.Get("dup"); err == nil {
		t.Error("a refused guest was defined")
	}
	for _, n := range []string{"ro1", "ro2"} {
		if _, err := fm.Define(farm.Definition{Name: n, Driver: "ns", Disk: y, DiskRO: true, MemBytes: 64 << 20}, farm.ChangeOptions{}); err != nil {
			t.Errorf("read-only share %s: %v", n, err)
		}
	}
	raw, err := fm.Define(farm.Definition{Name: "raw", Driver: "ns", Disk: z, MemBytes: 64 << 20, NetRaw: true}, farm.ChangeOptions{})
	if err != nil || !fm.Spec(raw.Def).NetRaw || !strings.Contains(raw.Diff, `"net_raw": true`) {
		t.Errorf("net_raw guest: %v, spec net_raw %v, diff %s", err, fm.Spec(raw.Def).NetRaw, raw.Diff)
	}
	b, _ := fm.Define(farm.Definition{Name: "b", Driver: "ns", Disk: disk("b.img"), MemBytes: 64 << 20, Autostart: true, AutostartPriority: 2}, farm.ChangeOptions{})
	if b.Def.IP == r1.Def.IP {
		t.Error("two guests got the same IP")
	}
}

// TestQemuGuestProvisionSurvivesRestart: the same boot -> install over SSH
// -> bootlocal -> restart -> HTTP flow on the qemu driver (TCG), reached
// through host port forwards on 127.0.0.1.
func TestQemuGuestProvisionSurvivesRestart(t *testing.T) {
	rel := guesttest.NeedVM(t) // root: the disk is assembled as root (owners, setuid)
	ctx := context.Background()
	state := t.TempDir()
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers()})
	client, err := tcz.New(tcz.Config{URL: "file://" + rel.Mirror, Version: "15.x", Arch: "x86_64", Cache: filepath.Join(state, "tcz")})
	if err != nil {
		t.Fatal(err)
	}
	httpPort := freeTCPPort(t)
	g, boot := guesttest.QemuGuest(t, fm, state, farm.Definition{Name: "vm1", MemBytes: 192 << 20,
		Forwards: []driver.Forward{{Proto: "tcp", HostPort: httpPort, GuestPort: 80}}})
	t.Logf("qemu guest boot -> SSH-ready in %v (ssh forward %v)", boot, g.Def.Forwards)
	tg, err := g.Target(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Install(ctx, tg, "nginx", tcz.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := persist.Bootlocal(ctx, tg, []string{"echo '<h1>vm1</h1>' > /usr/local/share/nginx/html/index.html", "/usr/local/sbin/nginx"}, persist.BlockOptions{ID: "nginx"}); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	if _, err := g.Stop(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if st, _ := g.Status(ctx); st.State != driver.Stopped {
		t.Fatalf("after stop: %+v", st)
	}
	t.Logf("clean stop (poweroff over SSH) in %v", time.Since(t1))
	if _, err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitReady(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", httpPort)); !strings.Contains(body, "<h1>vm1</h1>") {
		t.Errorf("vm1 after restart serves %q", body)
	}
}

func freeTCPPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestQemuGuestOnBridge is tap-on-bridge: a qemu guest (TCG) with net =
// "bridge" on a test bridge gets its farm address by DHCP from tinyfarm,
// is reached over SSH at ip:22 and HTTP at ip:80, and leaves no tap and no
// DHCP server behind once stopped.
func TestQemuGuestOnBridge(t *testing.T) {
	rel := guesttest.NeedVM(t)
	const bridge = "tftest7"
	ctx := context.Background()
	state := t.TempDir()
	leases := filepath.Join(state, "guests")
	t.Cleanup(func() {
		guesttest.KillDHCP(state, bridge) // the server this test started
		farmnet.DeleteBridge(bridge)
	})
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: bridge, Subnet: "10.77.249.0/24"})
	client, err := tcz.New(tcz.Config{URL: "file://" + rel.Mirror, Version: "15.x", Arch: "x86_64", Cache: filepath.Join(state, "tcz")})
	if err != nil {
		t.Fatal(err)
	}
	disk := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	res, err := fm.Define(farm.Definition{Name: "vm7", Driver: "qemu", Net: "bridge", Disk: disk.Path, MemBytes: 192 << 20, CPUs: 1,
		Kernel: rel.Vmlinux, Initrds: []string{rel.ModulesInitrd}, HostKey: disk.HostKey, User: "root"}, farm.ChangeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Def.IP != "10.77.249.2/24" || len(res.Def.Forwards) != 0 {
		t.Fatalf("bridge qemu guest: ip %q forwards %v; want 10.77.249.2/24 and no forwards", res.Def.IP, res.Def.Forwards)
	}
	g, _ := fm.Guest(ctx, "vm7")
	t.Cleanup(func() { g.Destroy(context.Background(), false) })
	tap := farmnet.TapName(fm.Spec(g.Def).Instance())
	t0 := time.Now()
	if _, err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !farmnet.LinkExists(tap) || !farmnet.DHCPRunning(leases, bridge) {
		t.Fatalf("after start: tap %s exists %v, dhcp server runs %v", tap, farmnet.LinkExists(tap), farmnet.DHCPRunning(leases, bridge))
	}
	if err := g.WaitReady(ctx, 120*time.Second); err != nil { // includes SSH on 10.77.249.2:22, host key pinned
		t.Fatal(err)
	}
	t.Logf("qemu guest on the bridge: boot -> SSH-ready at %s in %v", res.Def.IP, time.Since(t0))
	// The address came from our DHCP server: the guest booted without
	// nodhcp, udhcpc holds the lease, and the server logged its ACK.
	out, err := g.Exec(ctx, []string{"sh", "-c", "cat /proc/cmdline; ifconfig eth0; ps | grep [u]dhcpc"}, driver.ExecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out.Stdout); strings.Contains(s, "nodhcp") || !strings.Contains(s, "addr:10.77.249.2 ") || !strings.Contains(s, "udhcpc") {
		t.Errorf("guest network:\n%s", s)
	}
	dlog, _ := os.ReadFile(filepath.Join(leases, ".dhcp-"+bridge+".log"))
	if !strings.Contains(string(dlog), "REQUEST "+res.Def.MAC+" -> ACK 10.77.249.2") {
		t.Errorf("dhcp log has no ACK for %s:\n%s", res.Def.MAC, dlog)
	}
	tg, err := g.Target(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Install(ctx, tg, "nginx", tcz.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Exec(ctx, []string{"sh", "-c", "echo '<h1>vm7</h1>' > /usr/local/share/nginx/html/index.html && /usr/local/sbin/nginx"}, driver.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	addr, err := g.Addr(80)
	if err != nil || addr != "10.77.249.2:80" {
		t.Fatalf("addr of port 80 = %q, %v", addr, err)
	}
	if body := httpGet(t, "http://"+addr+"/"); !strings.Contains(body, "<h1>vm7</h1>") {
		t.Errorf("vm7 serves %q", body)
	}
	pid := farmnet.DHCPPID(leases, bridge)
	if _, err := g.Stop(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if st, _ := g.Status(ctx); st.State != driver.Stopped {
		t.Errorf("after stop: %+v", st)
	}
	if farmnet.LinkExists(tap) {
		t.Errorf("tap %s left after stop", tap)
	}
	if farmnet.DHCPRunning(leases, bridge) || pid == 0 || syscall.Kill(pid, 0) == nil {
		t.Errorf("dhcp server (pid %d) left after stop", pid)
	}
}

// TestPlanCountsOverhead: a plan counts each guest's quota (or its
// footprint, when smaller) plus what the driver costs beyond it.
func TestPlanCountsOverhead(t *testing.T) {
	fm := farm.New(t.TempDir(), farm.Options{MemTotal: 1 << 30, Reserve: 128 << 20})
	ctx := context.Background()
	p, err := fm.PlanWith(ctx, farm.PlanOptions{Granularity: 16 << 20, Driver: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	if want := int((896 << 20) / (16<<20 + ns.GuestOverhead)); p.Guests != want || p.Overhead != ns.GuestOverhead {
		t.Errorf("16M ns guests on 1G - 128M: %+v, want %d guests", p, want)
	}
	p, err = fm.PlanWith(ctx, farm.PlanOptions{Granularity: 16 << 20, Footprint: 1600 << 10, Driver: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	if want := int((896 << 20) / (1600<<10 + ns.GuestOverhead)); p.Guests != want || p.PerGuest != 1600<<10+ns.GuestOverhead {
		t.Errorf("footprint 1.6M: %+v, want %d guests", p, want)
	}
	if _, err := fm.PlanWith(ctx, farm.PlanOptions{Granularity: 16 << 20, Driver: "ns", Want: 60}); !errors.Is(err, farm.ErrOvercommit) {
		t.Errorf("60 guests of 16M plus overhead on 896M: %v", err)
	}
	p, _ = fm.PlanWith(ctx, farm.PlanOptions{Granularity: 128 << 20, Driver: "qemu"})
	if p.Guests != 7 || p.Overhead != 0 {
		t.Errorf("qemu 128M guests: %+v", p)
	}
}
