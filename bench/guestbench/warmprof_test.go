//go:build linux

package guestbench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	xssh "golang.org/x/crypto/ssh"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// TestWarmProfile splits one command on a warm SSH connection to an ns
// guest (default configuration) into where its time goes. It is a tool,
// not a benchmark row: TINYFARM_BENCH_PROF lists what to do, comma
// separated:
//
//	phases     client side: channel open, exec reply, exit+close (bare x/crypto session)
//	                and stdlib/ssh's Run against that bare session, alternating batches
//	strace     strace -f -tt -T of the connection's dropbear during 5 commands
//	perf       perf record -a -g during 1000 commands, report by command and symbol
//	sched      perf record of syscalls and scheduler events during 50 commands
//	                (perf script -i /tmp/warm_perf.data for the timeline)
//	pprof      Go CPU profile of the client over 2000 commands (/tmp/warm_client.pprof)
//	hardening  the same guest unhardened (no seccomp, capabilities, /proc
//	                masks; no user namespace), alternating batches with the hardened one
//	ab         for comparing builds: the median of 11 batches of 100 commands, the guest's
//	                and the client's CPU a command, then ours and OpenSSH's ControlMaster
//	                alternating (11 batches of 100 and 10)
//
// TINYFARM_BENCH_CMD replaces the command ("true").
//
// Where a warm "true" went (December 2026, 2-vCPU nested VM shared with
// other builds; sched trace of one command, which adds ~1 us a syscall;
// wall ~1.3 ms on an idle host, 2-3.5 ms under load):
//
//   - client: channel open and its confirmation, then the exec request;
//     dropbear forks the session child (clone ~100 us: the connection
//     process's page tables) and replies at once, so waiting for the
//     reply overlaps the child. ~0.27 ms until the child runs.
//   - dropbear's child before exec, ~0.70 ms: reseeding its random pool
//     from /proc (0.37 ms: /proc/net/tcp 90 us with 4096 buckets,
//     /proc/interrupts 67, /proc/net/netstat 38, /proc/vmstat 25, the
//     rest a few each; /proc/timer_list is masked), then initgroups
//     (two nscd probes, /etc/nsswitch.conf, /etc/group) ~0.1 ms, setuid,
//     chdir.
//   - exec of the login shell (busybox sh, static glibc), sh -c true and
//     its exit: ~0.52 ms, of which ~0.2-0.35 ms is glibc's start-up
//     running CPUID 43 times (init_cpu_features and the AMD cache-info
//     probes; counted with gdb), each a VM exit of 8-24 us on this
//     host. Every exec of a glibc program in a guest pays it.
//   - SIGCHLD, one writev of exit-status + EOF + close, the client's
//     close and next open: ~0.2 ms.
//   - the client: ~0.3 ms of CPU a command (syscalls a third, futex
//     wake-ups and the scheduler most of the rest), ~0.28 ms after Run
//     drove the channel itself.
//   - hardening costs nothing measurable: __seccomp_filter is 0.07% of
//     the samples, and an unhardened guest is slower (dropbear's child
//     reads /proc/timer_list and /proc/interrupts there, ~0.3 ms).
//
// Cut: /proc/interrupts masked (-60 us), a 1024-bucket socket table
// (-50 us), the client's goroutine hand-offs (-40 us CPU). Left: the
// fork, the CPUID exits, the /proc reads dropbear's seeding makes
// (netstat, vmstat, dev: a guest's own or harmless), the round trips.
func TestWarmProfile(t *testing.T) {
	gate(t)
	if os.Getenv("TINYFARM_BENCH_PROF") == "" {
		t.Skip("a profiling tool: set TINYFARM_BENCH_PROF (see the doc comment)")
	}
	modes := map[string]bool{}
	for _, m := range strings.Split(os.Getenv("TINYFARM_BENCH_PROF"), ",") {
		modes[m] = true
	}
	cmd := os.Getenv("TINYFARM_BENCH_CMD")
	if cmd == "" {
		cmd = "true"
	}
	ctx := context.Background()
	state := t.TempDir()
	base := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state, Size: "64M"})
	fm := newFarm(t, state, &ns.Runner{})
	g, _ := startReady(t, fm, "prof", guesttest.CopyDisk(t, base.Path), base.HostKey)
	t.Cleanup(func() { g.Destroy(context.Background(), false) })
	sc, err := g.SSH(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	run := func(c *ssh.Client) func() {
		return func() {
			if _, err := c.Run(ctx, cmd, ssh.RunOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	batches := func(fns ...func()) []time.Duration {
		for _, fn := range fns {
			for i := 0; i < 20; i++ {
				fn()
			}
		}
		ds := make([][]time.Duration, len(fns))
		for b := 0; b < 11; b++ {
			for k, fn := range fns {
				t0 := time.Now()
				for i := 0; i < 100; i++ {
					fn()
				}
				ds[k] = append(ds[k], time.Since(t0)/100)
			}
		}
		meds := make([]time.Duration, len(fns))
		for k := range ds {
			meds[k] = median(ds[k])
		}
		return meds
	}

	if modes["ab"] {
		// Wall time, and CPU time (less swayed by other load on the host):
		// the guest's (cgroup cpuacct) and this client's, per command.
		usage := guestCPU(t, connDropbear(t))
		var ru0, ru1 syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		g0 := usage()
		wall := batches(run(sc))[0]
		g1 := usage()
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		const n = 20 + 11*100
		cpu := func(r syscall.Rusage) time.Duration {
			return time.Duration(r.Utime.Nano() + r.Stime.Nano())
		}
		// The OpenSSH ControlMaster anchor in the same process, alternating
		// with ours: their ratio is less swayed by the host's load.
		cm := "-"
		if sshBin, err := exec.LookPath("ssh"); err == nil {
			args := opensshArgs(t, g, state, base.HostKey)
			sock := filepath.Join(t.TempDir(), "cm")
			startMaster(t, sshBin, append([]string{"-M", "-N", "-S", sock, "-o", "ControlPersist=no"}, args...), sock)
			viaMaster := func() {
				if out, err := exec.Command(sshBin, append(append([]string{"-S", sock, "-o", "ControlMaster=no"}, args...), "true")...).CombinedOutput(); err != nil {
					t.Fatalf("ssh: %v: %s", err, out)
				}
			}
			var ours, theirs []time.Duration
			for b := 0; b < 11; b++ {
				t0 := time.Now()
				for i := 0; i < 100; i++ {
					run(sc)()
				}
				t1 := time.Now()
				for i := 0; i < 10; i++ {
					viaMaster()
				}
				ours, theirs = append(ours, t1.Sub(t0)/100), append(theirs, time.Since(t1)/10)
			}
			cm = fmt.Sprintf("%.3f\t%.3f", float64(median(ours).Microseconds())/1000, float64(median(theirs).Microseconds())/1000)
		}
		fmt.Printf("ab\t%.3f\t%.0f\t%.0f\t%s\n", float64(wall.Microseconds())/1000,
			float64((g1-g0)/n)/1000, float64((cpu(ru1)-cpu(ru0))/n)/1000, cm)
	}

	raw := bareClient(t, g, state, base.HostKey)
	var open, start, wait []time.Duration
	one := func() {
		t0 := time.Now()
		s, err := raw.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		if err := s.Start(cmd); err != nil {
			t.Fatal(err)
		}
		t2 := time.Now()
		if err := s.Wait(); err != nil {
			t.Fatal(err)
		}
		t3 := time.Now()
		s.Close()
		open, start, wait = append(open, t1.Sub(t0)), append(start, t2.Sub(t1)), append(wait, t3.Sub(t2))
	}

	if modes["phases"] {
		for i := 0; i < 50; i++ {
			one()
		}
		open, start, wait = nil, nil, nil
		for i := 0; i < 500; i++ {
			one()
		}
		t.Logf("client phases (median of 500): channel open %v, exec until reply %v, reply until exit+close %v",
			median(open), median(start), median(wait))
		m := batches(run(sc), one)
		t.Logf("median of 11 batches of 100: ssh.Client.Run %v, bare x/crypto session %v", m[0], m[1])
	}

	if modes["hardening"] {
		soft := newFarm(t, state, &ns.Runner{Unhardened: true})
		if _, err := soft.Define(farm.Definition{Name: "profsoft", Driver: "ns", Disk: guesttest.CopyDisk(t, base.Path), MemBytes: 64 << 20, HostKey: base.HostKey, User: "root"}, farm.ChangeOptions{}); err != nil {
			t.Fatal(err)
		}
		sg, err := soft.Guest(ctx, "profsoft")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sg.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sg.Destroy(context.Background(), false) })
		if err := sg.WaitReady(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		ssc, err := sg.SSH(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer ssc.Close()
		m := batches(run(sc), run(ssc))
		t.Logf("median of 11 batches of 100: hardened (userns, seccomp, caps, /proc masks) %v, unhardened (none of them) %v", m[0], m[1])
	}

	if modes["pprof"] {
		f, err := os.Create("/tmp/warm_client.pprof")
		if err != nil {
			t.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		for i := 0; i < 2000; i++ {
			run(sc)()
		}
		pprof.StopCPUProfile()
		f.Close()
	}

	if modes["strace"] {
		out := filepath.Join(t.TempDir(), "strace")
		st := exec.Command("strace", "-f", "-tt", "-T", "-o", out, "-p", strconv.Itoa(connDropbear(t)))
		if err := st.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond) // strace attached
		for i := 0; i < 5; i++ {
			one()
			time.Sleep(20 * time.Millisecond)
		}
		st.Process.Signal(os.Interrupt)
		st.Wait()
		data, _ := os.ReadFile(out)
		fmt.Println(string(data))
	}

	if modes["perf"] || modes["sched"] {
		const pf = "/tmp/warm_perf.data"
		args, n := []string{"record", "-a", "-g", "-o", pf}, 1000
		if modes["sched"] {
			args, n = []string{"record", "-a", "-o", pf, "-e", "raw_syscalls:sys_enter,raw_syscalls:sys_exit,sched:sched_process_fork,sched:sched_process_exec,sched:sched_process_exit,sched:sched_switch,sched:sched_wakeup"}, 50
		}
		p := exec.Command("perf", args...)
		p.Stderr = os.Stderr
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // perf started
		for i := 0; i < n; i++ {
			one()
		}
		p.Process.Signal(os.Interrupt)
		p.Wait()
		if modes["perf"] {
			for _, sort := range []string{"comm", "comm,dso,sym"} {
				rep, _ := exec.Command("perf", "report", "-i", pf, "--no-children", "--comms", "dropbear,sh,guestbench.test", "--sort", sort, "--stdio", "-g", "none").Output()
				fmt.Println(string(rep))
			}
		}
	}
}

// bareClient dials the guest with x/crypto directly, for timing the
// protocol's phases one by one.
func bareClient(t *testing.T, g *farm.Guest, state, hostKey string) *xssh.Client {
	pubs, err := ssh.ParsePublicKeys(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	fk, err := ssh.EnsureFarmKey(state)
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := g.SSHAddr()
	if err != nil {
		t.Fatal(err)
	}
	cc := &xssh.ClientConfig{User: "root", Auth: []xssh.AuthMethod{xssh.PublicKeys(fk.Signer)},
		HostKeyCallback: xssh.FixedHostKey(pubs[0]), HostKeyAlgorithms: []string{pubs[0].Type()}}
	var c *xssh.Client
	for i := 0; ; i++ { // dropbear may still be closing the readiness probe's connection
		if c, err = xssh.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)), cc); err == nil {
			break
		}
		if i == 20 {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connDropbear finds the guest connection's dropbear: a dropbear whose
// parent is dropbear (the listener).
func connDropbear(t *testing.T) int {
	comm := func(pid string) string {
		b, _ := os.ReadFile("/proc/" + pid + "/comm")
		return strings.TrimSpace(string(b))
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil || comm(e.Name()) != "dropbear" {
			continue
		}
		st, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		if len(f) > 1 && comm(f[1]) == "dropbear" {
			pid, _ := strconv.Atoi(e.Name())
			return pid
		}
	}
	t.Fatal("no connection dropbear")
	return 0
}

// guestCPU returns a reader of the CPU time used so far by the
// connection's dropbear pid and its reaped children (the sessions and
// their shells): /proc/PID/stat utime+stime+cutime+cstime.
func guestCPU(t *testing.T, pid int) func() time.Duration {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	return func() time.Duration {
		st, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		var ticks int64
		for _, i := range []int{11, 12, 13, 14} { // fields 14-17, after pid and comm
			v, _ := strconv.ParseInt(f[i], 10, 64)
			ticks += v
		}
		return time.Duration(ticks) * (time.Second / 100) // USER_HZ
	}
}
