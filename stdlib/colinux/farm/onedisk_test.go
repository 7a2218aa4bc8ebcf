//go:build linux

package farm_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
)

// The one-disk tests have a bridge and subnet of their own.
const (
	diskBridge = "tftestd"
	diskSubnet = "10.77.233.0/24"
)

// cgroupFile is a file of the running guest's cgroup of controller
// (v1) or its unified cgroup (v2, file v2file).
func cgroupFile(t *testing.T, state, name, controller, v1file, v2file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "guests", name, "run", "runtime.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rt struct {
		Cgroups struct {
			V2    bool              `json:"v2"`
			Paths map[string]string `json:"paths"`
		} `json:"cgroups"`
	}
	json.Unmarshal(b, &rt)
	file := filepath.Join(rt.Cgroups.Paths[controller], v1file)
	if rt.Cgroups.V2 {
		file = filepath.Join(rt.Cgroups.Paths["unified"], v2file)
	}
	v, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(v))
}

// cgroupMem is the memory limit in the running guest's cgroup, read from
// the kernel (the cgroup the monitor recorded in runtime.json).
func cgroupMem(t *testing.T, state, name string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "guests", name, "run", "runtime.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rt struct {
		Cgroups struct {
			V2    bool              `json:"v2"`
			Paths map[string]string `json:"paths"`
		} `json:"cgroups"`
	}
	if err := json.Unmarshal(b, &rt); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(rt.Cgroups.Paths["memory"], "memory.limit_in_bytes")
	if rt.Cgroups.V2 {
		file = filepath.Join(rt.Cgroups.Paths["unified"], "memory.max")
	}
	v, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %q", file, v)
	}
	return n
}

// TestOneDiskOneGuestAndLiveRedefinition runs a real ns guest in the
// default mode (user namespace where available, on a bridge): a second
// guest naming its disk is refused with both names, in this farm at
// definition and from another farm (state dir) at start, by the lock the
// guest's monitor holds on the image; redefining the running guest with
// more memory changes its cgroup at once; a changed bootcode is "restart
// needed"; a new disk is refused until it stops, and then accepted.
func TestOneDiskOneGuestAndLiveRedefinition(t *testing.T) {
	guesttest.NeedRoot(t)
	if testing.Short() {
		t.Skip("boots a guest")
	}
	ctx := context.Background()
	state := t.TempDir()
	disk := guesttest.BuildDisk(t, guesttest.Options{})
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: diskBridge, Subnet: diskSubnet})
	t.Cleanup(func() {
		for _, n := range []string{"ck1", "dup"} {
			if g, err := fm.Guest(ctx, n); err == nil {
				g.Destroy(ctx, false)
			}
		}
		ns.DeleteBridge(diskBridge)
	})
	def := farm.Definition{Name: "ck1", Driver: "ns", Disk: disk.Path, MemBytes: 96 << 20, UserNS: ns.UserNSAvailable()}
	if _, err := fm.DefineLive(ctx, def, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	g, _ := fm.Guest(ctx, "ck1")
	if _, err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitReady(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}

	_, err := fm.DefineLive(ctx, farm.Definition{Name: "dup", Driver: "ns", Disk: disk.Path, MemBytes: 64 << 20}, farm.ChangeOptions{})
	if !errors.Is(err, farm.ErrInvalid) || !strings.Contains(err.Error(), "guest dup") || !strings.Contains(err.Error(), "guest ck1's") {
		t.Errorf("a second guest on ck1's disk: %v", err)
	}
	// Another farm on this host knows nothing of ck1: the image's lock,
	// held by ck1's monitor, refuses it, naming ck1.
	other := farm.New(t.TempDir(), farm.Options{Drivers: farm.DefaultDrivers(), Bridge: diskBridge, Subnet: diskSubnet})
	if _, err := other.Define(farm.Definition{Name: "dup", Driver: "ns", Disk: disk.Path, MemBytes: 64 << 20}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	og, _ := other.Guest(ctx, "dup")
	if _, err := og.Start(ctx); err == nil || !strings.Contains(err.Error(), "in use by running guest ck1") {
		t.Errorf("another farm's guest on ck1's running disk started: %v", err)
		og.Destroy(ctx, false)
	}

	// mem 96M -> 192M on the running guest: applied to its cgroup live.
	def.MemBytes = 192 << 20
	res, err := fm.DefineLive(ctx, def, farm.ChangeOptions{})
	if err != nil || strings.Join(res.Live, ",") != "mem 96M -> 192M" || len(res.RestartNeeded) != 0 {
		t.Fatalf("mem change: %+v %v", res, err)
	}
	if got := cgroupMem(t, state, "ck1"); got != 192<<20 {
		t.Errorf("cgroup memory limit after the change: %d, want %d", got, 192<<20)
	}
	// cpus: the CPU quota follows, live too.
	def.CPUs = 0.5
	if res, err = fm.DefineLive(ctx, def, farm.ChangeOptions{}); err != nil || strings.Join(res.Live, ",") != "cpus 0 -> 0.5" {
		t.Errorf("cpus change: %+v %v", res, err)
	}
	if q := cgroupFile(t, state, "ck1", "cpu", "cpu.cfs_quota_us", "cpu.max"); q != "50000" && q != "50000 100000" {
		t.Errorf("cgroup CPU quota after cpus = 0.5: %q", q)
	}
	// A bootcode only a restart applies.
	def.Bootcodes = "tz=UTC"
	if res, err = fm.DefineLive(ctx, def, farm.ChangeOptions{}); err != nil || strings.Join(res.RestartNeeded, ",") != "bootcodes" {
		t.Errorf("bootcodes change: %+v %v", res, err)
	}
	g, _ = fm.Guest(ctx, "ck1")
	if rn := g.RestartNeeded(ctx); strings.Join(rn, ",") != "bootcodes" {
		t.Errorf("RestartNeeded = %v", rn)
	}
	// Another disk for the running guest: refused, naming the fix.
	disk2 := filepath.Join(t.TempDir(), "other.img")
	if err := exec.Command("cp", "--sparse=always", disk.Path, disk2).Run(); err != nil {
		t.Fatal(err)
	}
	moved := def
	moved.Disk = disk2
	if _, err := fm.DefineLive(ctx, moved, farm.ChangeOptions{}); !errors.Is(err, farm.ErrInvalid) || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("disk change of a running guest: %v", err)
	}
	if d, _ := fm.Get("ck1"); d.Disk != disk.Path {
		t.Errorf("a refused disk change was saved: %s", d.Disk)
	}
	if _, err := g.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := fm.DefineLive(ctx, moved, farm.ChangeOptions{}); err != nil {
		t.Errorf("disk change of the stopped guest: %v", err)
	}
	// Stopped, ck1 holds no lock: the other farm's guest may start now.
	if _, err := og.Start(ctx); err != nil {
		t.Errorf("start on the released disk: %v", err)
	}
	og.Destroy(ctx, false)
}

// TestDestroyKeepsGuestWhenDiskStays: destroy{disk = true} whose disk
// cannot be removed (a read-only mount here) fails and keeps the guest
// defined; a destroy that works removes its proxy routes too.
func TestDestroyKeepsGuestWhenDiskStays(t *testing.T) {
	guesttest.NeedRoot(t)
	ctx := context.Background()
	state := t.TempDir()
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: diskBridge, Subnet: diskSubnet})
	ro := t.TempDir()
	disk := filepath.Join(ro, "d.img")
	os.WriteFile(disk, []byte("disk"), 0o644)
	for _, args := range [][]string{{"--bind", ro, ro}, {"-o", "remount,bind,ro", ro}} {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("umount", ro).Run() })
	if _, err := fm.Define(farm.Definition{Name: "keep", Driver: "ns", Disk: disk, MemBytes: 64 << 20}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	reg := proxy.NewRegistry(filepath.Join(state, "proxy"), nil)
	if _, err := reg.VHost(ctx, proxy.VHostSpec{Host: "keep.test", To: "10.77.233.2", Port: 80}, proxy.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	g, _ := fm.Guest(ctx, "keep")
	if err := g.Destroy(ctx, true); err == nil || !strings.Contains(err.Error(), "stays defined") {
		t.Errorf("destroy with an unremovable disk: %v", err)
	}
	if _, err := fm.Get("keep"); err != nil {
		t.Errorf("the guest was forgotten: %v", err)
	}
	exec.Command("umount", ro).Run()
	// A route to the guest by name goes with it; one to an address stays.
	tab, _ := proxy.LoadTable(reg.Path())
	tab.VHosts = append(tab.VHosts, proxy.VHost{Host: "keep.farm.test", To: "keep", Guest: true, Addr: "10.77.233.2", Port: 80})
	b, _ := json.Marshal(tab)
	os.WriteFile(reg.Path(), b, 0o644)
	if err := g.Destroy(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(disk); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("disk after destroy{disk = true}: %v", err)
	}
	tab, _ = proxy.LoadTable(reg.Path())
	if len(tab.VHosts) != 1 || tab.VHosts[0].Host != "keep.test" {
		t.Errorf("routes after destroy: %+v", tab.VHosts)
	}
}
