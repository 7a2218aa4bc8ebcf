//go:build linux

package farm_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/crashtest"
)

// The resource tests have a bridge and subnet of their own.
const (
	resBridge = "tfcrash1"
	resSubnet = "10.77.230.0/24"
)

// resFarm starts n ns guests in the default configuration (user
// namespace, on the farm bridge) with mem each, every one serving
// "hello from NAME" over HTTP on port 80 (busybox httpd).
func resFarm(t *testing.T, mem int64, names ...string) (gs []*farm.Guest, state string) {
	t.Helper()
	guesttest.NeedRoot(t)
	if testing.Short() {
		t.Skip("boots guests")
	}
	ctx := context.Background()
	state = t.TempDir()
	t.Cleanup(func() { ns.DeleteBridge(resBridge) })
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: resBridge, Subnet: resSubnet})
	base := guesttest.BuildDisk(t, guesttest.Options{Bootlocal: "mkdir -p /www && echo \"hello from $(hostname)\" > /www/index.html && httpd -p 80 -h /www"})
	for _, name := range names {
		disk := guesttest.CopyDisk(t, base.Path)
		if _, err := fm.Define(farm.Definition{Name: name, Driver: "ns", Disk: disk, MemBytes: mem, UserNS: true, Bootcodes: "host=" + name}, farm.ChangeOptions{}); err != nil {
			t.Fatal(err)
		}
		g, err := fm.Guest(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Destroy(context.Background(), false) })
		if _, err := g.Start(ctx); err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	for _, g := range gs {
		if err := g.WaitReady(ctx, 60*time.Second); err != nil && !strings.Contains(err.Error(), "ssh") {
			t.Fatalf("%s: %v", g.Def.Name, err)
		}
		if st, _ := g.Status(ctx); !strings.HasPrefix(st.Isolation, "userns+") {
			t.Errorf("%s isolation: %s, want the default user namespace", g.Def.Name, st.Isolation)
		}
	}
	return gs, state
}

func guestURL(g *farm.Guest) string {
	ip, _, _ := strings.Cut(g.Def.IP, "/")
	return "http://" + ip + "/"
}

// latencies GETs every URL in turn until stop is closed and returns the
// request latencies and the failures.
func latencies(urls []string, stop <-chan struct{}) (lat []time.Duration, fails []string) {
	c := &http.Client{Timeout: 5 * time.Second}
	for {
		for _, u := range urls {
			select {
			case <-stop:
				return lat, fails
			default:
			}
			t0 := time.Now()
			resp, err := c.Get(u)
			if err != nil {
				fails = append(fails, err.Error())
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				fails = append(fails, u+": "+resp.Status)
				continue
			}
			lat = append(lat, time.Since(t0))
		}
	}
}

func percentile(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// serving measures the other guests' HTTP latency while event runs.
func serving(t *testing.T, others []*farm.Guest, what string, event func()) {
	t.Helper()
	var urls []string
	for _, g := range others {
		urls = append(urls, guestURL(g))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var lat []time.Duration
	var fails []string
	wg.Add(1)
	go func() { defer wg.Done(); lat, fails = latencies(urls, stop) }()
	t0 := time.Now()
	event()
	d := time.Since(t0)
	close(stop)
	wg.Wait()
	t.Logf("%s (%v): the other guests answered %d requests, p50 %v, p99 %v, max %v, %d failures",
		what, d.Round(time.Millisecond), len(lat), percentile(lat, 0.5), percentile(lat, 0.99), percentile(lat, 1), len(fails))
	if len(fails) > 0 {
		t.Errorf("%s: the other guests failed %d requests, e.g. %s", what, len(fails), fails[0])
	}
	if len(lat) == 0 {
		t.Errorf("%s: no request answered", what)
	}
}

// TestOOMInsideGuest: a guest that allocates past its memory quota has
// its allocating process OOM-killed inside its own cgroup; the guest runs
// on, g:status() counts the kill, and the other guests keep serving
// (their latency during the event is logged, not asserted).
func TestOOMInsideGuest(t *testing.T) {
	gs, state := resFarm(t, 64<<20, "hog", "web1", "web2")
	ctx := context.Background()
	hog := gs[0]
	if st, _ := hog.Status(ctx); st.OOMKills != 0 {
		t.Fatalf("before: %d OOM kills", st.OOMKills)
	}
	var res driver.ExecResult
	serving(t, gs[1:], "a guest allocating past its 64 MiB", func() {
		var err error
		// awk doubles a string until the kernel kills it.
		res, err = hog.Exec(ctx, []string{"/bin/sh", "-c", `awk 'BEGIN { s = "x"; while (1) s = s s }'; echo "awk ended: $?"`}, driver.ExecOptions{Timeout: 2 * time.Minute})
		if err != nil {
			t.Errorf("exec: %v", err)
		}
	})
	if !strings.Contains(string(res.Stdout), "awk ended: 137") {
		t.Errorf("the allocating process was not SIGKILLed: code %d, %q %q", res.Code, res.Stdout, res.Stderr)
	}
	st, err := hog.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != driver.Running || st.OOMKills < 1 {
		t.Errorf("status after the OOM kill: %+v, want running with oom_kills >= 1", st)
	}
	for _, g := range gs {
		if st, _ := g.Status(ctx); g != hog && st.OOMKills != 0 {
			t.Errorf("%s: %d OOM kills, want none", g.Def.Name, st.OOMKills)
		}
	}
	// What a playbook sees.
	out := crashtest.MustRun(t, crashtest.Cmd{Args: []string{"repl"}, Env: []string{"TINYFARM_HOME=" + state},
		Stdin: `local s = colinux.get("hog"):status(); print("OOM " .. s.state .. " " .. s.oom_kills)`})
	if !strings.Contains(out, "OOM running "+strconv.Itoa(st.OOMKills)) {
		t.Errorf("g:status() in a playbook: %s, want running with oom_kills %d", out, st.OOMKills)
	}
	// The guest still serves.
	resp, err := http.Get(guestURL(hog))
	if err != nil {
		t.Fatalf("hog after the OOM kill: %v", err)
	}
	resp.Body.Close()
}

// TestForkBombInsideGuest: a fork bomb in a guest stops at the guest's
// pids limit (1024 by default); the host stays responsive (it starts
// processes and the other guests serve) and the guest can be stopped.
func TestForkBombInsideGuest(t *testing.T) {
	// With 64 MiB the bomb's ~1000 shells also hit the memory quota and
	// the OOM killer may take the guest's init: enough memory here keeps
	// the test on the pids limit.
	gs, _ := resFarm(t, 192<<20, "bomb", "web1")
	ctx := context.Background()
	bomb := gs[0]
	st, _ := bomb.Status(ctx)
	cg := guestCgroup(t, st.PID, "pids")
	max, _ := os.ReadFile(filepath.Join(cg, "pids.max"))
	if strings.TrimSpace(string(max)) != "1024" {
		t.Errorf("pids.max of the guest = %q, want the default 1024", max)
	}
	peak := 0
	serving(t, gs[1:], "a fork bomb in another guest", func() {
		// The bomb runs until the exec's timeout kills what it started.
		done := make(chan struct{})
		go func() {
			defer close(done)
			r, err := bomb.Exec(ctx, []string{"/bin/sh", "-c", `b() { b | b & }; b 2>/dev/null; sleep 8`}, driver.ExecOptions{Timeout: 8 * time.Second})
			t.Logf("bomb exec: %v, code %d", err, r.Code)
		}()
		defer func() { <-done }()
		deadline := time.Now().Add(6 * time.Second)
		for time.Now().Before(deadline) {
			b, _ := os.ReadFile(filepath.Join(cg, "pids.current"))
			n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			peak = max0(peak, n)
			// The host starts a process while the bomb runs.
			t0 := time.Now()
			if err := exec0(); err != nil {
				t.Errorf("the host cannot start a process: %v", err)
			}
			if d := time.Since(t0); d > time.Second {
				t.Logf("host process start took %v", d)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	st, _ = bomb.Status(ctx)
	t.Logf("fork bomb: the guest peaked at %d processes (pids.max 1024); afterwards: %+v", peak, st)
	if peak > 1024 || peak < 100 {
		t.Errorf("peak %d processes in the guest, want the bomb to reach and stop at 1024", peak)
	}
	t0 := time.Now()
	if _, err := bomb.Stop(ctx, 5*time.Second); err != nil {
		t.Errorf("stop the bombed guest: %v", err)
	}
	t.Logf("stopping the bombed guest took %v", time.Since(t0).Round(time.Millisecond))
}

func max0(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// guestCgroup returns the host directory of the cgroup (v1 controller, or
// v2) that pid is in.
func guestCgroup(t *testing.T, pid int, controller string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		if slices.Contains(strings.Split(f[1], ","), controller) {
			return filepath.Join("/sys/fs/cgroup", controller, f[2])
		}
		if f[0] == "0" && f[1] == "" {
			if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
				return filepath.Join("/sys/fs/cgroup", f[2])
			}
		}
	}
	t.Fatalf("no %s cgroup for pid %d in %s", controller, pid, b)
	return ""
}

// exec0 starts and waits for a host process.
func exec0() error { return exec.Command("true").Run() }
