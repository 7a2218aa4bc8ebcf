//go:build linux

// Package guestbench measures namespace guests: start to SSH-ready (and
// where its time goes, TestStartBreakdown),
// hardened vs unhardened, 20 guests started in parallel with the host
// memory each costs beyond its own processes, and nginx installed into a
// running guest over SSH. Run by bench/guests.sh (TINYFARM_BENCH=1); it
// prints TSV rows for bench/run.sh. SSH to a guest (TestWarmCommand) is
// run by bench/ssh.sh.
package guestbench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

const bridge = "tfbench0"

func TestMain(m *testing.M) {
	ns.Main()
	code := m.Run()
	ns.DeleteBridge(bridge)
	os.Exit(code)
}

func gate(t *testing.T) {
	if os.Getenv("TINYFARM_BENCH") != "1" {
		t.Skip("benchmark: run bench/guests.sh (TINYFARM_BENCH=1)")
	}
	guesttest.NeedRoot(t)
}

func row(metric, value, anchor, anchorValue, ratio string) {
	fmt.Printf("%s\t%s\t%s\t%s\t%s\n", metric, value, anchor, anchorValue, ratio)
}

func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

func newFarm(t *testing.T, state string, r *ns.Runner) *farm.Farm {
	return farm.New(state, farm.Options{Drivers: map[string]driver.Runner{"ns": r}, Bridge: bridge, Subnet: "10.77.252.0/24"})
}

// startReady starts a guest and waits for marker + one SSH handshake.
func startReady(t *testing.T, fm *farm.Farm, name, disk, hostKey string) (*farm.Guest, time.Duration) {
	ctx := context.Background()
	// The default configuration: a user namespace where the platform has
	// one (colinux.guest{} does the same), the farm bridge.
	if _, err := fm.Define(farm.Definition{Name: name, Driver: "ns", Disk: disk, MemBytes: 64 << 20, HostKey: hostKey, User: "root", UserNS: ns.UserNSAvailable()}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	g, err := fm.Guest(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	if err := g.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("TINYFARM_BENCH_TRACE") != "" {
		t.Logf("%s: start %v, ready %v", name, t1.Sub(t0), time.Since(t1))
	}
	return g, time.Since(t0)
}

func TestStartToSSHReady(t *testing.T) {
	gate(t)
	state := t.TempDir()
	base := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state, Size: "64M"})
	measure := func(r *ns.Runner, n int) time.Duration {
		fm := newFarm(t, state, r)
		var ds []time.Duration
		for i := 0; i < n; i++ {
			g, d := startReady(t, fm, fmt.Sprintf("b%d", i), guesttest.CopyDisk(t, base.Path), base.HostKey)
			ds = append(ds, d)
			g.Destroy(context.Background(), false)
		}
		return median(ds)
	}
	hard := measure(&ns.Runner{}, 21)
	soft := measure(&ns.Runner{Unhardened: true}, 11)

	// Anchor: a bare namespace process (unshare + chroot + true) on the same
	// extracted root, the floor any namespace guest pays.
	rel := guesttest.Release(t)
	root := filepath.Join(t.TempDir(), "root")
	if err := rel.ExtractCore(root); err != nil {
		t.Fatal(err)
	}
	var bare []time.Duration
	for i := 0; i < 11; i++ {
		t0 := time.Now()
		if out, err := exec.Command("unshare", "--pid", "--mount", "--uts", "--net", "--ipc", "--fork", "chroot", root, "/bin/true").CombinedOutput(); err != nil {
			t.Fatalf("unshare: %v %s", err, out)
		}
		bare = append(bare, time.Since(t0))
	}
	b := median(bare)
	row("ns: start -> SSH-ready, median of 21, userns + bridge (ms, goal <=100)", ms(hard), "bare unshare+chroot /bin/true", ms(b), fmt.Sprintf("%.1fx", float64(hard)/float64(b)))
	row("ns: hardened vs unhardened start (ms, goal within 10%)", ms(hard), "unhardened", ms(soft), fmt.Sprintf("%+.0f%%", (float64(hard)/float64(soft)-1)*100))
}

// smaps returns a process's unique (USS) and proportional (PSS) memory.
func smaps(pid int) (uss, pss int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fl[1], 10, 64)
		switch fl[0] {
		case "Private_Clean:", "Private_Dirty:":
			uss += v << 10
		case "Pss:":
			pss += v << 10
		}
	}
	return uss, pss
}

func TestTwentyInParallel(t *testing.T) {
	gate(t)
	state := t.TempDir()
	base := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state, Size: "64M"})
	fm := newFarm(t, state, &ns.Runner{})
	const n = 20
	disks := make([]string, n)
	for i := range disks {
		disks[i] = guesttest.CopyDisk(t, base.Path)
	}
	var wg sync.WaitGroup
	guests := make([]*farm.Guest, n)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			guests[i], _ = startReady(t, fm, fmt.Sprintf("p%d", i), disks[i], base.HostKey)
		}(i)
	}
	wg.Wait()
	total := time.Since(t0)
	// What a guest costs the host beyond its own processes is its monitor
	// (unique memory of the process, smaps_rollup Private_*) plus kernel
	// objects (netns, veth, cgroups) not measured here. The guests' own
	// processes are what their memory cgroups hold.
	var own, monUSS, monPSS int64
	for _, g := range guests {
		b, err := os.ReadFile(filepath.Join(state, "guests", g.Def.Name, "run", "runtime.json"))
		if err != nil {
			t.Fatal(err)
		}
		own += cgroupUsage(string(b))
		var rt ns.Runtime
		if err := json.Unmarshal(b, &rt); err != nil {
			t.Fatal(err)
		}
		u, p := smaps(rt.MonitorPID)
		monUSS += u
		monPSS += p
	}
	for _, g := range guests {
		wg.Add(1)
		go func(g *farm.Guest) { defer wg.Done(); g.Destroy(context.Background(), false) }(g)
	}
	wg.Wait()
	mib := func(v int64) string { return fmt.Sprintf("%.1f", float64(v)/n/(1<<20)) }
	row("ns: 20 guests started in parallel, to SSH-ready (ms)", ms(total), "20 x sequential median", "-", "-")
	row("ns: host memory per guest beyond its own processes: monitor USS (MiB, goal <=5)", mib(monUSS), "monitor PSS / guest's own processes", mib(monPSS)+" / "+mib(own), "-")
}

func cgroupUsage(runtimeJSON string) int64 {
	i := strings.Index(runtimeJSON, `"memory":"`)
	if i < 0 {
		return 0
	}
	rest := runtimeJSON[i+len(`"memory":"`):]
	dir := rest[:strings.Index(rest, `"`)]
	b, err := os.ReadFile(filepath.Join(dir, "memory.usage_in_bytes"))
	if err != nil {
		b, _ = os.ReadFile(filepath.Join(dir, "memory.current"))
	}
	v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return v
}

func TestInstallNginxOverSSH(t *testing.T) {
	gate(t)
	state := t.TempDir()
	rel := guesttest.Release(t)
	client, err := tcz.New(tcz.Config{URL: "file://" + rel.Mirror, Version: "15.x", Arch: "x86_64", Cache: filepath.Join(state, "tcz")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Fetch(context.Background(), tcz.FetchOptions{}, "nginx"); err != nil {
		t.Fatal(err)
	}
	base := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state, Size: "64M"})
	fm := newFarm(t, state, &ns.Runner{})
	var ds []time.Duration
	for i := 0; i < 3; i++ {
		g, _ := startReady(t, fm, fmt.Sprintf("i%d", i), guesttest.CopyDisk(t, base.Path), base.HostKey)
		tg, err := g.Target(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		if _, err := client.Install(context.Background(), tg, "nginx", tcz.InstallOptions{}); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, time.Since(t0))

		g.Destroy(context.Background(), false)
	}
	// Anchor: the seed's way, unsquashfs of the same packages into a local
	// directory (no network, no guest), the floor of any install.
	dir := t.TempDir()
	t0 := time.Now()
	for _, p := range []string{"libcrypto", "libxcrypt", "openssl", "pcre2", "zlib", "nginx"} {
		exec.Command("unsquashfs", "-q", "-f", "-n", "-d", dir, rel.TCZ(p)).Run()
	}
	local := time.Since(t0)
	row("ns: nginx + 5 deps installed into a running guest over SSH (ms, goal <=1000)", ms(median(ds)), "unsquashfs into a local dir", ms(local), fmt.Sprintf("%.1fx", float64(median(ds))/float64(local)))
}

// TestStartBreakdown starts a guest 21 times in the default configuration
// and prints where the time from g:start() to the first SSH handshake
// goes, median per step: the monitor's own steps (its trace lines, see
// ns.Runner), then the guest's Tiny Core boot until the ready marker is
// on its console, then the SSH handshake.
func TestStartBreakdown(t *testing.T) {
	gate(t)
	t.Setenv("TINYFARM_NS_TRACE", "1")
	state := t.TempDir()
	base := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state, Size: "64M"})
	fm := newFarm(t, state, &ns.Runner{})
	steps := map[string][]float64{}
	var order []string
	add := func(step string, ms float64) {
		if _, ok := steps[step]; !ok {
			order = append(order, step)
		}
		steps[step] = append(steps[step], ms)
	}
	const n = 21
	ctx := context.Background()
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("t%d", i)
		if _, err := fm.Define(farm.Definition{Name: name, Driver: "ns", Disk: guesttest.CopyDisk(t, base.Path), MemBytes: 64 << 20, HostKey: base.HostKey, User: "root", UserNS: ns.UserNSAvailable()}, farm.ChangeOptions{}); err != nil {
			t.Fatal(err)
		}
		g, err := fm.Guest(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		run := filepath.Join(state, "guests", name, "run")
		t0 := time.Now()
		if _, err := g.Start(ctx); err != nil {
			t.Fatal(err)
		}
		tStart := time.Since(t0)
		for {
			b, _ := os.ReadFile(filepath.Join(run, "console.log"))
			if strings.Contains(string(b), driver.ReadyMarker) {
				break
			}
			if time.Since(t0) > 30*time.Second {
				t.Fatalf("%s: no ready marker: %s", name, b)
			}
			time.Sleep(500 * time.Microsecond)
		}
		tMarker := time.Since(t0)
		if err := g.WaitReady(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		tSSH := time.Since(t0)
		log, _ := os.ReadFile(filepath.Join(run, "monitor.log"))
		prev := 0.0
		for _, l := range strings.Split(string(log), "\n") {
			f := strings.Fields(l)
			if len(f) < 3 || f[0] != "trace" {
				continue
			}
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			add("monitor: "+strings.Join(f[1:len(f)-1], " "), v)
			prev = max(prev, v)
		}
		msf := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		add("g:start() returns (runtime.json seen)", msf(tStart))
		add("Tiny Core boot: the ready marker on the console (0.5 ms poll)", msf(tMarker))
		add("total: g:wait_ready() returns (marker + one SSH handshake)", msf(tSSH))
		g.Destroy(ctx, false)
	}
	// Each step's end, in ms since g:start() was called (the monitor's
	// cgroup join, disks and veth run at once, so their ends overlap).
	fmt.Fprintf(os.Stderr, "ns start breakdown, median of %d starts (ms since g:start() when the step ended):\n", n)
	for _, s := range order {
		v := steps[s]
		sort.Float64s(v)
		fmt.Fprintf(os.Stderr, "  %7.2f  %s\n", v[len(v)/2], s)
	}
	tot := steps["total: g:wait_ready() returns (marker + one SSH handshake)"]
	row(fmt.Sprintf("ns: start -> SSH-ready, median of %d, traced (ms, goal <=100)", n), fmt.Sprintf("%.1f", tot[len(tot)/2]), "-", "-", "-")
}
