package cluster

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// startDebianEtcd runs Debian's etcd-server (3.4) on loopback with client
// TLS and client certificate auth, certificates from a CA of ours, and
// returns a host config that uses it as an existing etcd cluster.
func startDebianEtcd(t *testing.T) (host func(name string) *Config) {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("Debian's etcd-server is not installed (scripts/deps.sh installs it): the external-etcd test needs /usr/bin/etcd")
	}
	dir := t.TempDir()
	ca, err := NewCA("external")
	if err != nil {
		t.Fatal(err)
	}
	srv := filepath.Join(dir, "server")
	if err := ca.IssueHost(srv, "etcd", []net.IP{net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	cp, pp := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	client := "https://127.0.0.1:" + strconv.Itoa(cp)
	peer := "http://127.0.0.1:" + strconv.Itoa(pp)
	cmd := exec.Command(bin, "--name", "ext", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "ext="+peer,
		"--cert-file", filepath.Join(srv, certFile), "--key-file", filepath.Join(srv, keyFile),
		"--trusted-ca-file", filepath.Join(srv, caCertFile), "--client-cert-auth",
		"--heartbeat-interval", "50", "--election-timeout", "500", "--log-level", "error", "--logger", "zap")
	log, _ := os.Create(filepath.Join(dir, "etcd.log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
			t.Logf("etcd.log:\n%s", b)
		}
	})
	return func(name string) *Config {
		hd := t.TempDir()
		if err := ca.IssueHost(hd, name, nil); err != nil {
			t.Fatal(err)
		}
		return &Config{Host: name, Dir: hd, Endpoints: []string{client}, Timing: fastTiming}
	}
}

// TestExternalEtcd uses Debian's etcd 3.4 as an existing etcd cluster:
// two hosts join it by endpoints and certificates (no member of ours),
// register, claim guests and route, and see each other.
func TestExternalEtcd(t *testing.T) {
	host := startDebianEtcd(t)
	ctx := ctxT(t)
	a, b := host("a"), host("b")
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := UseExternal(ctx, a)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("external etcd not answering: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := UseExternal(ctx, b); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadConfig(a.Dir)
	if err != nil || loaded.Embedded || loaded.Endpoints[0] != a.Endpoints[0] {
		t.Fatalf("saved config %+v %v", loaded, err)
	}
	serve(t, loaded, ServeOptions{})
	stopB := serve(t, b, ServeOptions{})
	c := connect(t, a)
	hosts, err := c.Hosts(ctx)
	if err != nil || len(hosts) != 2 || hosts[0].State != HostUp || hosts[1].State != HostUp {
		t.Fatalf("hosts %+v %v", hosts, err)
	}
	raceClaims(t, a, 2, 8, 5)
	g, err := c.ClaimGuest(ctx, GuestSpec{Name: "web1", Host: "b", Mem: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := c.HostSubnet(ctx, "b")
	if err != nil || g.IP != sb.Addr().Next().Next().String()+"/24" || g.UIDSlot != 40 {
		t.Errorf("web1 %+v: want the second address of b's subnet %s, uid slot 40 (the race had 0-39)", g, sb)
	}
	// b goes away on purpose: down at once (its lease revoked).
	stopB()
	gs, err := c.Guests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		if want := map[bool]string{true: "unreachable", false: "ok"}[g.Host == "b"]; g.Name == "web1" && g.State != want {
			t.Fatalf("web1 on b after b left: %s, want %s", g.State, want)
		}
	}
}
