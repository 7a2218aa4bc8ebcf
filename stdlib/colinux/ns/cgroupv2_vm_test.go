//go:build linux

package ns

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/image"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/vmtest"
)

// Roles of this test's binary inside the VM (values of vmtest.Inside).
const (
	vmRoleInner     = "cgroupv2"           // the VM's test run
	vmRoleContainer = "cgroupv2-container" // a child in its own cgroup+mount namespaces
	vmDiskEnv       = "TINYFARM_VMTEST_DISK"
)

// vmModules are the modules a scatter guest needs from the minicore
// modules initramfs, dependencies first: ext4 (for the ext3 disk) and loop.
// No networking: the guest runs with net mode "none".
var vmModules = []string{
	"kernel/lib/crc16.ko", "kernel/fs/mbcache.ko", "kernel/fs/jbd2/jbd2.ko",
	"kernel/crypto/crc32c_generic.ko", "kernel/fs/ext4/ext4.ko", "kernel/drivers/block/loop.ko",
}

// TestCgroupV2InVM proves the cgroup v2 code on a pure cgroup v2 system
// when the host runs cgroup v1: it boots the minicore kernel in QEMU with
// an initramfs holding this test binary, which mounts cgroup2 the way
// systemd does (nsdelegate, memory_recursiveprot) and runs the test's
// inner part (cgroupV2Inner) there.
func TestCgroupV2InVM(t *testing.T) {
	switch os.Getenv(vmtest.Inside) {
	case vmRoleInner:
		cgroupV2Inner(t)
		return
	case vmRoleContainer:
		cgroupV2Container(t)
		return
	}
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (the VM side runs namespace guests)")
	}
	if hostCgroupFS().isV2() {
		t.Skip("the host is pure cgroup v2: the ordinary ns tests cover v2")
	}
	for _, tool := range []string{"qemu-system-x86_64", "mkfs.ext3", "cpio", "ldd", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh)", tool)
		}
	}
	rel := minicore.Require(t)
	t0 := time.Now()
	tmp := t.TempDir()
	var a vmtest.Archive
	a.CharDev("dev/console", 0o600, 5, 1)
	coreDir := filepath.Join(tmp, "core")
	if err := os.Mkdir(coreDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := image.Unpack(context.Background(), rel.Core, coreDir, image.UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	busybox, err := os.ReadFile(filepath.Join(coreDir, "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	a.File("bin/busybox", busybox, 0o755)
	// This very binary (dynamic or not: its libraries come along) is the
	// inner test, the guest monitor and the exec helper.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Executable("tinyfarm/ns.test", self); err != nil {
		t.Fatal(err)
	}
	// util-linux nsenter: Exec enters the guest's cgroup namespace (-C),
	// which busybox's nsenter cannot.
	nsenter, _ := exec.LookPath("nsenter")
	if err := a.Executable("usr/bin/nsenter", nsenter); err != nil {
		t.Fatal(err)
	}
	if err := a.HostFile("tinyfarm/guest.img", vmGuestDisk(t, rel, tmp), 0o644); err != nil {
		t.Fatal(err)
	}
	setup := "M=/lib/modules/$(uname -r)\nfor m in " + strings.Join(vmModules, " ") + `; do insmod "$M/$m" || echo "vmtest: insmod $m failed"; done
mkdir -p /sys/fs/cgroup
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup
`
	run := fmt.Sprintf("cd /tinyfarm && %s=%s %s=/tinyfarm/guest.img ./ns.test -test.run '^TestCgroupV2InVM$' -test.v -test.timeout 3m",
		vmtest.Inside, vmRoleInner, vmDiskEnv)
	a.File("tinyfarm/init", []byte(vmtest.InitScript("/tinyfarm/init", setup, run)), 0o755)
	initrd := filepath.Join(tmp, "initrd.gz")
	// The modules initramfs goes first: it holds /lib/modules.
	if err := vmtest.WriteInitrd(initrd, []string{rel.ModulesInitrd}, &a); err != nil {
		t.Fatal(err)
	}
	prep := time.Since(t0)
	res, err := vmtest.Run(vmtest.VM{QEMU: minicore.QEMU{Kernel: rel.Vmlinux, Initrd: initrd, MemMB: 1024,
		Append: "rdinit=/tinyfarm/init"}, CPUs: 2}, 4*time.Minute)
	t.Logf("prepared the VM in %v; boot + inner test in %v", prep.Round(time.Millisecond), res.Duration.Round(time.Millisecond))
	if err != nil || res.RC != 0 || testing.Verbose() {
		t.Logf("VM console:\n%s", res.Console)
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.RC != 0 {
		t.Fatalf("the test inside the VM failed (rc=%d)", res.RC)
	}
	if !strings.Contains(res.Console, "--- PASS: TestCgroupV2InVM") {
		t.Fatal("the inner test did not report PASS")
	}
}

// vmGuestDisk makes the scatter guest's disk: core extracted, a bootlocal
// that prints the ready marker, mkfs.ext3 -d.
func vmGuestDisk(t *testing.T, rel *minicore.Release, tmp string) string {
	root := filepath.Join(tmp, "root")
	if err := rel.ExtractCore(root); err != nil {
		t.Fatal(err)
	}
	bootlocal := "#!/bin/sh\necho '" + driver.ReadyMarker + "' >/dev/console\n"
	if err := os.WriteFile(filepath.Join(root, "opt/bootlocal.sh"), []byte(bootlocal), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(tmp, "guest.img")
	if out, err := exec.Command("mkfs.ext3", "-q", "-F", "-L", "root", "-d", root, img, "32M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext3: %v\n%s", err, out)
	}
	os.RemoveAll(root)
	return img
}

// ---- inside the VM ----

const cgRoot = "/sys/fs/cgroup"

// cgroupV2Inner runs inside the VM, as PID 1's child in the root cgroup
// of a fresh cgroup2 hierarchy.
func cgroupV2Inner(t *testing.T) {
	if !hostCgroupFS().isV2() {
		t.Fatal("no cgroup2 hierarchy at " + cgRoot)
	}
	// What systemd sets up: controllers enabled at the root, the slices
	// with some of them, every process in a leaf (a service or scope).
	mustWrite(t, filepath.Join(cgRoot, "cgroup.subtree_control"), "+cpu +memory +pids")
	svc := filepath.Join(cgRoot, "tf.slice", "tf-test.service")
	if err := os.MkdirAll(svc, 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(cgRoot, "tf.slice", "cgroup.subtree_control"), "+memory +pids")

	t.Run("root", func(t *testing.T) {
		// tinyfarm in the root cgroup (a VM or container with nothing
		// else): guests nest under it.
		vmCheckCreate(t, hostCgroupFS(), "lay-root", filepath.Join(cgRoot, "tinyfarm-lay-root"), false)
	})
	t.Run("service", func(t *testing.T) {
		// tinyfarm in a systemd service: its cgroup holds processes, so
		// the guests go beside it, in its slice.
		moveSelf(t, svc)
		vmCheckCreate(t, hostCgroupFS(), "lay-svc", filepath.Join(cgRoot, "tf.slice", "tinyfarm-lay-svc"), false)
	})
	t.Run("slice-without-cpu", func(t *testing.T) {
		// A slice whose parent does not delegate the cpu controller: the
		// guest gets its memory and pids limits, no CPU limit (as on v1
		// without a cpu hierarchy) rather than no cgroup at all.
		slice := filepath.Join(cgRoot, "nocpu.slice", "inner.slice")
		if err := os.MkdirAll(filepath.Join(slice, "x.service"), 0o755); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, filepath.Join(cgRoot, "nocpu.slice", "cgroup.subtree_control"), "+memory +pids")
		mustWrite(t, filepath.Join(slice, "cgroup.subtree_control"), "+memory +pids")
		moveSelf(t, filepath.Join(slice, "x.service"))
		defer moveSelf(t, svc)
		vmCheckCreate(t, hostCgroupFS(), "lay-nocpu", filepath.Join(slice, "tinyfarm-lay-nocpu"), true)
	})
	t.Run("container", func(t *testing.T) {
		// tinyfarm in a container with a private cgroup namespace (Docker's
		// default on cgroup v2): it sees its own cgroup as the root.
		ctr := filepath.Join(cgRoot, "tf.slice", "ctr.scope")
		if err := os.MkdirAll(ctr, 0o755); err != nil {
			t.Fatal(err)
		}
		self, _ := os.Executable()
		cmd := exec.Command(self, "-test.run", "^TestCgroupV2InVM$", "-test.v")
		cmd.Env = append(os.Environ(), vmtest.Inside+"="+vmRoleContainer)
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | unix.CLONE_NEWCGROUP}
		// A new cgroup namespace is rooted at the cgroup its creator is
		// in: step into ctr.scope for the clone.
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		back := ownV2Cgroup(t)
		moveSelf(t, ctr)
		err := cmd.Start()
		moveSelf(t, back)
		if err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		t.Logf("container side:\n%s", out.String())
		if err != nil {
			t.Fatalf("container side: %v", err)
		}
	})
	t.Run("guest", func(t *testing.T) {
		moveSelf(t, svc)
		vmGuest(t)
	})
}

// cgroupV2Container runs in a child with its own mount and cgroup
// namespaces, rooted at tf.slice/ctr.scope, like a container's init.
func cgroupV2Container(t *testing.T) {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(cgRoot, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("cgroup2", cgRoot, "cgroup2", 0, ""); err != nil {
		t.Fatal(err)
	}
	if own := ownV2Cgroup(t); own != "/" {
		t.Fatalf("container: own cgroup %q, want / (the namespace root)", own)
	}
	vmCheckCreate(t, hostCgroupFS(), "lay-ctr", filepath.Join(cgRoot, "tinyfarm-lay-ctr"), false)
	// The namespace root had to be emptied: its processes are in a leaf.
	if own := ownV2Cgroup(t); own != "/init" {
		t.Errorf("container: own cgroup %q after create, want /init", own)
	}
}

// vmCheckCreate makes a guest's cgroup with create, checks where it went
// and its limit files, puts a process in, freezes, thaws and removes it.
// Without the cpu controller (not offered where the guest's cgroup goes)
// the CPU limit is left out, as on v1: cpuless.
func vmCheckCreate(t *testing.T, c cgroupFS, name, wantDir string, cpuless bool) {
	lim := Limits{MemBytes: 48 << 20, CPUs: 0.25, Pids: 12}
	cg, err := c.create(name, lim)
	if err != nil {
		t.Fatal(err)
	}
	dir := cg.Paths["unified"]
	t.Cleanup(func() { cg.remove() })
	if !cg.V2 || dir != wantDir {
		t.Fatalf("create: %+v, want v2 in %s", cg, wantDir)
	}
	if cpuless {
		if _, err := os.Stat(filepath.Join(dir, "cpu.max")); err == nil {
			t.Errorf("%s has cpu.max: the cpu controller was not to be available", dir)
		}
		lim.CPUs = 0
	}
	vmCheckLimits(t, dir, lim)
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Wait()
	defer sleeper.Process.Kill()
	if err := cg.join(sleeper.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if procs := readCgFile(t, dir, "cgroup.procs"); procs != strconv.Itoa(sleeper.Process.Pid) {
		t.Errorf("cgroup.procs = %q, want the sleeper %d", procs, sleeper.Process.Pid)
	}
	vmCheckFreeze(t, cg, dir)
	sleeper.Process.Kill()
	sleeper.Wait()
	if err := cg.remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still there after remove: %v", dir, err)
	}
}

func vmCheckLimits(t *testing.T, dir string, lim Limits) {
	t.Helper()
	want := map[string]string{
		"memory.max": strconv.FormatInt(lim.MemBytes, 10),
		"pids.max":   strconv.Itoa(lim.Pids),
	}
	if lim.CPUs > 0 {
		want["cpu.max"] = fmt.Sprintf("%d 100000", int64(lim.CPUs*100000))
	}
	if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil {
		want["memory.swap.max"] = "0"
	}
	for f, v := range want {
		if got := readCgFile(t, dir, f); got != v {
			t.Errorf("%s/%s = %q, want %q", dir, f, got, v)
		}
	}
}

func vmCheckFreeze(t *testing.T, cg *Cgroups, dir string) {
	t.Helper()
	if err := cg.freeze(true); err != nil {
		t.Fatal(err)
	}
	if f, ev := readCgFile(t, dir, "cgroup.freeze"), readCgFile(t, dir, "cgroup.events"); f != "1" || !strings.Contains(ev, "frozen 1") || !cg.Frozen() {
		t.Errorf("after freeze: cgroup.freeze=%q cgroup.events=%q Frozen()=%v", f, ev, cg.Frozen())
	}
	if err := cg.freeze(false); err != nil {
		t.Fatal(err)
	}
	if f, ev := readCgFile(t, dir, "cgroup.freeze"), readCgFile(t, dir, "cgroup.events"); f != "0" || !strings.Contains(ev, "frozen 0") || cg.Frozen() {
		t.Errorf("after thaw: cgroup.freeze=%q cgroup.events=%q Frozen()=%v", f, ev, cg.Frozen())
	}
}

// vmGuest runs a scatter ns guest through the driver's API and checks its
// cgroup v2 limits from the outside and their effect on the inside.
func vmGuest(t *testing.T) {
	disk := os.Getenv(vmDiskEnv)
	spec := driver.Spec{
		Name: "v2guest", Dir: filepath.Join(t.TempDir(), "run"),
		MemBytes: 64 << 20, CPUs: 0.5, Layout: driver.Scatter,
		Disks: []driver.Disk{{Path: disk}}, Net: driver.Net{Mode: "none"},
	}
	r := &Runner{Pids: 64}
	ctx := context.Background()
	t0 := time.Now()
	g, err := r.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Stop(context.Background(), 0)
		if t.Failed() {
			t.Logf("monitor.log:\n%s", tail(filepath.Join(spec.Dir, monitorLog), 3000))
			t.Logf("exit.json: %s", tail(filepath.Join(spec.Dir, exitFile), 3000))
			t.Logf("console.log:\n%s", tail(spec.ConsoleLog(), 3000))
		}
	})
	rt, err := g.(*guest).runtime()
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := g.WaitReady(rctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("guest ready in %v", time.Since(t0).Round(time.Millisecond))
	dir := rt.Cgroups.Paths["unified"]
	// tinyfarm runs in tf.slice/tf-test.service: the guest's cgroup is
	// its sibling (the "no internal processes" rule).
	if want := filepath.Join(cgRoot, "tf.slice", "tinyfarm-"+spec.Instance()); !rt.Cgroups.V2 || dir != want {
		t.Fatalf("guest cgroups %+v, want v2 in %s", rt.Cgroups, want)
	}
	vmCheckLimits(t, dir, Limits{MemBytes: spec.MemBytes, CPUs: spec.CPUs, Pids: r.Pids})

	// Every process of the guest (its PID namespace) is in the cgroup.
	initNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", rt.InitPID))
	if err != nil {
		t.Fatal(err)
	}
	wantCg := "0::" + strings.TrimPrefix(dir, cgRoot)
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err != nil || ns != initNS {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			continue // gone meanwhile
		}
		n++
		if got := strings.TrimSpace(string(b)); got != wantCg {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			t.Errorf("guest process %d (%s) is in cgroup %q, want %q", pid, strings.TrimSpace(string(comm)), got, wantCg)
		}
	}
	procs := " " + strings.Join(strings.Fields(readCgFile(t, dir, "cgroup.procs")), " ") + " "
	if n < 2 || !strings.Contains(procs, " "+strconv.Itoa(rt.InitPID)+" ") {
		t.Errorf("guest init %d, %d guest processes; %s/cgroup.procs: %s", rt.InitPID, n, dir, procs)
	}

	ex := g.(driver.Execer)
	run := func(script string) driver.ExecResult {
		t.Helper()
		res, err := ex.Exec(ctx, []string{"sh", "-c", script}, driver.ExecOptions{})
		if err != nil {
			t.Fatalf("exec %q: %v", script, err)
		}
		return res
	}
	// Exec: the command joins the guest's cgroup.
	res := run("cat /proc/self/cgroup")
	if res.Code != 0 {
		t.Errorf("exec in the guest: code %d, stdout %q, stderr %q", res.Code, res.Stdout, res.Stderr)
	} else {
		t.Logf("/proc/self/cgroup in the guest: %s", strings.TrimSpace(string(res.Stdout)))
	}

	// Memory: an allocation past the quota is OOM-killed, the guest lives.
	res = run("dd if=/dev/zero of=/dev/null bs=128M count=1; echo rc=$?")
	if !strings.Contains(string(res.Stdout), "rc=137") {
		t.Errorf("allocation past the quota not killed: code %d %q %q", res.Code, res.Stdout, res.Stderr)
	}
	if ev := readCgFile(t, dir, "memory.events"); !strings.Contains(ev, "oom_kill ") || strings.Contains(ev, "oom_kill 0") {
		t.Errorf("memory.events has no OOM kill:\n%s", ev)
	}
	if k := rt.Cgroups.OOMKills(); k < 1 {
		t.Errorf("OOMKills() = %d after an OOM kill", k)
	}
	if st, _ := g.Status(ctx); st.State != driver.Running || !rt.alive() {
		t.Fatalf("guest died of the OOM inside it: %+v", st)
	}

	// CPU: a busy loop is throttled to cpu.max.
	before := cpuStat(t, dir, "nr_throttled")
	run("timeout 1 sh -c 'while :; do :; done'; true")
	if after := cpuStat(t, dir, "nr_throttled"); after <= before {
		t.Errorf("busy loop not throttled: cpu.stat nr_throttled %d -> %d", before, after)
	}

	// Pids: forks past pids.max fail, the guest lives. The subshell
	// forking ends at its first failed fork; the outer shell kills the
	// sleepers with builtins only (it cannot fork either at the limit).
	res = run(`rm -f /tmp/forks; (i=0; while [ $i -lt 100 ]; do sleep 30 & echo $! >>/tmp/forks; i=$((i+1)); done) 2>/dev/null
n=0; while read p; do kill $p; n=$((n+1)); done </tmp/forks; echo forked=$n`)
	if ev := readCgFile(t, dir, "pids.events"); ev == "max 0" || !strings.HasPrefix(ev, "max ") || strings.Contains(string(res.Stdout), "forked=100") {
		t.Errorf("pids.events = %q after forking past pids.max (exec: %d %q %q)", ev, res.Code, res.Stdout, res.Stderr)
	}
	if st, _ := g.Status(ctx); st.State != driver.Running {
		t.Fatalf("guest died at its pids limit: %+v", st)
	}

	// Suspend freezes the cgroup, resume thaws it.
	sus := g.(driver.Suspender)
	if err := sus.Suspend(ctx); err != nil {
		t.Fatal(err)
	}
	if f, ev := readCgFile(t, dir, "cgroup.freeze"), readCgFile(t, dir, "cgroup.events"); f != "1" || !strings.Contains(ev, "frozen 1") {
		t.Errorf("after suspend: cgroup.freeze=%q cgroup.events=%q", f, ev)
	}
	if st, _ := g.Status(ctx); st.State != driver.Suspended {
		t.Errorf("status after suspend: %+v", st)
	}
	if err := sus.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if f, ev := readCgFile(t, dir, "cgroup.freeze"), readCgFile(t, dir, "cgroup.events"); f != "0" || !strings.Contains(ev, "frozen 0") {
		t.Errorf("after resume: cgroup.freeze=%q cgroup.events=%q", f, ev)
	}
	if res := run("echo alive"); strings.TrimSpace(string(res.Stdout)) != "alive" {
		t.Errorf("resumed guest: %q %q", res.Stdout, res.Stderr)
	}

	// Stop removes the cgroup.
	if err := g.Stop(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if st, _ := g.Status(ctx); st.State != driver.Stopped || st.Reason != "stopped by tinyfarm" {
		t.Errorf("after stop: %+v", st)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("guest cgroup %s still there after stop: %v", dir, err)
	}
}

func cpuStat(t *testing.T, dir, key string) int {
	t.Helper()
	for _, l := range strings.Split(readCgFile(t, dir, "cpu.stat"), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == key {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("%s/cpu.stat has no %s", dir, key)
	return 0
}

func readCgFile(t *testing.T, dir, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func mustWrite(t *testing.T, file, val string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(val), 0); err != nil {
		t.Fatalf("write %s: %v", file, err)
	}
}

// ownV2Cgroup is this process's cgroup v2 path.
func ownV2Cgroup(t *testing.T) string {
	t.Helper()
	own, err := hostCgroupFS().ownCgroups()
	if err != nil {
		t.Fatal(err)
	}
	return own[""]
}

// moveSelf moves this process (all its threads) into the cgroup at dir,
// an absolute path or a path relative to the cgroup2 root.
func moveSelf(t *testing.T, dir string) {
	t.Helper()
	if !strings.HasPrefix(dir, cgRoot) {
		dir = filepath.Join(cgRoot, dir)
	}
	mustWrite(t, filepath.Join(dir, "cgroup.procs"), strconv.Itoa(os.Getpid()))
}
