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
