//go:build linux

package playbooks_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// guestRuntime is what a running ns guest's monitor records.
type guestRuntime struct {
	MonitorPID int    `json:"monitor_pid"`
	InitPID    int    `json:"init_pid"`
	Veth       string `json:"veth"`
	Cgroups    struct {
		Paths map[string]string `json:"paths"`
	} `json:"cgroups"`
}

func readRuntime(t *testing.T, state, name string) (guestRuntime, bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "guests", name, "run", "runtime.json"))
	if err != nil {
		return guestRuntime{}, false
	}
	var rt guestRuntime
	if err := json.Unmarshal(b, &rt); err != nil {
		t.Fatal(err)
	}
	return rt, true
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// loopsOf lists the loop devices whose backing file is path.
func loopsOf(path string) []string {
	var out []string
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		if b, _ := os.ReadFile(f); strings.TrimSpace(string(b)) == path {
			out = append(out, strings.Split(f, "/")[3])
		}
	}
	return out
}

// TestRebootBringsTheFarmBack is a host reboot, simulated: a farm of real
// ns guests in the default mode (user namespaces where available, on the
// farm bridge) serves sites through the proxy daemon; everything tinyfarm
// started is killed with SIGKILL by PID, its /run state, bridge, veths,
// guard chains and cgroups removed as a reboot would; then `tinyfarm boot`
// brings back exactly the autostart guests (priority order) and the
// proxy on its address, with nothing stale left, and a second boot
// changes nothing. Then the farm is taken down as `make demo-down` does,
// and nothing of it is left on the host.
func TestRebootBringsTheFarmBack(t *testing.T) {
	bin, mirror, work, state, env := e2e(t)
	const bridge, subnet = "tfboot0", "10.77.236.0/24"
	pb, _ := filepath.Abs("../testdata/playbooks/reboot.lua")
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	tf := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = work, env
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	const demoDown = `for _, g in ipairs(colinux.list()) do colinux.get(g.name):destroy{disk = true} end; proxy.daemon{stop = true}; colinux.network{remove = true}`
	t.Cleanup(func() {
		tf(demoDown, "repl")
		exec.Command("ip", "link", "del", bridge).Run()
	})
	out, err := tf("", "run", pb, "-e", "mirror="+mirror, "-e", "dir="+work, "-e", "bridge="+bridge, "-e", "subnet="+subnet, "-e", "listen="+listen)
	if err != nil || !strings.Contains(out, "failed=0") {
		t.Fatalf("playbook: %v\n%s", err, out)
	}
	base := "http://" + listen + "/"
	for _, n := range []string{"a1", "a2", "n1"} {
		if body := getHost(t, base, n+".boot.test"); !strings.Contains(body, "<h1>"+n+"</h1>") {
			t.Fatalf("%s before the reboot: %q", n, body)
		}
	}

	// The reboot: SIGKILL by PID (monitors first, so none cleans up),
	// then what a reboot clears.
	var pids []int
	before := map[string]guestRuntime{}
	for _, n := range []string{"a1", "a2", "n1"} {
		rt, ok := readRuntime(t, state, n)
		if !ok {
			t.Fatalf("%s has no runtime record", n)
		}
		before[n] = rt
		pids = append(pids, rt.MonitorPID, rt.InitPID)
	}
	b, err := os.ReadFile(filepath.Join(state, "proxy", "serve.pid"))
	if err != nil {
		t.Fatal(err)
	}
	proxyPID, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	pids = append(pids, proxyPID)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var left []int
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still alive after SIGKILL: %v", left)
		}
	}
	unmountUnder(t, state, work)
	for n, rt := range before {
		for _, d := range rt.Cgroups.Paths {
			os.Remove(d) // empty now: its processes are dead
		}
		if rt.Veth != "" {
			exec.Command("ip", "link", "del", rt.Veth).Run()
		}
		inst := driver.Spec{Name: n, Dir: filepath.Join(state, "guests", n, "run")}.Instance()
		os.RemoveAll(filepath.Join("/run/tinyfarm-ns", inst))
		claims, _ := filepath.Glob("/run/tinyfarm-ns/ids/[0-9]*")
		for _, c := range claims {
			if b, _ := os.ReadFile(c); strings.HasPrefix(string(b), inst+" ") {
				os.Remove(c)
			}
		}
	}
	exec.Command("ip", "link", "del", bridge).Run()
	for _, ipt := range []string{"iptables", "ip6tables"} {
		exec.Command(ipt, "-w", "-D", "INPUT", "-i", bridge, "-j", "TF-"+bridge).Run()
		exec.Command(ipt, "-w", "-F", "TF-"+bridge).Run()
		exec.Command(ipt, "-w", "-X", "TF-"+bridge).Run()
	}
	if resp, err := http.Get(base); err == nil {
		resp.Body.Close()
		t.Fatalf("the proxy still answers after the reboot: %s", resp.Status)
	}

	out, err = tf("", "boot")
	if err != nil {
		t.Fatalf("tinyfarm boot: %v\n%s", err, out)
	}
	t.Logf("tinyfarm boot:\n%s", out)
	for _, want := range []string{"changed    network " + bridge, "changed    guest a1 started", "changed    guest a2 started",
		"changed    proxy daemon started on " + listen, "BOOT  changed=4 ok=0 failed=0"} {
		if !strings.Contains(out, want) {
			t.Errorf("boot output lacks %q", want)
		}
	}
	// a1 (priority 10, autostart_delay 1s) first; a2 once a1 was ready
	// and the delay passed.
	var started [2]time.Time
	for i, n := range []string{"a1", "a2"} {
		b, _ := os.ReadFile(filepath.Join(state, "guests", n, "run", "runtime.json"))
		var rt struct {
			Started time.Time `json:"started"`
		}
		json.Unmarshal(b, &rt)
		started[i] = rt.Started
	}
	if d := started[1].Sub(started[0]); d < time.Second {
		t.Errorf("a2 started %v after a1, want at least its autostart_delay (1s) later", d)
	}
	for _, n := range []string{"a1", "a2"} {
		if body := getHost(t, base, n+".boot.test"); !strings.Contains(body, "<h1>"+n+"</h1>") {
			t.Errorf("%s after boot: %q", n, body)
		}
	}
	if out, _ := tf("", "guests"); !strings.Contains(out, "n1") || strings.Count(out, "running") != 2 {
		t.Errorf("tinyfarm guests after boot:\n%s", out)
	}
	if code := statusHost(t, base, "n1.boot.test"); code != 502 && code != 504 {
		t.Errorf("n1 (no autostart) through the proxy after boot: %d, want 502", code)
	}

	// Nothing stale: new processes, one veth and one loop device per
	// running guest, nothing of n1.
	for _, n := range []string{"a1", "a2"} {
		rt, ok := readRuntime(t, state, n)
		if !ok || !alive(rt.InitPID) || rt.InitPID == before[n].InitPID {
			t.Errorf("%s after boot: runtime %+v", n, rt)
		}
		if l := loopsOf(filepath.Join(work, n+".img")); len(l) != 1 {
			t.Errorf("%s: loop devices %v, want one", n, l)
		}
	}
	if _, ok := readRuntime(t, state, "n1"); ok {
		t.Error("n1 has a runtime record after boot")
	}
	if l := loopsOf(filepath.Join(work, "n1.img")); len(l) != 0 {
		t.Errorf("n1: loop devices %v", l)
	}
	for _, d := range before["n1"].Cgroups.Paths {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("n1's cgroup %s is back", d)
		}
	}
	ports, _ := os.ReadDir("/sys/class/net/" + bridge + "/brif")
	if len(ports) != 2 {
		t.Errorf("ports on %s after boot: %d, want 2", bridge, len(ports))
	}
	if err := exec.Command("iptables", "-w", "-n", "-L", "TF-"+bridge).Run(); err != nil {
		t.Errorf("the host guard chain TF-%s is not back: %v", bridge, err)
	}
	if out, _ := exec.Command("nft", "list", "table", "bridge", "tinyfarm").CombinedOutput(); strings.Count(string(out), "chain port-tf-") < 2 {
		t.Errorf("port filters after boot:\n%s", out)
	}

	out, err = tf("", "boot")
	if err != nil || !strings.Contains(out, "BOOT  changed=0 ok=2 failed=0") || !strings.Contains(out, "ok         proxy daemon on "+listen) {
		t.Errorf("second boot: %v\n%s", err, out)
	}

	// The unit's ExecStop: every guest stopped cleanly within its grace,
	// the proxy too; its address is kept, so the next boot (the host's
	// next start) brings all of it back.
	t0 := time.Now()
	out, err = tf("", "shutdown", "--grace", "5s")
	if took := time.Since(t0); err != nil || !strings.Contains(out, "stopped    guest a1") || !strings.Contains(out, "stopped    guest a2") || took > 15*time.Second {
		t.Errorf("shutdown (%v): %v\n%s", took, err, out)
	}
	t.Logf("tinyfarm shutdown --grace 5s of 2 guests: %v", time.Since(t0))
	if resp, err := http.Get(base); err == nil {
		resp.Body.Close()
		t.Errorf("the proxy answers after shutdown: %s", resp.Status)
	}
	t0 = time.Now()
	out, err = tf("", "boot")
	t.Logf("tinyfarm boot of 2 guests (priority 10 with 1s delay, then 0) and the proxy: %v", time.Since(t0))
	if err != nil || !strings.Contains(out, "BOOT  changed=3 ok=0 failed=0") {
		t.Errorf("boot after shutdown: %v\n%s", err, out)
	}
	if body := getHost(t, base, "a2.boot.test"); !strings.Contains(body, "<h1>a2</h1>") {
		t.Errorf("a2 after shutdown and boot: %q", body)
	}

	// make demo-down's teardown: nothing of the farm is left.
	links := farmLinks(state)
	if out, err := tf(demoDown, "repl"); err != nil {
		t.Fatalf("teardown: %v\n%s", err, out)
	}
	assertNothingLeft(t, state, links)
	if out, _ := tf("", "proxy", "routes"); strings.Contains(out, "boot.test") {
		t.Errorf("routes left after teardown:\n%s", out)
	}
	if _, err := os.Stat("/sys/class/net/" + bridge); err == nil {
		t.Errorf("bridge %s left after teardown", bridge)
	}
	if err := exec.Command("iptables", "-w", "-n", "-L", "TF-"+bridge).Run(); err == nil {
		t.Errorf("guard chain TF-%s left after teardown", bridge)
	}
	for _, n := range []string{"a1", "a2", "n1"} {
		if _, err := os.Stat(filepath.Join(work, n+".img")); err == nil {
			t.Errorf("disk %s.img left after teardown", n)
		}
	}
}

// unmountUnder unmounts whatever is mounted under the given directories
// in the host's mount namespace (a reboot would).
func unmountUnder(t *testing.T, dirs ...string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		for _, d := range dirs {
			if len(fl) > 4 && strings.HasPrefix(fl[4], d) {
				exec.Command("umount", "-l", fl[4]).Run()
			}
		}
	}
}
