//go:build linux

package cluster_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
)

// TestBenchRemoteThirty (bench/remote.sh; TF_BENCH_REMOTE=ROUNDS): 30 ns
// guests placed and started across three hosts (network namespaces, each
// with its sshd) by one controller playbook on h1 (cluster.place,
// cluster.claim, cluster.guest, parallel), against the same guests started
// host by host with `ssh HOST tinyfarm run hostN.lua` in a loop (OpenSSH,
// the host keys pinned in a known_hosts file). Rounds alternate; medians.
// Prints the TSV row for bench/run.sh on stdout.
func TestBenchRemoteThirty(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("TF_BENCH_REMOTE"))
	if rounds <= 0 {
		t.Skip("a benchmark: TF_BENCH_REMOTE=ROUNDS (bench/remote.sh)")
	}
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("ssh (openssh-client) not installed")
	}
	f := newRemoteFarm(t)
	h1 := f.hosts[0]
	const n = 30
	// One shared base per host (its farm key, for wait_ready's SSH), each
	// guest its own layer there.
	vars := []string{"n=" + strconv.Itoa(n)}
	known := filepath.Join(t.TempDir(), "known_hosts")
	var kh strings.Builder
	for _, h := range f.hosts {
		d := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: h.home,
			Bootlocal: "mkdir -p /home/tc/.ssh && cp /root/.ssh/authorized_keys /home/tc/.ssh/ && chown -R tc /home/tc/.ssh"})
		vars = append(vars, "base_"+h.name+"="+d.Path, "key_"+h.name+"="+d.HostKey)
		fmt.Fprintf(&kh, "%s %s\n", h.ip, f.sshd[h.name].HostKey)
	}
	os.WriteFile(known, []byte(kh.String()), 0o644)
	get := func(vs []string, k string) string {
		for _, v := range vs {
			if strings.HasPrefix(v, k+"=") {
				return v[len(k)+1:]
			}
		}
		return ""
	}

	controller := f.playbook("thirty.lua", `
local cluster = require("cluster")
local names, hosts = {}, {}
for i = 1, tonumber(vars.n) do
  local name = vars.prefix .. i
  local h = cluster.place{ mem = "32M", driver = "ns" }       -- one at a time: each claim counts
  cluster.claim{ name = name, host = h, mem = "32M", driver = "ns" }
  names[i], hosts[name] = name, h.name
end
parallel(names, function(name)
  local h = hosts[name]
  local g = cluster.guest{ name = name, host = h, base = vars["base_" .. h], host_key = vars["key_" .. h], mem = "32M" }
  g:start()
  g:wait_ready{ timeout = 120 }
end, { forks = 24 }) -- 8 per host, as each host's own run in the baseline
`)
	// The baseline: each host starts its share with a local playbook.
	local := f.playbook("local.lua", `
local colinux = require("colinux")
local names = {}
for i = 1, tonumber(vars.n) do names[i] = vars.prefix .. i end
parallel(names, function(name)
  local g = colinux.guest{ name = name, base = vars.base, host_key = vars.key, mem = "32M" }
  g:start()
  g:wait_ready{ timeout = 120 }
end)
`)
	cleanupPB := f.playbook("clean.lua", `
local cluster = require("cluster")
for _, h in ipairs({ "h1", "h2", "h3" }) do
  cluster.run(h, vars.far)
end
for _, g in ipairs(cluster.guests()) do cluster.release(g.name) end
`)
	far := f.playbook("far-clean.lua", `
local colinux = require("colinux")
local names = {}
for _, g in ipairs(colinux.list()) do names[#names + 1] = g.name end
parallel(names, function(name) colinux.get(name):destroy{ disk = true } end)
`)
	clean := func() {
		if out, errs, err := f.tf(h1, "run", cleanupPB, "-e", "far="+far); err != nil {
			t.Fatalf("clean: %v\n%s%s", err, out, errs)
		}
	}
	t.Cleanup(func() { f.tf(h1, "run", cleanupPB, "-e", "far="+far) })
	key := filepath.Join(h1.home, "keys", "farm_ed25519")

	var ctl, loop []time.Duration
	for r := 0; r < rounds; r++ {
		prefix := fmt.Sprintf("c%d-", r)
		start := time.Now()
		args := []string{"run", controller, "-e", "prefix=" + prefix}
		for _, v := range vars {
			args = append(args, "-e", v)
		}
		out, errs, err := f.tf(h1, args...)
		if err != nil {
			t.Fatalf("controller round %d: %v\n%s%s", r, err, out, errs)
		}
		ctl = append(ctl, time.Since(start))
		clean()

		prefix = fmt.Sprintf("l%d-", r)
		start = time.Now()
		for i, h := range f.hosts {
			per := n / len(f.hosts)
			if i < n%len(f.hosts) {
				per++
			}
			// ssh's remote command line: the far shell gets the words.
			remote := fmt.Sprintf("TINYFARM_HOME=%s %s run %s -e n=%d -e prefix=%s%s- -e base=%s -e key=%q",
				h.home, f.wrapper, local, per, prefix, h.name, get(vars, "base_"+h.name), get(vars, "key_"+h.name))
			cmd := exec.Command("ip", "netns", "exec", h1.ns, sshBin, "-i", key, "-o", "UserKnownHostsFile="+known,
				"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "root@"+h.ip, remote)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("ssh %s tinyfarm run, round %d: %v\n%s", h.name, r, err, b)
			}
		}
		loop = append(loop, time.Since(start))
		clean()
		t.Logf("round %d: controller %.2fs, ssh loop %.2fs", r, ctl[r].Seconds(), loop[r].Seconds())
	}
	med := func(d []time.Duration) float64 {
		s := append([]time.Duration{}, d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2].Seconds()
	}
	c, l := med(ctl), med(loop)
	fmt.Printf("cluster: 30 ns guests placed+started on 3 hosts, one controller playbook (s, median of %d)\t%.2f\tssh HOST tinyfarm run, host by host\t%.2f\t%.2f\n", rounds, c, l, c/l)
}

// TestBenchRemoteSSH (bench/remote.sh ssh; TF_BENCH_REMOTE_SSH=ROUNDS):
// commands in a guest of h2 run from h1, through h2, two ways: a
// controller playbook's g:ssh() session (`tinyfarm run`: the cluster
// lookup, the machine session with h2, the guest's access, the jump) and
// OpenSSH's `ssh -J root@h2 tc@guest CMD` (both host keys pinned in a
// known_hosts file), once with one command, once with 20 (the playbook on
// one session, ssh once per command). Rounds alternate; medians. Prints
// one TSV row per case on stdout.
func TestBenchRemoteSSH(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("TF_BENCH_REMOTE_SSH"))
	if rounds <= 0 {
		t.Skip("a benchmark: TF_BENCH_REMOTE_SSH=ROUNDS (bench/remote.sh ssh)")
	}
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("ssh (openssh-client) not installed")
	}
	f := newRemoteFarm(t)
	h1, h2 := f.hosts[0], f.hosts[1]
	d := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: h2.home,
		Bootlocal: "mkdir -p /home/tc/.ssh && cp /root/.ssh/authorized_keys /home/tc/.ssh/ && chown -R tc /home/tc/.ssh"})
	vars := []string{"disk=" + d.Path, "key=" + d.HostKey}
	far := f.playbook("far-clean.lua", `for _, g in ipairs(require("colinux").list()) do require("colinux").get(g.name):destroy() end`)
	t.Cleanup(func() { f.tf(h1, "run", f.playbook("clean.lua", `require("cluster").run("h2", "`+far+`")`)) })
	// n commands over one g:ssh() session; the first run also starts the
	// guest and has h2 authorize this controller's key in it.
	pb := f.playbook("ssh.lua", `
local g = require("cluster").guest{ name = "sshb", host = "h2", disk = vars.disk, host_key = vars.key, mem = "64M" }
if vars.start then g:start(); g:wait_ready{ timeout = 60 } end
local s = g:ssh()
for i = 1, tonumber(vars.n) do assert(s:run("cat /proc/sys/kernel/hostname").stdout == "sshb\n") end
log("ip " .. g.ip)
`)
	run := func(n int, extra ...string) string {
		args := []string{"run", pb, "-e", "n=" + strconv.Itoa(n)}
		for _, v := range append(vars, extra...) {
			args = append(args, "-e", v)
		}
		out, errs, err := f.tf(h1, args...)
		if err != nil {
			t.Fatalf("controller: %v\n%s%s", err, out, errs)
		}
		return out
	}
	out := run(1, "start=1")
	i := strings.Index(out, "ip ")
	if i < 0 {
		t.Fatalf("no guest ip in:\n%s", out)
	}
	ip := strings.Fields(out[i+3:])[0]
	dir := t.TempDir()
	known, conf := filepath.Join(dir, "known_hosts"), filepath.Join(dir, "ssh_config")
	os.WriteFile(known, []byte(fmt.Sprintf("%s %s\n%s %s\n", h2.ip, f.sshd["h2"].HostKey, ip, d.HostKey)), 0o644)
	// -F reaches the jump's own ssh too (-i would not).
	os.WriteFile(conf, []byte(fmt.Sprintf("Host *\n  IdentityFile %s\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
		filepath.Join(h1.home, "keys", "farm_ed25519"), known)), 0o644)
	// mux: one connection for all n commands (ControlMaster, as a user
	// running many commands would), closed at the end.
	openssh := func(n int, mux bool) {
		args := []string{"netns", "exec", h1.ns, sshBin, "-F", conf}
		if mux {
			args = append(args, "-o", "ControlMaster=auto", "-o", "ControlPath="+filepath.Join(dir, "mux"), "-o", "ControlPersist=60")
			defer exec.Command("ip", append(args, "-O", "exit", "tc@"+ip)...).Run()
		}
		for range n {
			cmd := exec.Command("ip", append(args, "-J", "root@"+h2.ip, "tc@"+ip, "cat /proc/sys/kernel/hostname")...)
			if b, err := cmd.Output(); err != nil || string(b) != "sshb\n" {
				t.Fatalf("ssh -J: %v\n%s", err, b)
			}
		}
	}
	med := func(d []time.Duration) float64 {
		s := append([]time.Duration{}, d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2].Seconds() * 1000
	}
	for _, c := range []struct {
		n      int
		mux    bool
		anchor string
	}{{1, false, "ssh -J host guest CMD"}, {20, false, "ssh -J host guest CMD, a connection per command"}, {20, true, "ssh -J host guest CMD, one ControlMaster connection"}} {
		var tf, os []time.Duration
		for r := 0; r < rounds; r++ {
			start := time.Now()
			run(c.n)
			tf = append(tf, time.Since(start))
			start = time.Now()
			openssh(c.n, c.mux)
			os = append(os, time.Since(start))
			t.Logf("%d commands (mux %v), round %d: tinyfarm run g:ssh() %.0fms, ssh -J %.0fms", c.n, c.mux, r, tf[r].Seconds()*1000, os[r].Seconds()*1000)
		}
		a, b := med(tf), med(os)
		fmt.Printf("cluster: %d command(s) in a guest of another host over g:ssh(), from start (ms, median of %d)\t%.0f\t%s\t%.0f\t%.2f\n", c.n, rounds, a, c.anchor, b, a/b)
	}
}
