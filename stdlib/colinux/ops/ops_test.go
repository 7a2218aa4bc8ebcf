//go:build linux

package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
)

func TestMain(m *testing.M) { guesttest.Main(m) }

// TestCloneRunningNS: a running guest is cloned with a new name, IP,
// hostname and SSH host key; the clone answers on its own IP with its own
// hostname while the source still serves; cloning onto an existing name
// fails and leaves the source running.
func TestCloneRunningNS(t *testing.T) {
	guesttest.NeedRoot(t)
	ctx := context.Background()
	state := t.TempDir()
	fm := guesttest.OpsFarm(t, state)
	disk, hk := guesttest.SSHDisk(t, state)
	if _, err := fm.Define(farm.Definition{Name: "origin", Driver: "ns", Disk: disk, MemBytes: 64 << 20, HostKey: hk, User: "root"}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	src, _ := fm.Guest(ctx, "origin")
	t.Cleanup(func() { src.Destroy(context.Background(), false) })
	if _, err := src.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := src.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	guesttest.MustExec(t, src, "echo from-origin > /root/data.txt")
	// The source writes while it is cloned.
	guesttest.MustExec(t, src, "(i=0; while :; do i=$((i+1)); echo $i > /root/c.tmp; mv /root/c.tmp /root/counter; done) >/dev/null 2>&1 &")

	res, err := ops.Clone(ctx, src, ops.CloneOptions{Name: "copy", IP: "10.77.248.20", Hostname: "copy-host"})
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
	if got := guesttest.MustExec(t, clone, "hostname; cat /etc/hostname; cat /root/data.txt"); got != "copy-host\ncopy-host\nfrom-origin" {
		t.Errorf("clone: hostname, /etc/hostname, data = %q", got)
	}
	if got := guesttest.MustExec(t, clone, "grep -c copy-host /etc/hosts"); got == "0" {
		t.Errorf("clone /etc/hosts lacks its name")
	}
	guesttest.MustExec(t, clone, "echo clone-only > /root/clone.txt")
	if got := guesttest.MustExec(t, src, "hostname; ls /root"); strings.Contains(got, "clone.txt") || !strings.HasPrefix(got, "origin\n") {
		t.Errorf("source after the clone wrote: %q", got)
	}
	a := guesttest.MustExec(t, src, "cat /root/counter")
	time.Sleep(200 * time.Millisecond)
	if b := guesttest.MustExec(t, src, "cat /root/counter"); a == b {
		t.Errorf("source's writer stopped: %s -> %s", a, b)
	}
	if c, err := src.SSH(ctx); err != nil {
		t.Errorf("source over SSH: %v", err)
	} else {
		c.Close()
	}
	// Clone onto an existing name.
	_, err = ops.Clone(ctx, src, ops.CloneOptions{Name: "copy"})
	if !errors.Is(err, farm.ErrExists) {
		t.Errorf("clone onto an existing name: %v", err)
	}
	if !src.Running(ctx) || !clone.Running(ctx) {
		t.Error("a refused clone stopped a guest")
	}
	if d, _ := fm.Get("copy"); d.HostKey != clone.Def.HostKey {
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
	fm := farm.New(t.TempDir(), farm.Options{Drivers: farm.DefaultDrivers()})
	m := ops.Manifest{Format: "tinyfarm-checkpoint", Version: 1, VMState: "c.vmstate", Disk: "c.disk", VMStateSize: 8, DiskSize: 4,
		Guest: farm.Definition{Name: "vm", Driver: "qemu", Disk: "/d", Kernel: "/k", Layout: driver.Scatter, MemBytes: 64 << 20}}
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
		_, err := ops.Restore(context.Background(), fm, filepath.Join(dir, "c"), ops.RestoreOptions{})
		if !errors.Is(err, ops.ErrBadCheckpoint) {
			t.Errorf("%s: %v, want ErrBadCheckpoint", name, err)
		}
		if defs, _ := fm.List(); len(defs) != 0 {
			t.Errorf("%s: defined %v", name, defs)
		}
	}
}

// TestQemuCheckpointRestore: a VM with a counting shell loop is
// checkpointed, destroyed, and restored under a new name: the loop counts
// on from where it was.
func TestQemuCheckpointRestore(t *testing.T) {
	guesttest.NeedVM(t)
	ctx := context.Background()
	state := t.TempDir()
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: guesttest.OpsBridge, Subnet: guesttest.OpsSubnet})
	g, cold := guesttest.QemuGuest(t, fm, state, farm.Definition{Name: "counter", MemBytes: 160 << 20})
	guesttest.MustExec(t, g, guesttest.CounterLoop)
	time.Sleep(300 * time.Millisecond)
	before := guesttest.Counter(t, g)
	file := filepath.Join(t.TempDir(), "counter.ckpt")
	cp, err := ops.Checkpoint(ctx, g, file)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cold boot to SSH %v; checkpoint %v (guest paused %v), %d MiB on disk", cold, cp.Duration, cp.Paused, cp.Bytes>>20)
	if after := guesttest.Counter(t, g); after < before {
		t.Errorf("source after checkpoint: %d < %d", after, before)
	}
	atCheckpoint := guesttest.Counter(t, g)
	if err := g.Destroy(ctx, false); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	r, err := ops.Restore(ctx, fm, file, ops.RestoreOptions{Name: "revived"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Destroy(context.Background(), false) })
	loaded := time.Since(t1)
	n1 := guesttest.Counter(t, r)
	time.Sleep(500 * time.Millisecond)
	n2 := guesttest.Counter(t, r)
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
	if _, err := ops.Restore(ctx, fm, file, ops.RestoreOptions{Name: "broken"}); !errors.Is(err, ops.ErrBadCheckpoint) {
		t.Errorf("restore of a truncated state: %v", err)
	}
	if _, err := fm.Get("broken"); !errors.Is(err, farm.ErrNotFound) {
		t.Errorf("a refused restore defined a guest: %v", err)
	}
}

// TestCloneDiskBesideAndKept: a clone's disk goes beside its source's
// (on btrfs: a reflink, no extra space), is marked as placed by tinyfarm,
// and destroy without disk = true keeps it, as it keeps a disk an older
// tinyfarm put in the guest's directory (moved to <state>/disks).
func TestCloneDiskBesideAndKept(t *testing.T) {
	guesttest.NeedRoot(t)
	ctx := context.Background()
	mnt := guesttest.ScratchBtrfs(t)
	state := t.TempDir()
	fm := guesttest.OpsFarm(t, state)
	built := guesttest.BuildDisk(t, guesttest.Options{})
	disk := filepath.Join(mnt, "origin.img")
	guesttest.CpNoReflink(t, built.Path, disk)
	if _, err := fm.Define(farm.Definition{Name: "origin", Driver: "ns", Disk: disk, MemBytes: 64 << 20}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	src, _ := fm.Guest(ctx, "origin")
	t.Cleanup(func() { src.Destroy(context.Background(), false) })
	res, err := ops.Clone(ctx, src, ops.CloneOptions{Name: "twin"})
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
	guesttest.CpNoReflink(t, built.Path, old)
	if _, err := fm.Define(farm.Definition{Name: "legacy", Driver: "ns", Disk: old, MemBytes: 64 << 20}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	lg, _ := fm.Guest(ctx, "legacy")
	if err := lg.Destroy(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(state, "disks", "legacy.img")); err != nil {
		t.Errorf("destroy{disk=false} of a guest with its disk in its directory: disk not kept in <state>/disks: %v", err)
	}
}

// TestQemuRestoreBridgeNewName: a VM on the farm bridge, checkpointed and
// restored under a new name. Its memory holds its MAC and address, so
// while its source is defined the restore is refused with that reason
// (it used to run as a second NIC with the same MAC, unreachable); once
// the source is gone, it is restored with that identity and answers at
// its address, counting on.
func TestQemuRestoreBridgeNewName(t *testing.T) {
	guesttest.NeedVM(t)
	ctx := context.Background()
	state := t.TempDir()
	t.Cleanup(func() { guesttest.KillDHCP(state, guesttest.OpsBridge) })
	fm := guesttest.OpsFarm(t, state)
	g, _ := guesttest.QemuGuest(t, fm, state, farm.Definition{Name: "bridged", Net: "bridge", MemBytes: 160 << 20})
	guesttest.MustExec(t, g, guesttest.CounterLoop)
	file := filepath.Join(t.TempDir(), "bridged.ckpt")
	if _, err := ops.Checkpoint(ctx, g, file); err != nil {
		t.Fatal(err)
	}
	ip, mac := g.Def.IP, g.Def.MAC
	_, err := ops.Restore(ctx, fm, file, ops.RestoreOptions{Name: "twin"})
	if !errors.Is(err, driver.ErrUnsupported) || !strings.Contains(err.Error(), mac) {
		t.Errorf("restore under a new name while the source is defined: %v, want unsupported naming MAC %s", err, mac)
	} else {
		t.Logf("refused: %v", err)
	}
	if _, err := fm.Get("twin"); !errors.Is(err, farm.ErrNotFound) {
		t.Errorf("a refused restore defined the guest: %v", err)
	}
	if err := g.Destroy(ctx, false); err != nil {
		t.Fatal(err)
	}
	r, err := ops.Restore(ctx, fm, file, ops.RestoreOptions{Name: "twin"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Destroy(context.Background(), false) })
	if r.Def.IP != ip || r.Def.MAC != mac {
		t.Errorf("restored as twin: ip %s mac %s, want the VM's own %s %s", r.Def.IP, r.Def.MAC, ip, mac)
	}
	n1 := guesttest.Counter(t, r) // over SSH to its bridge address
	time.Sleep(300 * time.Millisecond)
	if n2 := guesttest.Counter(t, r); n2 <= n1 {
		t.Errorf("the restored guest's counter: %d then %d", n1, n2)
	}
}
