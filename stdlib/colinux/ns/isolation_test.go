//go:build linux

package ns_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
)

// TestAttacksFromGuestRoot runs, as root inside a real guest, what a
// hostile tenant would try against the host; every attack must fail and the
// host must be unchanged. The results print as a table.
func TestAttacksFromGuestRoot(t *testing.T) { attackSuite(t, false) }

// TestAttacksFromUserNSGuestRoot runs the same attacks in user-namespace
// mode, where the guest's root is also an unprivileged host uid.
func TestAttacksFromUserNSGuestRoot(t *testing.T) { attackSuite(t, true) }

func attackSuite(t *testing.T, userns bool) {
	needRoot(t)
	disk := scatterDisk(t, "")
	name := "nsattack"
	if userns {
		name = "nsattacku"
	}
	s := spec(t, name, disk, 21)
	r := &ns.Runner{Pids: 64, UserNS: userns}
	g, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Stop(context.Background(), 0) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := g.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	ex := g.(driver.Execer)
	var full string // the last command's whole output, for failure messages
	run := func(cmd string) (string, int) {
		res, err := ex.Exec(context.Background(), []string{"sh", "-c", cmd}, driver.ExecOptions{})
		if err != nil {
			t.Fatalf("exec %q: %v", cmd, err)
		}
		full = strings.TrimSpace(string(res.Stdout) + string(res.Stderr))
		return full, res.Code
	}

	// Host state to compare afterwards.
	hostName, _ := os.Hostname()
	marker, err := os.CreateTemp("", "tinyfarm-host-marker-*")
	if err != nil {
		t.Fatal(err)
	}
	const secret = "HOST-ONLY-CONTENT-7f3a"
	marker.WriteString(secret)
	marker.Close()
	t.Cleanup(func() { os.Remove(marker.Name()) })
	hostPort := guesttest.HostSecret(t, "127.0.0.1:0")
	// A host service on every address, the bridge's gateway included.
	allPort := guesttest.HostSecret(t, "0.0.0.0:0")
	// Another tenant on the same bridge, serving HTTP.
	victim := spec(t, "nsvictim", scatterDisk(t, "mkdir -p /opt/www; echo VICTIM-PAGE > /opt/www/index.html; httpd -p 80 -h /opt/www"), 22)
	vg := start(t, victim)
	_ = vg
	before := time.Now()

	type row struct {
		attack, expected, got string
		ok                    bool
	}
	var rows []row
	check := func(attack, expected string, ok bool, got string) {
		rows = append(rows, row{attack, expected, got, ok})
		if !ok {
			t.Errorf("attack %q: expected %s, got:\n%s", attack, expected, full)
		}
	}
	short := func(s string) string {
		s = strings.ReplaceAll(s, "\n", " | ")
		if len(s) > 70 {
			s = s[:70] + "…"
		}
		return s
	}

	out, code := run("insmod /dev/null")
	check("load a kernel module", "refused", code != 0, short(out))

	out, code = run("echo add > /sys/class/net/eth0/uevent")
	check("write to /sys (uevent)", "read-only", code != 0 && strings.Contains(out, "Read-only"), short(out))

	// Files the host kernel lacks are absent; present ones are /dev/null.
	out, _ = run("for f in kcore kallsyms; do if [ -e /proc/$f ]; then echo $f:$(head -c 4096 /proc/$f | wc -c); else echo $f:absent; fi; done")
	check("read /proc/kcore, /proc/kallsyms", "empty or absent", !strings.Contains(out, "kcore:4") && strings.Contains(out, "kallsyms:0") || strings.Contains(out, "kallsyms:absent"), short(out))

	out, _ = run("wc -c < /proc/interrupts")
	check("read the host's interrupt counts (/proc/interrupts, a timing side channel)", "empty", strings.TrimSpace(out) == "0", short(out))

	out, _ = run("echo b > /proc/sysrq-trigger; if [ -e /proc/sysrq-trigger ]; then stat -c %t:%T /proc/sysrq-trigger; else echo absent; fi")
	check("trigger sysrq (b = reboot)", "masked or absent", strings.Contains(out, "1:3") || strings.HasPrefix(out, "absent"), short(out))

	out, code = run("mknod /tmp/hostdisk b 253 0 && head -c 512 /tmp/hostdisk | wc -c")
	check("mknod a host disk and read it", "refused", code != 0 && strings.Contains(out, "not permitted"), short(out))

	out, code = run("ls /dev | tr '\\n' ' '")
	check("see host devices in /dev", "only safe nodes", code == 0 && !strings.Contains(out, "vda") && !strings.Contains(out, "sda") && !strings.Contains(out, "loop") && !strings.Contains(out, "mem "), short(out))

	out, code = run("mkdir -p /mnt/p && mount -t proc proc /mnt/p")
	check("mount a new proc", "refused", code != 0, short(out))
	out, code = run("mount -o remount,rw /sys")
	check("remount /sys read-write", "refused", code != 0, short(out))
	out, code = run("mkdir -p /mnt/h && mount /dev/vda /mnt/h")
	check("mount the host's root device", "refused", code != 0, short(out))

	out, _ = run(fmt.Sprintf("cd /; cd ..; cd ../..; cat %[1]s 2>&1; cat ../../..%[1]s 2>&1; cat /proc/1/root%[1]s 2>&1; echo; head -1 /etc/os-release", marker.Name()))
	check("escape the root (.., /proc/1/root)", "only the guest's own files", !strings.Contains(out, secret) && strings.Contains(out, "TinyCore"), short(out))

	out, code = run("mkdir -p /tmp/jail && chroot /tmp/jail /bin/sh -c true; cd /tmp/jail && chroot . ../../../../bin/busybox true")
	check("chroot breakout", "no way above the guest root", !strings.Contains(out, marker.Name()), short(out))

	out, code = run(fmt.Sprintf("kill -0 %d; ps -o pid,comm | wc -l", os.Getpid()))
	check("see or signal host processes", "invisible", strings.Contains(out, "No such process") || strings.Contains(out, "can't kill"), short(out))

	out, code = run(fmt.Sprintf("nc -w 2 127.0.0.1 %[1]d </dev/null; nc -w 2 10.77.250.1 %[1]d </dev/null; echo done", hostPort))
	check("reach a service on the host's 127.0.0.1", "unreachable", !strings.Contains(out, "HOST-SECRET"), short(out))

	out, code = run(fmt.Sprintf("nc -w 2 10.77.250.1 %d </dev/null; echo rc=$?", allPort))
	check("reach a host service on the bridge address", "dropped", !strings.Contains(out, "HOST-SECRET"), short(out))

	out, code = run("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 10.77.250.22 80; echo rc=$?")
	check("reach another guest on the bridge", "isolated", !strings.Contains(out, "VICTIM-PAGE"), short(out))
	if resp, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://10.77.250.22/"); err != nil {
		t.Errorf("the host cannot reach the victim guest any more: %v", err)
	} else {
		resp.Body.Close()
	}

	// The guest's cgroup namespace is rooted at its own cgroup: every
	// hierarchy shows "/", never the host's layout.
	out, code = run("cat /proc/self/cgroup; cat /proc/1/cgroup")
	leak := false
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.SplitN(l, ":", 3); len(f) != 3 || f[2] != "/" {
			leak = true
		}
	}
	check("learn the host's cgroup layout", "own cgroup shows as /", !leak && code == 0, short(out))

	out, code = run("hostname evil; hostname")
	h2, _ := os.Hostname()
	check("change the host's hostname", "refused, host unchanged", h2 == hostName && !strings.Contains(out, "\nevil"), short(out))

	out, code = run("date -s 2001-01-01; date +%Y")
	check("set the clock", "refused", time.Now().After(before) && !strings.HasSuffix(out, "2001"), short(out))

	run("i=0; while [ $i -lt 200 ]; do sleep 30 </dev/null >/dev/null 2>&1 & i=$((i+1)); done 2>/dev/null; exit 0")
	pids := readPidsCurrent(t, s.Dir)
	check("fork bomb (200 processes, pids limit 64)", "capped at 64, host responsive", pids > 1 && pids <= 64, fmt.Sprintf("%d processes in the guest", pids))
	if res, err := ex.Exec(context.Background(), []string{"killall", "sleep"}, driver.ExecOptions{}); err != nil || res.Code != 0 {
		t.Errorf("guest at its pids limit cannot be entered: %v %s", err, res.Stderr)
	}
	for i := 0; i < 100 && readPidsCurrent(t, s.Dir) > 16; i++ {
		time.Sleep(20 * time.Millisecond) // killed sleeps being reaped by the guest's init
	}

	out, code = run("dd if=/dev/zero of=/dev/null bs=128M count=1; echo rc=$?")
	check("fill memory past the 64M quota", "killed inside the guest", strings.Contains(out, "rc=137"), short(out))

	out, code = run("unshare -U -r sh -c 'id -u' 2>&1; echo rc=$?")
	check("new user namespace (fresh capabilities)", "refused", !strings.Contains(out, "\n0\n") && !strings.HasPrefix(out, "0"), short(out))

	// Reboot last: in a PID namespace it ends only the guest (its monitor
	// starts it again), never the host.
	run("reboot -f")
	time.Sleep(300 * time.Millisecond)
	_, err = os.Stat(marker.Name())
	check("reboot the host", "only the guest reboots", err == nil, "host still up; guest restarted by its monitor")

	var b strings.Builder
	fmt.Fprintf(&b, "\n%-42s %-30s %-4s %s\n", "ATTACK", "EXPECTED", "OK", "GOT")
	for _, r := range rows {
		ok := "yes"
		if !r.ok {
			ok = "NO"
		}
		fmt.Fprintf(&b, "%-42s %-30s %-4s %s\n", r.attack, r.expected, ok, r.got)
	}
	t.Log(b.String())
	if h, _ := os.Hostname(); h != hostName {
		t.Errorf("host hostname changed to %q", h)
	}
}

// readPidsCurrent reads the guest's process count from its pids cgroup.
func readPidsCurrent(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(dir + "/runtime.json")
	if err != nil {
		t.Fatal(err)
	}
	var rt ns.Runtime
	if err := json.Unmarshal(b, &rt); err != nil {
		t.Fatal(err)
	}
	cur, err := os.ReadFile(rt.Cgroups.Paths["pids"] + "/pids.current")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	fmt.Sscan(string(cur), &n)
	return n
}
