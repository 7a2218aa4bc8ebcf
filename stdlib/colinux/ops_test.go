//go:build linux

package colinux_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/image"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// The operations tests have a bridge and subnet of their own.
const (
	opsBridge = "tftest8"
	opsSubnet = "10.77.248.0/24"
)

func opsFarm(t *testing.T, state string) *colinux.Farm {
	t.Cleanup(func() { ns.DeleteBridge(opsBridge) })
	return colinux.New(state, colinux.Options{Drivers: colinux.DefaultDrivers(), Bridge: opsBridge, Subnet: opsSubnet})
}

// killDHCP ends the farm DHCP server that the farm of state started on
// bridge, by its pid (the server outlives the test process otherwise).
func killDHCP(state, bridge string) {
	if pid := farmnet.DHCPPID(filepath.Join(state, "guests"), bridge); pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func mustExec(t *testing.T, g *colinux.Guest, script string) string {
	t.Helper()
	r, err := g.Exec(context.Background(), []string{"/bin/sh", "-c", script}, driver.ExecOptions{})
	if err != nil {
		t.Fatalf("%s: exec %q: %v", g.Def.Name, script, err)
	}
	if r.Code != 0 {
		t.Fatalf("%s: exec %q: exit %d: %s", g.Def.Name, script, r.Code, r.Stderr)
	}
	return strings.TrimSpace(string(r.Stdout))
}

// TestShareNS: host directories shared into a namespace guest show their
// files; a read-only share refuses writes; shares are in the definition
// and survive a restart; a namespace guest cannot be checkpointed here
// (no working CRIU) and says why.
//
// It runs in each isolation mode the README offers: the default user
// namespace (the shares idmapped like the disk, so a host file owned by 0
// is the guest root's and one owned by 1001 is tc's) and userns = false.
// (Frugal ns guests, the other mode without a user namespace, are refused
// when defined: see TestDefineValidatesAndKeepsIdentity.)
func TestShareNS(t *testing.T) {
	needRoot(t)
	for _, mode := range []struct {
		name   string
		userns bool
	}{{"userns", true}, {"root", false}} {
		t.Run(mode.name, func(t *testing.T) {
			if mode.userns && !ns.UserNSAvailable() {
				t.Skip("no user namespaces with idmapped mounts here")
			}
			disk := guesttest.BuildDisk(t, guesttest.Options{})
			testShareNS(t, colinux.Definition{Name: "sharer", Driver: "ns", Disk: disk.Path, MemBytes: 64 << 20, UserNS: mode.userns})
		})
	}
}

func testShareNS(t *testing.T, def colinux.Definition) {
	ctx := context.Background()
	state := t.TempDir()
	farm := opsFarm(t, state)
	if _, err := farm.Define(def, colinux.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	g, _ := farm.Guest(ctx, "sharer")
	t.Cleanup(func() { g.Destroy(context.Background(), false) })
	rw, ro := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(ro, "hello.txt"), []byte("from the host\n"), 0o644)
	os.WriteFile(filepath.Join(ro, "tc.txt"), []byte("tc's\n"), 0o644)
	os.Chown(filepath.Join(ro, "tc.txt"), 1001, 50)
	os.Chmod(rw, 0o777)
	r1, err := g.Share(ctx, colinux.ShareOptions{HostPath: ro, GuestPath: "/mnt/ro", ReadOnly: true})
	if err != nil || !r1.Changed || r1.Pending {
		t.Fatalf("share ro: %+v %v", r1, err)
	}
	if _, err := g.Share(ctx, colinux.ShareOptions{HostPath: rw, GuestPath: "/mnt/rw"}); err != nil {
		t.Fatal(err)
	}
	if again, err := g.Share(ctx, colinux.ShareOptions{HostPath: ro, GuestPath: "/mnt/ro", ReadOnly: true}); err != nil || again.Changed {
		t.Errorf("the same share again: %+v %v, want unchanged", again, err)
	}
	if _, err := g.Share(ctx, colinux.ShareOptions{HostPath: "relative", GuestPath: "/x"}); !errors.Is(err, colinux.ErrInvalid) {
		t.Errorf("relative host path: %v", err)
	}
	for boot := 1; boot <= 2; boot++ {
		if _, err := g.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := g.WaitReady(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := mustExec(t, g, "cat /mnt/ro/hello.txt"); got != "from the host" {
			t.Errorf("boot %d: ro share shows %q", boot, got)
		}
		r, err := g.Exec(ctx, []string{"/bin/sh", "-c", "echo x > /mnt/ro/new"}, driver.ExecOptions{})
		if err != nil || r.Code == 0 || !strings.Contains(string(r.Stderr), "Read-only") {
			t.Errorf("boot %d: write into the ro share: code %d, %s, %v", boot, r.Code, r.Stderr, err)
		}
		if _, err := os.Stat(filepath.Join(ro, "new")); err == nil {
			t.Errorf("boot %d: the ro share was written", boot)
		}
		// Owners as the guest sees them: numeric, so no passwd lookups.
		if got := mustExec(t, g, "ls -ln /mnt/ro/hello.txt /mnt/ro/tc.txt | awk '{print $3}' | tr '\\n' ' '"); got != "0 1001" {
			t.Errorf("boot %d: owners of host files (0 and 1001) in the guest: %q", boot, got)
		}
		mustExec(t, g, "echo boot"+strconv.Itoa(boot)+" > /mnt/rw/out")
		if fi, err := os.Stat(filepath.Join(rw, "out")); err != nil {
			t.Error(err)
		} else if fileOwner(fi) != 0 {
			t.Errorf("boot %d: a file the guest root wrote into the share: host owner %d, want 0", boot, fileOwner(fi))
		}
		if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != "boot"+strconv.Itoa(boot)+"\n" {
			t.Errorf("boot %d: rw share: host sees %q", boot, b)
		}
		if boot == 1 {
			// A share added to a running guest is recorded, pending.
			extra := t.TempDir()
			r, err := g.Share(ctx, colinux.ShareOptions{HostPath: extra, GuestPath: "/mnt/extra"})
			if err != nil || !r.Changed || !r.Pending || !strings.Contains(r.Detail, "next start") {
				t.Errorf("share into a running guest: %+v %v", r, err)
			}
			os.WriteFile(filepath.Join(extra, "late"), []byte("late\n"), 0o644)
			// A stateful checkpoint of an ns guest needs CRIU.
			file := filepath.Join(t.TempDir(), "ns.ckpt")
			_, err = g.Checkpoint(ctx, file)
			if !errors.Is(err, driver.ErrUnsupported) || !strings.Contains(err.Error(), "CRIU") {
				t.Errorf("ns checkpoint: %v, want unsupported naming CRIU", err)
			} else {
				t.Logf("ns checkpoint: %v", err)
			}
			if _, err := os.Stat(file); err == nil {
				t.Error("unsupported checkpoint wrote a file")
			}
			if _, err := g.Stop(ctx, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := mustExec(t, g, "cat /mnt/extra/late"); got != "late" {
		t.Errorf("share added while running, after restart: %q", got)
	}
	d, _ := farm.Get("sharer")
	if len(d.Shares) != 3 {
		t.Errorf("definition shares: %+v", d.Shares)
	}
	if _, err := g.Unshare(ctx, "/mnt/extra", colinux.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	if d, _ := farm.Get("sharer"); len(d.Shares) != 2 {
		t.Errorf("after unshare: %+v", d.Shares)
	}
	// A share whose host directory went away: start fails at once, says
	// nothing started, and names the host path (not a descriptor).
	if _, err := g.Stop(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(t.TempDir(), "gone")
	os.Mkdir(gone, 0o755)
	if _, err := g.Share(ctx, colinux.ShareOptions{HostPath: gone, GuestPath: "/mnt/gone"}); err != nil {
		t.Fatal(err)
	}
	os.Remove(gone)
	changed, err := g.Start(ctx)
	if err == nil || changed || !strings.Contains(err.Error(), gone) || strings.Contains(err.Error(), "/proc/self/fd") {
		t.Errorf("start with a vanished share: changed %v, %v; want an error naming %s", changed, err, gone)
	} else {
		t.Logf("start with a vanished share: %v", err)
	}
	if g.Running(ctx) {
		t.Error("the guest runs without its share")
	}
}

// TestCloneRunningNS: a running guest is cloned with a new name, IP,
// hostname and SSH host key; the clone answers on its own IP with its own
// hostname while the source still serves; cloning onto an existing name
// fails and leaves the source running.
func TestCloneRunningNS(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	state := t.TempDir()
	farm := opsFarm(t, state)
	disk, hk := sshDisk(t, state)
	if _, err := farm.Define(colinux.Definition{Name: "origin", Driver: "ns", Disk: disk, MemBytes: 64 << 20, HostKey: hk, User: "root"}, colinux.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	src, _ := farm.Guest(ctx, "origin")
	t.Cleanup(func() { src.Destroy(context.Background(), false) })
	if _, err := src.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := src.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	mustExec(t, src, "echo from-origin > /root/data.txt")
	// The source writes while it is cloned.
	mustExec(t, src, "(i=0; while :; do i=$((i+1)); echo $i > /root/c.tmp; mv /root/c.tmp /root/counter; done) >/dev/null 2>&1 &")

	res, err := src.Clone(ctx, colinux.CloneOptions{Name: "copy", IP: "10.77.248.20", Hostname: "copy-host"})
	if err != nil {
		t.Fatal(err)
	}
	clone := res.Guest
	t.Cleanup(func() { clone.Destroy(context.Background(), true) })
	srcSize := fileSize(t, disk)
	t.Logf("clone of a running guest: %v (paused %v), %s copy, %d MiB allocated for a %d MiB image",
		res.Duration, res.Paused, res.Method, res.DiskBytes>>20, srcSize>>20)
	if st, _ := src.Status(ctx); st.State != driver.Running {
		t.Fatalf("source after clone: %+v", st)
	}
	if clone.Def.IP != "10.77.248.20/24" || clone.Def.HostKey == src.Def.HostKey || clone.Def.MAC == src.Def.MAC || clone.Def.HostKey == "" {
		t.Errorf("clone identity: ip %s mac %s (source %s), new key %v", clone.Def.IP, clone.Def.MAC, src.Def.MAC, clone.Def.HostKey != src.Def.HostKey)
	}
	if !strings.Contains(clone.Def.Bootcodes, "host=copy-host") {
		t.Errorf("clone bootcodes %q", clone.Def.Bootcodes)
	}
	if _, err := clone.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// WaitReady ends with an SSH handshake to 10.77.248.20 pinned to the
	// clone's new host key: the key was written into its disk.
	if err := clone.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	c, err := clone.SSH(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := mustExec(t, clone, "hostname; cat /etc/hostname; cat /root/data.txt"); got != "copy-host\ncopy-host\nfrom-origin" {
		t.Errorf("clone: hostname, /etc/hostname, data = %q", got)
	}
	if got := mustExec(t, clone, "grep -c copy-host /etc/hosts"); got == "0" {
		t.Errorf("clone /etc/hosts lacks its name")
	}
	mustExec(t, clone, "echo clone-only > /root/clone.txt")
	if got := mustExec(t, src, "hostname; ls /root"); strings.Contains(got, "clone.txt") || !strings.HasPrefix(got, "origin\n") {
		t.Errorf("source after the clone wrote: %q", got)
	}
	a := mustExec(t, src, "cat /root/counter")
	time.Sleep(200 * time.Millisecond)
	if b := mustExec(t, src, "cat /root/counter"); a == b {
		t.Errorf("source's writer stopped: %s -> %s", a, b)
	}
	if c, err := src.SSH(ctx); err != nil {
		t.Errorf("source over SSH: %v", err)
	} else {
		c.Close()
	}
	// Clone onto an existing name.
	_, err = src.Clone(ctx, colinux.CloneOptions{Name: "copy"})
	if !errors.Is(err, colinux.ErrExists) {
		t.Errorf("clone onto an existing name: %v", err)
	}
	if !src.Running(ctx) || !clone.Running(ctx) {
		t.Error("a refused clone stopped a guest")
	}
	if d, _ := farm.Get("copy"); d.HostKey != clone.Def.HostKey {
		t.Error("a refused clone changed the existing guest")
	}
}

func fileSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestRestoreRefusesBadFiles: a corrupt or foreign file is a clear error
// and nothing is defined.
func TestRestoreRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	farm := colinux.New(t.TempDir(), colinux.Options{Drivers: colinux.DefaultDrivers()})
	m := colinux.Manifest{Format: "tinyfarm-checkpoint", Version: 1, VMState: "c.vmstate", Disk: "c.disk", VMStateSize: 8, DiskSize: 4,
		Guest: colinux.Definition{Name: "vm", Driver: "qemu", Disk: "/d", Kernel: "/k", Layout: driver.Scatter, MemBytes: 64 << 20}}
	good, _ := json.Marshal(m)
	cases := map[string]func(){
		"garbage":  func() { os.WriteFile(filepath.Join(dir, "c"), []byte("\x00\x01not json"), 0o644) },
		"foreign":  func() { os.WriteFile(filepath.Join(dir, "c"), []byte(`{"format":"docker-image","version":1}`), 0o644) },
		"no state": func() { os.WriteFile(filepath.Join(dir, "c"), good, 0o644) },
		"truncated": func() {
			os.WriteFile(filepath.Join(dir, "c.vmstate"), []byte("QEVM"), 0o644)
			os.WriteFile(filepath.Join(dir, "c.disk"), []byte("disk"), 0o644)
		},
		"not qemu": func() { os.WriteFile(filepath.Join(dir, "c.vmstate"), []byte("NOTQEMU!"), 0o644) },
	}
	for _, name := range []string{"garbage", "foreign", "no state", "truncated", "not qemu"} {
		cases[name]()
		_, err := farm.Restore(context.Background(), filepath.Join(dir, "c"), colinux.RestoreOptions{})
		if !errors.Is(err, colinux.ErrBadCheckpoint) {
			t.Errorf("%s: %v, want ErrBadCheckpoint", name, err)
		}
		if defs, _ := farm.List(); len(defs) != 0 {
			t.Errorf("%s: defined %v", name, defs)
		}
	}
}

// TestQemuCheckpointRestore: a VM with a counting shell loop is
// checkpointed, destroyed, and restored under a new name: the loop counts
// on from where it was.
func TestQemuCheckpointRestore(t *testing.T) {
	needVM(t)
	ctx := context.Background()
	state := t.TempDir()
	farm := colinux.New(state, colinux.Options{Drivers: colinux.DefaultDrivers(), Bridge: opsBridge, Subnet: opsSubnet})
	g, cold := guesttest.QemuGuest(t, farm, state, colinux.Definition{Name: "counter", MemBytes: 160 << 20})
	mustExec(t, g, counterLoop)
	time.Sleep(300 * time.Millisecond)
	before := counter(t, g)
	file := filepath.Join(t.TempDir(), "counter.ckpt")
	cp, err := g.Checkpoint(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cold boot to SSH %v; checkpoint %v (guest paused %v), %d MiB on disk", cold, cp.Duration, cp.Paused, cp.Bytes>>20)
	if after := counter(t, g); after < before {
		t.Errorf("source after checkpoint: %d < %d", after, before)
	}
	atCheckpoint := counter(t, g)
	if err := g.Destroy(ctx, false); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	r, err := farm.Restore(ctx, file, colinux.RestoreOptions{Name: "revived"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Destroy(context.Background(), false) })
	loaded := time.Since(t1)
	n1 := counter(t, r)
	time.Sleep(500 * time.Millisecond)
	n2 := counter(t, r)
	t.Logf("restore: state loaded in %v, SSH answered after %v; counter %d at save, %d and %d after", loaded, time.Since(t1), atCheckpoint, n1, n2)
	if n1 < before || n2 <= n1 {
		t.Errorf("counter did not go on: %d before the checkpoint, %d then %d after restore", before, n1, n2)
	}
	if n1 > atCheckpoint+100 {
		t.Errorf("restored counter %d is far past the checkpoint's %d", n1, atCheckpoint)
	}
	// The restored guest's disk is one tinyfarm placed: destroy keeps it.
	if !r.Def.DiskPlaced {
		t.Errorf("restored guest: disk %s not marked as placed by tinyfarm", r.Def.Disk)
	}
	restoredDisk := r.Def.Disk
	if err := r.Destroy(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(restoredDisk); err != nil {
		t.Errorf("destroy{disk=false} of a restored guest removed its disk: %v", err)
	}
	// A truncated state: refused, nothing started under the new name.
	os.Truncate(file+".vmstate", 1<<20)
	if _, err := farm.Restore(ctx, file, colinux.RestoreOptions{Name: "broken"}); !errors.Is(err, colinux.ErrBadCheckpoint) {
		t.Errorf("restore of a truncated state: %v", err)
	}
	if _, err := farm.Get("broken"); !errors.Is(err, colinux.ErrNotFound) {
		t.Errorf("a refused restore defined a guest: %v", err)
	}
}

// counterLoop starts a shell loop in the guest that counts in a tmpfs
// (lost on a reboot, kept by a checkpoint or a live move). Each value is
// written to a temporary file and renamed over /run/tf/n, so a reader
// never sees the file between truncation and write.
// The first value is written before the loop goes to the background, so
// a read right after this command never finds the file missing.
const counterLoop = "mkdir -p /run/tf && mount -t tmpfs tmpfs /run/tf && echo 0 > /run/tf/n && " +
	"(i=0; while :; do i=$((i+1)); echo $i > /run/tf/n.new; mv /run/tf/n.new /run/tf/n; sleep 0.05; done) </dev/null >/dev/null 2>&1 &"

// counter reads the counter of counterLoop. Right after a bridged VM's
// first boot, CI saw one read (in about one run of the package in two,
// only after TestTour) find no /run/tf/n although the command that wrote
// it had succeeded; the cause is not known (see the session notes), so a
// missing file is read again for up to 10 s, and a file that stays
// missing fails with the guest's mounts.
func counter(t *testing.T, g *colinux.Guest) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := g.Exec(context.Background(), []string{"/bin/sh", "-c", "cat /run/tf/n"}, driver.ExecOptions{})
		if err == nil && r.Code == 0 {
			n, err := strconv.Atoi(strings.TrimSpace(string(r.Stdout)))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no counter: %v %s\n%s", g.Def.Name, err, r.Stderr, mustExec(t, g, "grep /run /proc/mounts; ls -la /run"))
		}
		t.Logf("%s: counter not readable yet: %v %s", g.Def.Name, err, r.Stderr)
		time.Sleep(200 * time.Millisecond)
	}
}

// TestCloneDiskBesideAndKept: a clone's disk goes beside its source's
// (on btrfs: a reflink, no extra space), is marked as placed by tinyfarm,
// and destroy without disk = true keeps it, as it keeps a disk an older
// tinyfarm put in the guest's directory (moved to <state>/disks).
func TestCloneDiskBesideAndKept(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	mnt := scratchBtrfs(t)
	state := t.TempDir()
	farm := opsFarm(t, state)
	built := guesttest.BuildDisk(t, guesttest.Options{})
	disk := filepath.Join(mnt, "origin.img")
	cpNoReflink(t, built.Path, disk)
	if _, err := farm.Define(colinux.Definition{Name: "origin", Driver: "ns", Disk: disk, MemBytes: 64 << 20}, colinux.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	src, _ := farm.Guest(ctx, "origin")
	t.Cleanup(func() { src.Destroy(context.Background(), false) })
	res, err := src.Clone(ctx, colinux.CloneOptions{Name: "twin"})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Guest
	t.Logf("clone: %s copy in %v, disk %s", res.Method, res.Duration, c.Def.Disk)
	if c.Def.Disk != filepath.Join(mnt, "twin.img") || res.Method != "reflink" || !c.Def.DiskPlaced {
		t.Errorf("clone disk %s (%s copy, placed %v), want %s/twin.img, a reflink, placed", c.Def.Disk, res.Method, c.Def.DiskPlaced, mnt)
	}
	if err := c.Destroy(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "twin.img")); err != nil {
		t.Errorf("destroy{disk=false} of a clone removed its disk: %v", err)
	}
	// A disk in the guest's own directory (where clones' disks used to go).
	old := filepath.Join(state, "guests", "legacy", "disk.img")
	os.MkdirAll(filepath.Dir(old), 0o700)
	cpNoReflink(t, built.Path, old)
	if _, err := farm.Define(colinux.Definition{Name: "legacy", Driver: "ns", Disk: old, MemBytes: 64 << 20}, colinux.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	lg, _ := farm.Guest(ctx, "legacy")
	if err := lg.Destroy(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(state, "disks", "legacy.img")); err != nil {
		t.Errorf("destroy{disk=false} of a guest with its disk in its directory: disk not kept in <state>/disks: %v", err)
	}
}

// TestQemuSuspendExec: a suspended VM refuses exec at once (it used to
// hang for as long as the VM stayed stopped); suspend and resume report
// whether they changed anything; a command past its timeout is abandoned
// with a timeout error and the guest still answers.
func TestQemuSuspendExec(t *testing.T) {
	needVM(t)
	ctx := context.Background()
	state := t.TempDir()
	farm := colinux.New(state, colinux.Options{Drivers: colinux.DefaultDrivers(), Bridge: opsBridge, Subnet: opsSubnet})
	g, _ := guesttest.QemuGuest(t, farm, state, colinux.Definition{Name: "sleepy", MemBytes: 128 << 20})
	for i, want := range []bool{true, false} {
		if changed, err := g.Suspend(ctx); err != nil || changed != want {
			t.Errorf("suspend %d: changed %v, %v; want %v", i+1, changed, err, want)
		}
	}
	ectx, cancel := context.WithTimeout(ctx, 20*time.Second)
	t0 := time.Now()
	_, err := g.Exec(ectx, []string{"true"}, driver.ExecOptions{})
	cancel()
	if !errors.Is(err, colinux.ErrSuspended) || time.Since(t0) > 5*time.Second {
		t.Errorf("exec on a suspended VM: %v after %v, want refused at once", err, time.Since(t0))
	}
	for i, want := range []bool{true, false} {
		if changed, err := g.Resume(ctx); err != nil || changed != want {
			t.Errorf("resume %d: changed %v, %v; want %v", i+1, changed, err, want)
		}
	}
	_, err = g.Exec(ctx, []string{"sleep", "30"}, driver.ExecOptions{Timeout: 2 * time.Second})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("exec past its timeout: %v, want a timeout", err)
	}
	if got := mustExec(t, g, "echo up"); got != "up" {
		t.Errorf("after a timed-out exec: %q", got)
	}
	// Destroy ends the VM without the slow clean shutdown, after a sync:
	// what the guest wrote just before is on the disk it keeps.
	mustExec(t, g, "echo kept > /root/last-words")
	disk := g.Def.Disk
	t0 = time.Now()
	if err := g.Destroy(ctx, false); err != nil {
		t.Fatal(err)
	}
	t.Logf("destroy of a running VM: %v", time.Since(t0))
	// Mounted read-write, as the guest's next boot would: the journal of
	// a file system that was not unmounted is replayed.
	var got []byte
	err = image.Edit(ctx, disk, func(tg target.Target) (err error) {
		got, err = target.ReadFile(ctx, tg, "/root/last-words")
		return err
	})
	if err != nil || string(got) != "kept\n" {
		t.Errorf("a file written just before destroy, on the kept disk: %q, %v", got, err)
	}
}

// TestQemuRestoreBridgeNewName: a VM on the farm bridge, checkpointed and
// restored under a new name. Its memory holds its MAC and address, so
// while its source is defined the restore is refused with that reason
// (it used to run as a second NIC with the same MAC, unreachable); once
// the source is gone, it is restored with that identity and answers at
// its address, counting on.
func TestQemuRestoreBridgeNewName(t *testing.T) {
	needVM(t)
	ctx := context.Background()
	state := t.TempDir()
	t.Cleanup(func() { killDHCP(state, opsBridge) })
	farm := opsFarm(t, state)
	g, _ := guesttest.QemuGuest(t, farm, state, colinux.Definition{Name: "bridged", Net: "bridge", MemBytes: 160 << 20})
	mustExec(t, g, counterLoop)
	file := filepath.Join(t.TempDir(), "bridged.ckpt")
	if _, err := g.Checkpoint(ctx, file); err != nil {
		t.Fatal(err)
	}
	ip, mac := g.Def.IP, g.Def.MAC
	_, err := farm.Restore(ctx, file, colinux.RestoreOptions{Name: "twin"})
	if !errors.Is(err, driver.ErrUnsupported) || !strings.Contains(err.Error(), mac) {
		t.Errorf("restore under a new name while the source is defined: %v, want unsupported naming MAC %s", err, mac)
	} else {
		t.Logf("refused: %v", err)
	}
	if _, err := farm.Get("twin"); !errors.Is(err, colinux.ErrNotFound) {
		t.Errorf("a refused restore defined the guest: %v", err)
	}
	if err := g.Destroy(ctx, false); err != nil {
		t.Fatal(err)
	}
	r, err := farm.Restore(ctx, file, colinux.RestoreOptions{Name: "twin"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Destroy(context.Background(), false) })
	if r.Def.IP != ip || r.Def.MAC != mac {
		t.Errorf("restored as twin: ip %s mac %s, want the VM's own %s %s", r.Def.IP, r.Def.MAC, ip, mac)
	}
	n1 := counter(t, r) // over SSH to its bridge address
	time.Sleep(300 * time.Millisecond)
	if n2 := counter(t, r); n2 <= n1 {
		t.Errorf("the restored guest's counter: %d then %d", n1, n2)
	}
}
