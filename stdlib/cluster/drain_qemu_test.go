//go:build linux

package cluster_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/cluster"
	cfarm "github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
)

// TestDrainQemuLive: the drain test's three hosts (newSiteFarm), a qemu
// guest (TCG) on h3's farm bridge serving a page with its boot id through
// the cluster's routes. h3 is drained while a client asks the site
// through every host's proxy: the guest moves live to another host, whose
// farm has another subnet, and keeps its address there (a kept address:
// farmnet's kept_linux.go); its boot id is the same (it did not reboot),
// the site answered throughout with no gap longer than the move's
// downtime plus the client's timeout, and h3 keeps nothing of it (its
// QEMU, tap, kept routes or addresses). Restarted on its new host, it
// boots with the same address (the farm's DHCP server answers it as its
// old farm did) and its site answers again; destroyed, it leaves nothing
// on that host's bridge either.
func TestDrainQemuLive(t *testing.T) {
	rel := guesttest.NeedVM(t)
	t0 := time.Now()
	step := func(s string) { t.Logf("%5.1fs %s", time.Since(t0).Seconds(), s) }
	f := newSiteFarm(t)
	h1, h3 := f.hosts[0], f.hosts[2]
	step("three hosts joined, each with its sshd")
	// The guest's definition carries its kernel's path, which the far
	// host's gate wants inside its own state dir (a cluster key brings no
	// other host file into a VM): on real hosts one path, such as
	// /var/lib/tinyfarm/kernels/, is inside every host's. Here each host
	// has its own state dir, so the kernel lies in h1's and h2 is
	// cordoned (drained of nothing): the guest goes to h1.
	kdir := filepath.Join(h1.home, "kernels")
	os.MkdirAll(kdir, 0o755)
	kernel, initrd := filepath.Join(kdir, "vmlinux"), filepath.Join(kdir, "modules.gz")
	for src, dst := range map[string]string{rel.Vmlinux: kernel, rel.ModulesInitrd: initrd} {
		if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
	}
	if out := f.mustTF(h1, "cluster", "drain", "h2"); !strings.Contains(out, "nothing to do") {
		t.Fatalf("cordoning h2:\n%s", out)
	}

	// The guest logs in as tc (colinux.guest's user): its first boot
	// gives tc root's key, the farm key of h3, which the disk has (the
	// move adds h1's farm key, which later boots keep).
	disk := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: h3.home, Bootlocal: `
[ -f /home/tc/.ssh/authorized_keys ] || { mkdir -p /home/tc/.ssh && cp /root/.ssh/authorized_keys /home/tc/.ssh/ && chown -R tc:staff /home/tc/.ssh && chmod 700 /home/tc/.ssh; }
mkdir -p /opt/www; echo "site webq boot $(cat /proc/sys/kernel/random/boot_id)" > /opt/www/index.html; httpd -p 80 -h /opt/www`})
	own := filepath.Join(h3.home, "webq.img")
	if out, err := exec.Command("cp", "--sparse=always", disk.Path, own).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	pb := filepath.Join(t.TempDir(), "qemu.lua")
	os.WriteFile(pb, []byte(`
local cluster, colinux = require("cluster"), require("colinux")
local c = cluster.claim{ name = vars.name, host = vars.host, mem = "160M", driver = "qemu" }
colinux.network{ subnet = c.subnet }
local g = colinux.guest{ name = vars.name, driver = "qemu", net = "bridge", disk = vars.disk, host_key = vars.host_key,
  kernel = vars.kernel, initrd = { vars.initrd }, ip = c.ip, mem = "160M", cpus = 1 }
g:start()
g:wait_ready{ timeout = 90 }
cluster.route{ vhost = vars.name .. ".test", host = vars.host, addr = c.ip:match("^[^/]+") .. ":80", guest = vars.name }
`), 0o644)
	f.mustTF(h3, "run", pb, "-e", "name=webq", "-e", "host=h3", "-e", "disk="+own, "-e", "host_key="+disk.HostKey,
		"-e", "kernel="+kernel, "-e", "initrd="+initrd)
	for _, via := range f.hosts {
		f.waitFetch(via, "webq.test", "site webq")
	}
	bootID := func() string {
		t.Helper()
		m := regexp.MustCompile(`site webq boot (\S+)`).FindStringSubmatch(f.fetch(f.hosts[0], "webq.test"))
		if m == nil {
			t.Fatal("the site's page has no boot id")
		}
		return m[1]
	}
	boot := bootID()
	before := f.guestRow(h3, "webq")
	step("a qemu guest on h3 (" + before.IP + ", QEMU pid " + strconv.Itoa(before.PID) + "), served by every proxy")

	var targets []string
	for _, via := range f.hosts {
		targets = append(targets, via.ip+":8080|webq.test")
	}
	seenBy := f.client(f.hosts[0], targets)
	out, errs, err := f.tf(f.hosts[1], "cluster", "drain", "h3")
	seen := seenBy()
	t.Logf("cluster drain h3:\n%s%s", out, errs)
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	m := regexp.MustCompile(`(?m)^webq +h3 -> (h\d) +live +down ([0-9.]+m?s)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("want a live move of webq in the output:\n%s", out)
	}
	down, _ := time.ParseDuration(m[2])
	to := f.hosts[m[1][1]-'1']
	step("h3 drained: webq moved live to " + to.name + ", down " + down.String())
	failed := 0
	for _, tg := range targets {
		s := seen[tg]
		failed += s.Failed
		t.Logf("%-28s %5d ok %3d failed, longest gap %v (move downtime %v), from %s to %s; %s", tg, s.OK, s.Failed, s.MaxGap.Round(time.Millisecond), down,
			s.GapEnd.Add(-s.MaxGap).Format("15:04:05.000"), s.GapEnd.Format("15:04:05.000"), s.LastErr)
		// As in TestDrainThreeHosts: the downtime, plus the client's
		// timeout (a request in flight in the pause) and the route's way
		// to every proxy. The routes switch as soon as the VM runs there,
		// while the far side checks its SSH (MigrateOptions.Back undoes
		// them should that fail): that check (0.4 s under TCG) is no
		// part of the gap. Measured: downtime 70 ms, gap 0.32-0.34 s.
		if limit := down + 1100*time.Millisecond; s.MaxGap > limit {
			t.Errorf("%s: a gap of %v, more than %v (the move's downtime: %v)", tg, s.MaxGap, limit, down)
		}
		if s.OK == 0 {
			t.Errorf("%s: never answered", tg)
		}
	}

	// The same guest, not rebooted, at the same address on its new host;
	// every proxy sends the site there.
	if b := bootID(); b != boot {
		t.Errorf("boot id %s after the move, %s before: the guest rebooted", b, boot)
	}
	after := f.guestRow(to, "webq")
	if after.IP != before.IP || after.State != "running" {
		t.Errorf("on %s: %+v, want running at %s", to.name, after, before.IP)
	}
	var listed []cluster.GuestRecord
	json.Unmarshal([]byte(f.mustTF(f.hosts[0], "guests", "--cluster", "--json")), &listed)
	if len(listed) != 1 || listed[0].Host != to.name || !strings.HasPrefix(listed[0].IP, before.IP+"/") {
		t.Errorf("guests --cluster: %+v, want webq on %s at %s", listed, to.name, before.IP)
	}
	for _, via := range f.hosts {
		f.waitFetch(via, "webq.test", "site webq boot "+boot)
	}
	// Every proxy's table: the guest's kept address on its new host
	// there, that host's proxy elsewhere.
	ip, _, _ := strings.Cut(before.IP, "/")
	proxyOf := map[string]string{}
	for _, h := range f.status(h1).Hosts {
		proxyOf[h.Name] = h.ProxyAddr
	}
	for _, h := range f.hosts {
		want := proxyOf[to.name]
		if h == to {
			want = ip + ":80"
		}
		tbl, err := proxy.LoadTable(cluster.RoutesFile(cluster.Dir(h.home)))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range tbl.VHosts {
			if v.Host == "webq.test" && v.To != want {
				t.Errorf("%s's proxy sends webq.test to %s, want %s", h.name, v.To, want)
			}
		}
	}
	// h3 keeps nothing of it; its new host has its tap, the kept route
	// and the old gateway address.
	f.noGuestNet(h3, before)
	if taps, routes, addrs := f.bridgeNet(to); len(taps) != 1 || !strings.Contains(routes, ip+" ") || len(addrs) != 1 {
		t.Errorf("%s's bridge: taps %v, kept routes %q, /32 addresses %v; want its tap, a route to %s and its old gateway", to.name, taps, routes, addrs, ip)
	}
	step("same boot id and address on " + to.name + ", nothing left on h3")

	// Restarted there: the same address (kept), a new boot.
	restart := filepath.Join(t.TempDir(), "restart.lua")
	os.WriteFile(restart, []byte(`local g = require("colinux").get("webq"); g:stop(); g:start(); g:wait_ready{ timeout = 90 }`), 0o644)
	f.mustTF(to, "run", restart)
	again := f.guestRow(to, "webq")
	if again.IP != before.IP {
		t.Errorf("after a restart on %s: %s, want the kept %s", to.name, again.IP, before.IP)
	}
	for _, via := range f.hosts {
		f.waitFetch(via, "webq.test", "site webq")
	}
	if b := bootID(); b == boot {
		t.Errorf("boot id unchanged by a restart: %s", b)
	}
	step("restarted on " + to.name + ": same address, a new boot, served by every proxy")

	destroy := filepath.Join(t.TempDir(), "destroy.lua")
	os.WriteFile(destroy, []byte(`require("colinux").get("webq"):destroy{ disk = true }`), 0o644)
	f.mustTF(to, "run", destroy)
	f.noGuestNet(to, again)
	step("destroyed: nothing left on " + to.name)
}

// guestInfo is a row of `tinyfarm guests --json`.
type guestInfo struct {
	Name, State, IP string
	PID             int
}

// guestRow is guest name's row on h (it fails the test when absent).
func (f *siteFarm) guestRow(h *netHost, name string) guestInfo {
	f.t.Helper()
	var rows []guestInfo
	if err := json.Unmarshal([]byte(f.mustTF(h, "guests", "--json")), &rows); err != nil {
		f.t.Fatal(err)
	}
	for _, r := range rows {
		if r.Name == name {
			return r
		}
	}
	f.t.Fatalf("%s: no guest %s in %+v", h.name, name, rows)
	return guestInfo{}
}

// bridgeNet is what h's farm bridge holds for guests: qemu taps, kept
// routes (farmnet's protocol 116) and /32 addresses (kept gateways).
func (f *siteFarm) bridgeNet(h *netHost) (taps []string, routes string, addrs []string) {
	br := cfarm.DefaultBridge
	out, _ := exec.Command("ip", "-n", h.ns, "-o", "link", "show", "master", br).Output()
	for _, l := range strings.Split(string(out), "\n") {
		if fl := strings.Fields(l); len(fl) > 1 && strings.HasPrefix(fl[1], "tq-") {
			taps = append(taps, strings.TrimSuffix(fl[1], ":"))
		}
	}
	r, _ := exec.Command("ip", "-n", h.ns, "-4", "route", "show", "proto", "116").Output()
	out, _ = exec.Command("ip", "-n", h.ns, "-4", "-o", "addr", "show", "dev", br).Output()
	for _, a := range regexp.MustCompile(`inet (\S+/32)`).FindAllStringSubmatch(string(out), -1) {
		addrs = append(addrs, a[1])
	}
	return taps, string(r), addrs
}

// noGuestNet fails unless g's QEMU is gone and h's bridge holds no tap,
// kept route or kept gateway.
func (f *siteFarm) noGuestNet(h *netHost, g guestInfo) {
	f.t.Helper()
	gone := false
	for i := 0; i < 100 && !gone; i++ {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(g.PID) + "/stat")
		// Gone, or a zombie its parent has not reaped yet.
		gone = err != nil || strings.Contains(string(b), ") Z ")
		if !gone {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if g.PID == 0 || !gone {
		f.t.Errorf("%s: the QEMU of %s (pid %d) still runs", h.name, g.Name, g.PID)
	}
	if taps, routes, addrs := f.bridgeNet(h); len(taps) > 0 || routes != "" || len(addrs) > 0 {
		f.t.Errorf("%s's bridge keeps taps %v, kept routes %q, /32 addresses %v", h.name, taps, routes, addrs)
	}
	if pid := farmnet.DHCPPID(filepath.Join(h.home, "guests"), cfarm.DefaultBridge); pid != 0 {
		f.t.Errorf("%s: the farm's DHCP server (pid %d) runs with no guest on its bridge", h.name, pid)
	}
}
