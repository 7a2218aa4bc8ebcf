//go:build linux

package ns_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
)

func TestMain(m *testing.M) {
	ns.Main() // the test binary doubles as the guest monitor/init
	code := m.Run()
	ns.DeleteBridge("tftest0")
	os.Exit(code)
}

func needRoot(t *testing.T) { guesttest.NeedRoot(t) }

// scatterDisk builds a Tiny Core scatter disk the seed's way, with
// bootlocal lines run before the ready marker.
func scatterDisk(t *testing.T, bootlocal string, exts ...string) string {
	return guesttest.BuildDisk(t, guesttest.Options{Bootlocal: bootlocal, Extensions: exts, Size: "64M"}).Path
}

func spec(t *testing.T, name, disk string, ipLast int) driver.Spec {
	return driver.Spec{
		Name:     name,
		Dir:      filepath.Join(t.TempDir(), "run"),
		MemBytes: 64 << 20,
		CPUs:     0.5,
		Layout:   driver.Scatter,
		Disks:    []driver.Disk{{Path: disk}},
		Net: driver.Net{Mode: "bridge", Bridge: "tftest0", IP: fmt.Sprintf("10.77.250.%d/24", ipLast),
			Gateway: "10.77.250.1", MAC: fmt.Sprintf("02:74:66:00:00:%02x", ipLast)},
	}
}

func start(t *testing.T, s driver.Spec) driver.Guest {
	t.Helper()
	r := &ns.Runner{}
	g, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Stop(context.Background(), 0)
		if ns.VethExists(s) {
			t.Errorf("veth of %s left behind", s.Name)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := g.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGuestBootsServesAndStops(t *testing.T) {
	needRoot(t)
	disk := scatterDisk(t, "mkdir -p /opt/www; httpd -p 80 -h /opt/www")
	s := spec(t, "nstest1", disk, 11)
	t0 := time.Now()
	g := start(t, s)
	t.Logf("start -> ready in %v", time.Since(t0))

	st, err := g.Status(context.Background())
	if err != nil || st.State != driver.Running || st.PID == 0 {
		t.Fatalf("status %+v, %v", st, err)
	}
	ex := g.(driver.Execer)
	res, err := ex.Exec(context.Background(), []string{"sh", "-c", "hostname; cat /proc/cmdline; ls /dev; id -u; cat /proc/1/cmdline | tr '\\0' ' '"}, driver.ExecOptions{})
	if err != nil || res.Code != 0 {
		t.Fatalf("exec: %v %+v", err, res)
	}
	out := string(res.Stdout)
	for _, want := range []string{"nstest1\n", "nozswap", "nodhcp", "urandom", "init"} {
		if !strings.Contains(out, want) {
			t.Errorf("exec output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "sda") || strings.Contains(out, "vda") || strings.Contains(out, "kmsg") {
		t.Errorf("guest /dev shows host devices:\n%s", out)
	}
	// HTTP from the host to the guest's own IP on the farm bridge.
	ex.Exec(context.Background(), []string{"sh", "-c", "mkdir -p /opt/www && echo hello-from-guest > /opt/www/index.html"}, driver.ExecOptions{})
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://10.77.250.11/index.html")
	if err != nil {
		dbg, _ := ex.Exec(context.Background(), []string{"sh", "-c", "netstat -ltn; ps"}, driver.ExecOptions{})
		out, _ := exec.Command("sh", "-c", "curl -sv http://10.77.250.11/index.html 2>&1 | tail -5").CombinedOutput()
		t.Fatalf("http to guest: %v\nguest: %s\nhost curl: %s", err, dbg.Stdout, out)
	}
	body := make([]byte, 100)
	n, _ := resp.Body.Read(body)
	resp.Body.Close()
	if !strings.Contains(string(body[:n]), "hello-from-guest") {
		t.Errorf("guest page: %q", body[:n])
	}
	// Suspend: the guest stops answering; resume: it answers again.
	sus := g.(driver.Suspender)
	if err := sus.Suspend(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st, _ := g.Status(context.Background()); st.State != driver.Suspended {
		t.Errorf("status after suspend: %+v", st)
	}
	c2 := http.Client{Timeout: 500 * time.Millisecond}
	if _, err := c2.Get("http://10.77.250.11/index.html"); err == nil {
		t.Error("suspended guest answered HTTP")
	}
	if err := sus.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get("http://10.77.250.11/index.html"); err != nil {
		t.Errorf("resumed guest does not answer: %v", err)
	}
	// Attach from a fresh runner (another tinyfarm process would do this).
	g2, err := (&ns.Runner{}).Attach(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if st2, _ := g2.Status(context.Background()); st2.PID != st.PID || st2.State != driver.Running {
		t.Errorf("attached status %+v, want running pid %d", st2, st.PID)
	}
	// Clean stop through busybox init's poweroff.
	t1 := time.Now()
	if err := g2.Stop(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("clean stop in %v", time.Since(t1))
	st, _ = g.Status(context.Background())
	if st.State != driver.Stopped {
		t.Errorf("after stop: %+v", st)
	}
	if ns.VethExists(s) {
		t.Error("veth left after stop")
	}
	if conn, err := net.DialTimeout("tcp", "10.77.250.11:80", 300*time.Millisecond); err == nil {
		conn.Close()
		t.Error("stopped guest still answers")
	}
}

func TestCrashedGuestAndMemoryQuota(t *testing.T) {
	needRoot(t)
	disk := scatterDisk(t, "")
	s := spec(t, "nstest2", disk, 12)
	g := start(t, s)
	ex := g.(driver.Execer)
	// Allocate past the 64M quota inside the guest: the allocating process
	// is OOM-killed, the guest itself keeps running.
	res, err := ex.Exec(context.Background(), []string{"sh", "-c", "dd if=/dev/zero of=/dev/null bs=128M count=1; echo rc=$?"}, driver.ExecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(res.Stdout), "rc=137") {
		t.Errorf("allocation past quota not killed: %q %q", res.Stdout, res.Stderr)
	}
	if st, _ := g.Status(context.Background()); st.State != driver.Running {
		t.Fatalf("guest died from an OOM inside it: %+v", st)
	}
	// Kill the guest's init from the host: status says crashed and why.
	st, _ := g.Status(context.Background())
	if err := syscallKill(st.PID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ = g.Status(context.Background())
		if st.State == driver.Crashed || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.State != driver.Crashed || !strings.Contains(st.Reason, "signal 9") {
		t.Errorf("status after kill: %+v", st)
	}
}

// TestSameNameInTwoFarms: two state dirs on one host each run a guest
// named "twin". Their host-wide objects (cgroups, veths, uid ranges) are
// their own: suspending or stopping one leaves the other running and
// answering, with its own quota.
func TestSameNameInTwoFarms(t *testing.T) {
	needRoot(t)
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		t.Skip("no user namespaces")
	}
	web := "mkdir -p /opt/www; httpd -p 80 -h /opt/www"
	disk1, disk2 := scatterDisk(t, web), scatterDisk(t, web)
	s1, s2 := spec(t, "twin", disk1, 31), spec(t, "twin", disk2, 32)
	s2.MemBytes = 96 << 20
	s1.UserNS, s2.UserNS = true, true
	g1, g2 := start(t, s1), start(t, s2)
	if s1.Instance() == s2.Instance() {
		t.Fatalf("one instance name %q for two farms", s1.Instance())
	}
	st1, _ := g1.Status(context.Background())
	st2, _ := g2.Status(context.Background())
	if st1.Isolation == st2.Isolation {
		t.Errorf("both guests' root is the same host uid: %q", st1.Isolation)
	}
	cg := func(pid int) string {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		return string(b)
	}
	if cg(st1.PID) == cg(st2.PID) {
		t.Errorf("both guests in one cgroup:\n%s", cg(st1.PID))
	}
	if !ns.VethExists(s1) || !ns.VethExists(s2) {
		t.Fatalf("veths: %v %v", ns.VethExists(s1), ns.VethExists(s2))
	}
	// Freezing one does not freeze the other.
	if err := g1.(driver.Suspender).Suspend(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st, _ := g2.Status(context.Background()); st.State != driver.Running {
		t.Errorf("twin 2 after suspending twin 1: %+v", st)
	}
	g1.(driver.Suspender).Resume(context.Background())
	// Stopping one leaves the other running, with its network.
	if err := g1.Stop(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if st, _ := g2.Status(context.Background()); st.State != driver.Running || st.PID != st2.PID {
		t.Fatalf("twin 2 after stopping twin 1: %+v", st)
	}
	if !ns.VethExists(s2) {
		t.Error("stopping twin 1 removed twin 2's veth")
	}
	var conn net.Conn
	var err error
	for i := 0; i < 50; i++ { // httpd starts in the background of bootlocal
		if conn, err = net.DialTimeout("tcp", "10.77.250.32:80", time.Second); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("twin 2 lost its network: %v", err)
	}
	conn.Close()
}
