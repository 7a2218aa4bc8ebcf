//go:build linux

package cluster_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/cluster"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// sshd starts h's sshd: a dropbear on h's address, in h's namespace, whose
// root has the home h.home/root (a private mount namespace with its own
// /etc/passwd), so the authorized_keys h's daemon keeps is h's own. Its
// host key's public half is h.home/ssh_host_key.pub (--ssh-host-key).
func (f *farm) sshd(h *netHost) {
	t := f.t
	t.Helper()
	dropbear, err := exec.LookPath("dropbear")
	if err != nil {
		t.Skip("dropbear not installed")
	}
	key, _ := ssh.GenerateHostKey()
	os.WriteFile(filepath.Join(h.home, "ssh_host_key"), key.Dropbear(), 0o600)
	os.WriteFile(filepath.Join(h.home, "ssh_host_key.pub"), []byte(key.AuthorizedKey()+"\n"), 0o644)
	home := filepath.Join(h.home, "root")
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	os.Chmod(home, 0o700)
	passwd, _ := os.ReadFile("/etc/passwd")
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(string(passwd), "\n"), "\n") {
		if fl := strings.Split(l, ":"); len(fl) == 7 && fl[0] == "root" {
			fl[5], fl[6] = home, "/bin/sh"
			l = strings.Join(fl, ":")
		}
		lines = append(lines, l)
	}
	fake := filepath.Join(h.home, "passwd")
	os.WriteFile(fake, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	cmd := inNS(h, "unshare", "-m", "--propagation", "slave", "/bin/sh", "-c", `mount --bind "$1" /etc/passwd && shift && exec "$@"`, "sh", fake,
		dropbear, "-F", "-E", "-s", "-p", h.ip+":22", "-r", filepath.Join(h.home, "ssh_host_key"))
	log, _ := os.Create(filepath.Join(h.home, "dropbear.log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.pids = append(f.pids, cmd.Process.Pid)
	f.mu.Unlock()
	go cmd.Wait()
}

// runClient is the client of the drain test, run in a host's namespace:
// one loop per target ("proxy|vhost") asks it again and again until stdin
// closes, then it prints per target the requests that failed and the
// longest gap between two right answers (200, the vhost's page). A request
// gets clientTimeout: a backend that is gone costs no more than that.
func runClient(targets []string) int {
	const clientTimeout = 300 * time.Millisecond
	stats := make([]clientStat, len(targets))
	stop := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stop) }()
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, vhost, _ := strings.Cut(tg, "|")
			c := &http.Client{Timeout: clientTimeout}
			s, last := &stats[i], time.Now()
			for {
				select {
				case <-stop:
					s.MaxGap = max(s.MaxGap, time.Since(last))
					return
				default:
				}
				req, _ := http.NewRequest("GET", "http://"+p+"/", nil)
				req.Host = vhost
				resp, err := c.Do(req)
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || !strings.Contains(string(b), "site "+strings.TrimSuffix(vhost, ".test")) {
						err = fmt.Errorf("%d %q", resp.StatusCode, b)
					}
				}
				if now := time.Now(); err == nil {
					s.OK++
					if now.Sub(last) > s.MaxGap {
						s.MaxGap, s.GapEnd = now.Sub(last), now
					}
					last = now
				} else {
					s.Failed++
					s.LastErr = err.Error()
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	out := map[string]clientStat{}
	for i, tg := range targets {
		out[tg] = stats[i]
	}
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

// TestDrainThreeHosts: three hosts as network namespaces (each with its
// sshd, cluster daemon and proxy), ns guests on bridge networking serving a
// site each through the cluster's routes, two of them on h3. h3 is drained
// while a client asks every site through every host's proxy: the guests
// move to h1 and h2 over host-to-host SSH (the daemons' cluster keys, the
// pinned host keys, the gate), the routes follow, every site answers
// after, each guest is listed once, h3 is empty and cordoned, and a
// second drain has nothing to do.
func TestDrainThreeHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the drain test starts three etcd members and ns guests")
	}
	t0 := time.Now()
	step := func(s string) { t.Logf("%5.1fs %s", time.Since(t0).Seconds(), s) }
	f := newSiteFarm(t)
	h1, h2, h3 := f.hosts[0], f.hosts[1], f.hosts[2]
	step("three hosts joined, each with its sshd")
	placed := map[string]*netHost{"web1": h1, "web2": h2, "web3": h3, "web4": h3}
	names := f.siteGuests(placed)
	for _, via := range f.hosts {
		for _, n := range names {
			f.waitFetch(via, n+".test", "site "+n)
		}
	}
	step("4 ns guests (2 on h3), every site served by every proxy")

	plan := f.mustTF(h1, "cluster", "drain", "h3", "--dry-run")
	t.Logf("dry run:\n%s", plan)
	if !strings.Contains(plan, "web3") || !strings.Contains(plan, "(planned)") || !strings.Contains(plan, "nothing moved") {
		t.Errorf("dry run:\n%s", plan)
	}

	// The client, in h1's namespace, asks every site through every proxy.
	var targets []string
	for _, via := range f.hosts {
		for _, n := range names {
			targets = append(targets, via.ip+":8080|"+n+".test")
		}
	}
	seenBy := f.client(h1, targets)
	ds := time.Now()
	out, errs, err := f.tf(h2, "cluster", "drain", "h3")
	took := time.Since(ds)
	t.Logf("cluster drain h3 (%v):\n%s%s", took.Round(time.Millisecond), out, errs)
	seen := seenBy()
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	step("h3 drained")

	// What the client saw, per target; the worst gap against the moves'
	// own downtimes.
	downRE := regexp.MustCompile(`(?m)^(web\d+) +h3 -> (h\d) +offline +down ([0-9.]+m?s)`)
	moves := downRE.FindAllStringSubmatch(out, -1)
	if len(moves) != 2 {
		t.Fatalf("want two offline moves in the output:\n%s", out)
	}
	down := map[string]time.Duration{}
	newHost := map[string]string{}
	for _, m := range moves {
		down[m[1]], _ = time.ParseDuration(m[3])
		newHost[m[1]] = m[2]
	}
	failed := 0
	for _, tg := range targets {
		s := seen[tg]
		_, vhost, _ := strings.Cut(tg, "|")
		g := strings.TrimSuffix(vhost, ".test")
		failed += s.Failed
		t.Logf("%-28s %5d ok %3d failed, longest gap %v (move downtime %v) %s", tg, s.OK, s.Failed, s.MaxGap.Round(time.Millisecond), down[g], s.LastErr)
		// A moved site is away no longer than its move's downtime, plus
		// the client's timeout (a request sent just before it came back
		// may wait that long) and the route's way to every proxy. A site
		// that did not move keeps answering (its gaps are the loaded
		// machine's: bounded well below a move's downtime).
		limit := down[g] + time.Second
		if down[g] == 0 {
			limit = 2 * time.Second
		}
		if s.MaxGap > limit {
			t.Errorf("%s: a gap of %v, more than %v (its move's downtime: %v)", tg, s.MaxGap, limit, down[g])
		}
		if s.OK == 0 {
			t.Errorf("%s: never answered", tg)
		}
	}
	t.Logf("%d failed requests in all, drain took %v", failed, took)

	// After: every site through every proxy; each guest once, on its new
	// host; the routes point at the new owners; h3 empty and cordoned.
	for _, via := range f.hosts {
		for _, n := range names {
			f.waitFetch(via, n+".test", "site "+n)
		}
	}
	var listed []cluster.GuestRecord
	if err := json.Unmarshal([]byte(f.mustTF(h1, "guests", "--cluster", "--json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 4 {
		t.Errorf("guests --cluster: %+v", listed)
	}
	for _, g := range listed {
		want := placed[g.Name].name
		if nh, ok := newHost[g.Name]; ok {
			want = nh
		}
		if g.Host != want || g.Host == "h3" {
			t.Errorf("guests --cluster: %s on %s, want %s", g.Name, g.Host, want)
		}
	}
	hostOf := map[string]string{}
	for _, g := range listed {
		hostOf[g.Name] = g.Host
		// What a resumed drain asks a target (farmMover.RunsOn, the
		// migration's probe): the moved guest runs there, at its claim's
		// address.
		if _, moved := newHost[g.Name]; !moved {
			continue
		}
		for _, h := range f.hosts {
			if h.name != g.Host {
				continue
			}
			var p ops.FarProbe
			out := f.mustTF(h, "migrate", "probe", g.Name)
			if ip, _, _ := strings.Cut(g.IP, "/"); json.Unmarshal([]byte(out), &p) != nil || !p.Running || p.IP != ip {
				t.Errorf("probe of %s on %s: %s, want running at %s", g.Name, h.name, out, ip)
			}
		}
	}
	st := f.status(h1)
	proxyOf := map[string]string{}
	for _, h := range st.Hosts {
		proxyOf[h.Name] = h.ProxyAddr
		if h.Name == "h3" && h.Draining != "drained" {
			t.Errorf("h3 after the drain: %+v", h)
		}
	}
	// h3's own proxy table: every vhost to its owner's proxy.
	tbl, err := proxy.LoadTable(cluster.RoutesFile(cluster.Dir(h3.home)))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range tbl.VHosts {
		if g := strings.TrimSuffix(v.Host, ".test"); v.To != proxyOf[hostOf[g]] {
			t.Errorf("h3's proxy sends %s to %s, want %s's proxy %s", v.Host, v.To, hostOf[g], proxyOf[hostOf[g]])
		}
	}
	var here []map[string]any
	if err := json.Unmarshal([]byte(f.mustTF(h3, "guests", "--json")), &here); err != nil || len(here) != 0 {
		t.Errorf("h3's own guests after the drain: %v %v", here, err)
	}
	if out := f.mustTF(h1, "cluster", "status"); !regexp.MustCompile(`(?m)^h3 +up,drained `).MatchString(out) {
		t.Errorf("status does not show h3 drained:\n%s", out)
	}
	again := f.mustTF(h1, "cluster", "drain", "h3")
	if !strings.Contains(again, "nothing to do") {
		t.Errorf("second drain:\n%s", again)
	}
	step("every site answers, guests listed once on h1/h2, routes moved, h3 empty; a second drain has nothing to do")
}

// siteFarm is the drain tests' cluster: three hosts (newFarm), each with
// its sshd, a guest disk serving "site HOSTNAME", and the playbook that
// makes a guest of it on a host with a claim (in the farm subnet join gave it) and a route.
type siteFarm struct {
	*farm
	disk, pb string
}

func newSiteFarm(t *testing.T) *siteFarm {
	guesttest.NeedRoot(t)
	disk := guesttest.BuildDisk(t, guesttest.Options{Size: "64M",
		Bootlocal: `mkdir -p /opt/www; echo "site $(hostname)" > /opt/www/index.html; httpd -p 80 -h /opt/www`})
	f := &siteFarm{farm: newFarm(t, 3), disk: disk.Path, pb: filepath.Join(t.TempDir(), "guest.lua")}
	for _, h := range f.hosts {
		f.sshd(h)
	}
	f.start()
	for _, h := range f.hosts {
		f.waitHost(f.hosts[0], h.name, cluster.HostUp)
	}
	os.WriteFile(f.pb, []byte(`
local cluster, colinux = require("cluster"), require("colinux")
local c = cluster.claim{ name = vars.name, host = vars.host, mem = "48M", driver = "ns" }
assert(colinux.network{}.subnet == c.subnet, "join gave the farm another subnet than its claims'")
local g = colinux.guest{ name = vars.name, driver = "ns", disk = vars.disk, ip = c.ip, mem = "48M" }
g:start()
g:wait_ready{ timeout = 30 }
cluster.route{ vhost = vars.name .. ".test", host = vars.host, addr = c.ip:match("^[^/]+") .. ":80", guest = vars.name }
`), 0o644)
	t.Cleanup(func() {
		// Before the namespaces go (cleanups run last-in first-out).
		gone := filepath.Join(t.TempDir(), "destroy.lua")
		os.WriteFile(gone, []byte(`local colinux = require("colinux")
for _, x in ipairs(colinux.list{}) do colinux.get(x.name):destroy{ disk = true } end`), 0o644)
		for _, h := range f.hosts {
			if out, errs, err := f.tf(h, "run", gone); err != nil {
				t.Logf("%s: destroying its guests: %v\n%s%s", h.name, err, out, errs)
			}
		}
	})
	return f
}

// siteGuests makes each guest on its host (hosts in parallel), each with a
// copy of the disk; it returns the names in order.
func (f *siteFarm) siteGuests(placed map[string]*netHost) []string {
	t := f.t
	var names []string
	for n := range placed {
		names = append(names, n)
	}
	sort.Strings(names)
	var wg sync.WaitGroup
	for _, h := range f.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, n := range names {
				if placed[n] != h {
					continue
				}
				own := filepath.Join(h.home, n+".img")
				if out, err := exec.Command("cp", "--sparse=always", f.disk, own).CombinedOutput(); err != nil {
					t.Errorf("cp: %v %s", err, out)
					return
				}
				if out, errs, err := f.tf(h, "run", f.pb, "-e", "name="+n, "-e", "host="+h.name, "-e", "disk="+own); err != nil {
					t.Errorf("%s: guest %s: %v\n%s%s", h.name, n, err, out, errs)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return names
}

// clientStat is what the client saw of one target.
type clientStat struct {
	OK, Failed int
	MaxGap     time.Duration
	GapEnd     time.Time // when the longest gap ended
	LastErr    string
}

// client starts the client in h's namespace on targets ("proxy|vhost");
// the returned function stops it and returns what it saw.
func (f *siteFarm) client(h *netHost, targets []string) func() map[string]clientStat {
	t := f.t
	cmd := inNS(h, append([]string{f.exe}, targets...)...)
	cmd.Env = append(os.Environ(), "TF_CLUSTER_TEST_ROLE=client")
	stdin, _ := cmd.StdinPipe()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.pids = append(f.pids, cmd.Process.Pid)
	f.mu.Unlock()
	time.Sleep(300 * time.Millisecond)
	return func() map[string]clientStat {
		time.Sleep(300 * time.Millisecond)
		stdin.Close()
		cmd.Wait()
		var seen map[string]clientStat
		if err := json.Unmarshal([]byte(out.String()), &seen); err != nil {
			t.Fatalf("client: %v\n%s", err, out.String())
		}
		return seen
	}
}

// TestDrainBench (bench/cluster.sh): N ns guests on h3 moved to h1 and h2
// in one run, alternating rounds (TINYFARM_DRAIN_ROUNDS, default 2): by hand (one `tinyfarm run` on h3 of g:migrate then
// cluster.route for each guest, the anchor) and by `tinyfarm cluster
// drain h3`, each with a client asking every site through h1's proxy.
// Prints TSV rows, medians over the rounds (and guests): total time, the
// client-seen gap per guest and the migration's own downtime.
func TestDrainBench(t *testing.T) {
	if os.Getenv("TINYFARM_BENCH") == "" {
		t.Skip("set TINYFARM_BENCH=1 (bench/cluster.sh)")
	}
	n := 3
	if v, err := strconv.Atoi(os.Getenv("TINYFARM_DRAIN_GUESTS")); err == nil && v > 0 {
		n = v
	}
	rounds := 2
	if v, err := strconv.Atoi(os.Getenv("TINYFARM_DRAIN_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	f := newSiteFarm(t)
	h1, h2, h3 := f.hosts[0], f.hosts[1], f.hosts[2]
	st := f.status(h1)
	hostKey := map[string]string{}
	for _, h := range st.Hosts {
		hostKey[h.Name] = h.SSHHostKey
	}
	type round struct {
		total       time.Duration
		gaps, downs []time.Duration
		failedReqs  int
	}
	run := func(prefix string, move func(names []string) (string, error), downRE *regexp.Regexp) round {
		placed := map[string]*netHost{}
		for i := 1; i <= n; i++ {
			placed[fmt.Sprintf("%s%d", prefix, i)] = h3
		}
		names := f.siteGuests(placed)
		var targets []string
		for _, g := range names {
			f.waitFetch(h1, g+".test", "site "+g)
			targets = append(targets, h1.ip+":8080|"+g+".test")
		}
		seenBy := f.client(h1, targets)
		t0 := time.Now()
		out, err := move(names)
		r := round{total: time.Since(t0)}
		seen := seenBy()
		t.Logf("%s (%v):\n%s", prefix, r.total.Round(time.Millisecond), out)
		if err != nil {
			t.Fatalf("%s: %v", prefix, err)
		}
		for _, tg := range targets {
			r.gaps = append(r.gaps, seen[tg].MaxGap)
			r.failedReqs += seen[tg].Failed
		}
		for _, m := range downRE.FindAllStringSubmatch(out, -1) {
			d, _ := time.ParseDuration(m[1])
			r.downs = append(r.downs, d)
		}
		if len(r.downs) != n {
			t.Fatalf("%s: %d downtimes in the output, want %d", prefix, len(r.downs), n)
		}
		return r
	}
	// By hand: the same moves (alternating h1, h2 as the drain's spread
	// placement does), each followed by its route.
	pb := filepath.Join(t.TempDir(), "hand.lua")
	os.WriteFile(pb, []byte(`
local cluster, colinux = require("cluster"), require("colinux")
local i = 0
for name in vars.names:gmatch("[^,]+") do
  i = i + 1
  local to = (i % 2 == 1) and "h1" or "h2"
  local r = colinux.get(name):migrate{ to = { name = to, address = vars[to .. "_ip"], key = vars.key, host_key = vars[to .. "_hostkey"] } }
  cluster.route{ vhost = name .. ".test", host = to, addr = r.ip .. ":80", guest = name }
  print(string.format("%s down %.3fs", name, r.downtime))
end
`), 0o644)
	var hand, drain round
	add := func(to *round, r round) {
		to.gaps = append(to.gaps, r.gaps...)
		to.downs = append(to.downs, r.downs...)
		to.failedReqs += r.failedReqs
	}
	var handTotals, drainTotals []time.Duration
	for r := 0; r < rounds; r++ {
		tag := string(rune('a' + r))
		h := run("hand"+tag, func(names []string) (string, error) {
			out, errs, err := f.tf(h3, "run", pb, "-e", "names="+strings.Join(names, ","), "-e", "key="+filepath.Join(cluster.Dir(h3.home), cluster.ClusterKeyFile),
				"-e", "h1_ip="+h1.ip, "-e", "h2_ip="+h2.ip, "-e", "h1_hostkey="+hostKey["h1"], "-e", "h2_hostkey="+hostKey["h2"])
			return out + errs, err
		}, regexp.MustCompile(`(?m)^hand`+tag+`\d+ down ([0-9.]+s)`))
		d := run("drain"+tag, func([]string) (string, error) {
			out, errs, err := f.tf(h2, "cluster", "drain", "h3")
			return out + errs, err
		}, regexp.MustCompile(`(?m)^drain`+tag+`\d+ +h3 -> h\d +offline +down ([0-9.]+m?s)`))
		add(&hand, h)
		add(&drain, d)
		handTotals, drainTotals = append(handTotals, h.total), append(drainTotals, d.total)
	}
	med := func(d []time.Duration) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2].Seconds()
	}
	row := func(metric string, v, a float64) {
		fmt.Printf("%s\t%.2f\tby hand: tinyfarm run of g:migrate + cluster.route per guest\t%.2f\t%.2f\n", metric, v, a, v/a)
	}
	row(fmt.Sprintf("cluster drain of %d ns guests, total s (median of %d)", n, rounds), med(drainTotals), med(handTotals))
	row("cluster drain, gap a client sees per guest, median s", med(drain.gaps), med(hand.gaps))
	row("cluster drain, migration downtime per guest, median s", med(drain.downs), med(hand.downs))
	t.Logf("failed requests: drain %d, by hand %d", drain.failedReqs, hand.failedReqs)
}
