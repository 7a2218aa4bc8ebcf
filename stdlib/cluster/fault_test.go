//go:build linux

package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/cmd/tinyfarm/cli"
	"github.com/tinyfarm/tinyfarm/stdlib/cluster"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
)

// TestMain lets the test binary stand in for the tinyfarm command (and its
// detached cluster daemon) and for a site's web server, so the fault tests
// run the real CLI in network namespaces.
func TestMain(m *testing.M) {
	ns.Main()      // the roles of the ns driver: guest monitor, init, exec (remote and drain tests' guests)
	farmnet.Main() // the farm's DHCP server
	switch os.Getenv("TF_CLUSTER_TEST_ROLE") {
	case "tinyfarm":
		os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	case "client":
		os.Exit(runClient(os.Args[1:]))
	case "site":
		addr, body := os.Args[1], os.Args[2]
		http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s host=%s", body, r.Host)
		}))
		os.Exit(1)
	}
	if len(os.Args) > 2 && (os.Args[1] == "cluster" && os.Args[2] == "gate" || os.Args[1] == "migrate" && os.Args[2] == "guard") {
		// A host's sshd runs the forced command of the other hosts'
		// cluster keys: this binary is that host's tinyfarm (and the
		// guard an incoming live move starts, with the gate's environment).
		os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// netHost is one host of the fault tests: a network namespace of its own
// with an address on a bridge that lives in another namespace, and a state
// directory.
type netHost struct {
	name, ns, ip, home string
}

type farm struct {
	t     *testing.T
	exe   string
	hosts []*netHost
	mu    sync.Mutex
	pids  []int // processes this test started (sites), killed at the end
	// flags adds init/join flags for a host (remote_test.go: its sshd).
	flags func(h *netHost) []string
}

// newFarm creates n hosts as network namespaces joined by a bridge in a
// namespace of its own: nothing touches the root namespace's network.
func newFarm(t *testing.T, n int) *farm {
	if os.Geteuid() != 0 {
		t.Skip("the fault tests create network namespaces: run as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("the fault tests need ip (iproute2)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := &farm{t: t, exe: exe}
	tag := fmt.Sprintf("tfcl%d", os.Getpid()%100000)
	sw := tag + "-sw"
	for i := 1; i <= n; i++ {
		f.hosts = append(f.hosts, &netHost{name: fmt.Sprintf("h%d", i), ns: fmt.Sprintf("%s-%d", tag, i), ip: fmt.Sprintf("10.213.0.%d", i), home: t.TempDir()})
	}
	// Registered after the state dirs: cleanups run last-in first-out, so
	// the daemons are killed (by the pids in their state dirs) before the
	// dirs go.
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		for _, h := range f.hosts {
			f.kill(h)
		}
		f.mu.Lock()
		for _, pid := range f.pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		f.mu.Unlock()
		for _, h := range f.hosts {
			exec.Command("ip", "netns", "del", h.ns).Run()
		}
		exec.Command("ip", "netns", "del", sw).Run()
	})
	ip("netns", "add", sw)
	ip("-n", sw, "link", "add", "br0", "type", "bridge")
	ip("-n", sw, "link", "set", "br0", "up")
	for i, h := range f.hosts {
		ip("netns", "add", h.ns)
		port := fmt.Sprintf("p%d", i+1)
		ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
		ip("-n", sw, "link", "set", port, "master", "br0", "up")
		ip("-n", h.ns, "addr", "add", h.ip+"/24", "dev", "eth0")
		ip("-n", h.ns, "link", "set", "eth0", "up")
		ip("-n", h.ns, "link", "set", "lo", "up")
	}
	return f
}

// inNS is argv run in h's network namespace. nsenter rather than ip netns
// exec, which remounts /sys (hiding the cgroup tree guests need).
func inNS(h *netHost, argv ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=/run/netns/" + h.ns}, argv...)...)
}

// tf runs the tinyfarm CLI on host h (in its namespace, with its state).
func (f *farm) tf(h *netHost, args ...string) (string, string, error) {
	cmd := inNS(h, append([]string{f.exe}, args...)...)
	cmd.Env = append(os.Environ(), "TF_CLUSTER_TEST_ROLE=tinyfarm", "TINYFARM_HOME="+h.home)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func (f *farm) mustTF(h *netHost, args ...string) string {
	f.t.Helper()
	out, errs, err := f.tf(h, args...)
	if err != nil {
		f.t.Fatalf("%s: tinyfarm %s: %v\n%s%s", h.name, strings.Join(args, " "), err, out, errs)
	}
	return out
}

// The timing of the tests' clusters: a host is down 2s after its last
// renewal, a leader is elected within a second, calls give up after 3s.
var fastFlags = []string{"--heartbeat", "50", "--election-timeout", "500", "--lease-ttl", "2", "--op-timeout", "3s"}

func (f *farm) hostFlags(h *netHost) []string {
	// The other hosts' cluster keys go to h's own authorized_keys (its
	// sshd's, see sshd), never the machine's.
	fl := append([]string{"--name", h.name, "--advertise", h.ip, "--proxy", h.ip + ":8080",
		"--authorized-keys", filepath.Join(h.home, "root", ".ssh", "authorized_keys"),
		"--ssh-host-key", filepath.Join(h.home, "ssh_host_key.pub")}, fastFlags...)
	if f.flags != nil {
		fl = append(fl, f.flags(h)...) // later flags win (remote_test.go: its own sshd's key)
	}
	return fl
}

var tokenRE = regexp.MustCompile(`tfjoin1\.[A-Za-z0-9_-]+`)

// start forms the cluster: init on the first host, join with a fresh
// token (from the first host) on each other.
func (f *farm) start() {
	out := f.mustTF(f.hosts[0], append([]string{"cluster", "init"}, f.hostFlags(f.hosts[0])...)...)
	tok := tokenRE.FindString(out)
	for i, h := range f.hosts[1:] {
		if i > 0 {
			tok = strings.TrimSpace(f.mustTF(f.hosts[0], "cluster", "token"))
		}
		f.mustTF(h, append([]string{"cluster", "join", tok}, f.hostFlags(h)...)...)
	}
}

// kill ends h's daemon (its etcd member with it) with SIGKILL.
func (f *farm) kill(h *netHost) {
	if pid, ok := cluster.RunningDaemon(cluster.Dir(h.home)); ok {
		syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 100; i++ {
			if _, ok := cluster.RunningDaemon(cluster.Dir(h.home)); !ok {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (f *farm) status(h *netHost) cluster.Status {
	f.t.Helper()
	var st cluster.Status
	if err := json.Unmarshal([]byte(f.mustTF(h, "cluster", "status", "--json")), &st); err != nil {
		f.t.Fatal(err)
	}
	return st
}

// waitHost polls h's view until host is in state.
func (f *farm) waitHost(h *netHost, host string, state cluster.HostState) time.Duration {
	f.t.Helper()
	start := time.Now()
	for {
		for _, x := range f.status(h).Hosts {
			if x.Name == host && x.State == state {
				return time.Since(start)
			}
		}
		if time.Since(start) > 15*time.Second {
			f.t.Fatalf("%s: host %s not %s after 15s", h.name, host, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// claim claims guests prefix1..prefixN on host (from controller c) with a
// playbook: the real Lua module over the real CLI.
func (f *farm) claim(c *netHost, host, prefix string, n int) (string, error) {
	pb := filepath.Join(f.t.TempDir(), "claim.lua")
	os.WriteFile(pb, []byte(`
local cluster = require("cluster")
local items = {}
for i = 1, tonumber(vars.n) do items[i] = vars.prefix .. i end
parallel(items, function(name) cluster.claim{ name = name, host = vars.host, mem = "16M" } end)
`), 0o644)
	out, errs, err := f.tf(c, "run", pb, "-e", "n="+strconv.Itoa(n), "-e", "prefix="+prefix, "-e", "host="+host)
	return out + errs, err
}

// site starts a web server for host h's site inside its namespace.
func (f *farm) site(h *netHost) {
	cmd := inNS(h, f.exe, h.ip+":9000", "site of "+h.name)
	cmd.Env = append(os.Environ(), "TF_CLUSTER_TEST_ROLE=site")
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.pids = append(f.pids, cmd.Process.Pid)
	f.mu.Unlock()
	go cmd.Wait()
}

// fetch asks h's proxy for vhost, from inside h's namespace.
func (f *farm) fetch(h *netHost, vhost string) string {
	out, _ := inNS(h, "curl", "-s", "-m", "3", "-H", "Host: "+vhost, "http://"+h.ip+":8080/").Output()
	return string(out)
}

func (f *farm) waitFetch(h *netHost, vhost, want string) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := f.fetch(h, vhost)
		if strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s's proxy, %s: %q, want %q", h.name, vhost, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// distinct fails on a guest name, IP or uid range handed out twice.
func distinct(t *testing.T, gs []cluster.GuestRecord) {
	t.Helper()
	names, ips, uids := map[string]bool{}, map[string]string{}, map[int]string{}
	for _, g := range gs {
		if names[g.Name] {
			t.Fatalf("guest %s listed twice", g.Name)
		}
		names[g.Name] = true
		if o, ok := ips[g.IP]; ok {
			t.Fatalf("IP %s given to %s and %s", g.IP, o, g.Name)
		}
		if o, ok := uids[g.UIDSlot]; ok {
			t.Fatalf("uid range %d given to %s and %s", g.UIDSlot, o, g.Name)
		}
		ips[g.IP], uids[g.UIDSlot] = g.Name, g.Name
	}
}

// TestFaultsThreeHosts: three hosts as network namespaces, each with its
// own state dir, cluster daemon (the real CLI) and embedded etcd member on
// its namespace address, a site each, served by every host's proxy. Then:
// one host killed with SIGKILL (the others keep serving and allocating, it
// is down, its guests unreachable; it comes back without duplicates), two
// killed (quorum lost: mutations fail naming it and change nothing, the
// survivor's proxy keeps serving its site), and controllers racing.
func TestFaultsThreeHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the fault tests start three etcd members")
	}
	t0 := time.Now()
	step := func(s string) { t.Logf("%5.1fs %s", time.Since(t0).Seconds(), s) }
	f := newFarm(t, 3)
	h1, h2, h3 := f.hosts[0], f.hosts[1], f.hosts[2]
	f.start()
	step("three hosts joined")
	for _, h := range f.hosts {
		f.waitHost(h1, h.name, cluster.HostUp)
	}

	// One site per host, every site served by every host's proxy.
	routes := filepath.Join(t.TempDir(), "routes.lua")
	os.WriteFile(routes, []byte(`
local cluster = require("cluster")
for i = 1, 3 do
  cluster.route{ vhost = "site" .. i .. ".test", host = "h" .. i, addr = "10.213.0." .. i .. ":9000", guest = "site" .. i }
end
`), 0o644)
	for _, h := range f.hosts {
		f.site(h)
	}
	f.mustTF(h2, "run", routes)
	for _, via := range f.hosts {
		for _, h := range f.hosts {
			f.waitFetch(via, strings.Replace(h.name, "h", "site", 1)+".test", "site of "+h.name)
		}
	}
	step("every site served by every proxy")

	for _, h := range f.hosts {
		if out, err := f.claim(h, h.name, h.name+"-g", 4); err != nil {
			t.Fatalf("claims on %s: %v\n%s", h.name, err, out)
		}
	}
	before := f.status(h1).Guests
	if len(before) != 12 {
		t.Fatalf("%d guests, want 12", len(before))
	}
	distinct(t, before)
	step("12 guests claimed")

	// One host killed: down after the TTL, its guests unreachable; the
	// others keep allocating and serving.
	f.kill(h3)
	d := f.waitHost(h1, "h3", cluster.HostDown)
	step(fmt.Sprintf("h3 killed: down after %.1fs", d.Seconds()))
	for _, g := range f.status(h2).Guests {
		if want := map[bool]string{true: "unreachable", false: "ok"}[g.Host == "h3"]; g.State != want {
			t.Errorf("with h3 down, %s on %s is %s, want %s", g.Name, g.Host, g.State, want)
		}
	}
	if out := f.mustTF(h2, "guests", "--cluster"); !regexp.MustCompile(`(?m)^h3-g1 +h3 +unreachable +10\.80\.\d+\.\d+/24 +16M`).MatchString(out) {
		t.Errorf("guests --cluster with h3 down:\n%s", out)
	}
	if out, err := f.claim(h1, "h1", "more-h1-", 3); err != nil {
		t.Fatalf("claims with h3 down: %v\n%s", err, out)
	}
	if out, err := f.claim(h2, "h2", "more-h2-", 3); err != nil {
		t.Fatalf("claims with h3 down: %v\n%s", err, out)
	}
	f.waitFetch(h1, "site2.test", "site of h2")
	f.waitFetch(h2, "site1.test", "site of h1")
	step("h1 and h2 allocate and serve without h3")

	// h3 comes back (its daemon restarted on its data): up again, its
	// guests reported again, nothing twice.
	f.mustTF(h3, "cluster", "start")
	f.waitHost(h1, "h3", cluster.HostUp)
	after := f.status(h3).Guests
	if len(after) != 18 {
		t.Fatalf("%d guests after h3 came back, want 18", len(after))
	}
	distinct(t, after)
	for _, g := range after {
		if g.State != "ok" {
			t.Errorf("after h3 came back, %s on %s is %s", g.Name, g.Host, g.State)
		}
	}
	f.waitFetch(h1, "site3.test", "site of h3")
	step("h3 rejoined: 18 guests, all ok, none twice")

	// Racing controllers on two hosts, claiming the same names.
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		outs := make([]string, 2)
		for i, h := range []*netHost{h1, h2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[i], _ = f.claim(h, h.name, fmt.Sprintf("race%d-", round), 6)
			}()
		}
		wg.Wait()
		gs := f.status(h3).Guests
		distinct(t, gs)
		n := 0
		for _, g := range gs {
			if strings.HasPrefix(g.Name, fmt.Sprintf("race%d-", round)) {
				n++
			}
		}
		if n != 6 {
			t.Fatalf("round %d: %d race guests, want 6\n%s\n%s", round, n, outs[0], outs[1])
		}
	}
	step("3 rounds of racing controllers: no duplicates")
	want := f.status(h1).Guests

	// Two hosts killed: no quorum. A mutation fails naming it and changes
	// nothing; h1's proxy still serves its own site.
	f.kill(h2)
	f.kill(h3)
	out, err := f.claim(h1, "h1", "lost-", 1)
	if err == nil || !strings.Contains(out, "cluster lost quorum") || !strings.Contains(out, "nothing was changed") {
		t.Fatalf("claim without quorum: %v\n%s", err, out)
	}
	if got := f.fetch(h1, "site1.test"); !strings.Contains(got, "site of h1") {
		t.Errorf("h1's proxy without quorum, site1: %q", got)
	}
	sout, serr, _ := f.tf(h1, "cluster", "status")
	if !strings.Contains(serr, "cluster lost quorum") || !strings.Contains(sout, "h1 (this host)") {
		t.Errorf("status without quorum:\n%s%s", sout, serr)
	}
	step("h2 and h3 killed: mutations fail with lost quorum, h1 serves its site")

	// A majority back: the failed claim never happened.
	f.mustTF(h2, "cluster", "start")
	got := f.status(h1).Guests
	if len(got) != len(want) {
		t.Fatalf("after quorum came back: %d guests, want %d", len(got), len(want))
	}
	for _, g := range got {
		if strings.HasPrefix(g.Name, "lost-") {
			t.Fatalf("the claim made without quorum exists: %+v", g)
		}
	}
	if out, err := f.claim(h1, "h1", "back-", 1); err != nil {
		t.Fatalf("claim with quorum back: %v\n%s", err, out)
	}
	step("quorum back: the failed claim changed nothing, claims work again")

	// h3 back too, then it leaves: refused while guests are claimed on it,
	// done once they are released (etcd's MemberRemove; its subnet freed).
	f.mustTF(h3, "cluster", "start")
	f.waitHost(h1, "h3", cluster.HostUp)
	if _, errs, err := f.tf(h3, "cluster", "leave"); err == nil || !strings.Contains(errs, "guests h3-g1, h3-g2, h3-g3, h3-g4 are claimed on this host") {
		t.Fatalf("leave with guests: %v %s", err, errs)
	}
	rel := filepath.Join(t.TempDir(), "release.lua")
	os.WriteFile(rel, []byte(`for i = 1, 4 do require("cluster").release("h3-g" .. i) end`), 0o644)
	f.mustTF(h1, "run", rel)
	f.mustTF(h3, "cluster", "leave")
	st := f.status(h1)
	if len(st.Hosts) != 2 || len(st.Members) != 2 {
		t.Fatalf("after h3 left: hosts %+v, members %v", st.Hosts, st.Members)
	}
	if _, err := os.Stat(cluster.Dir(h3.home)); !os.IsNotExist(err) {
		t.Errorf("h3's cluster dir after leave: %v", err)
	}
	step("h3 left: 2 hosts, 2 members")
}
