//go:build linux

package ops_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
)

// TestMigrateQemuLive: a running qemu guest with a counting shell loop
// (its counter in a tmpfs) moves live to another tinyfarm host (the
// network namespace of TestMigrateNetns with its own dropbear and state
// dir). The counter goes on there from where it was (the state moved,
// the guest did not reboot: a reboot would lose the tmpfs), the source
// QEMU is gone, the guest is no longer defined here; the downtime is
// measured and logged. The far tinyfarm runs on this machine, so the
// kernel and initrd are at the same paths there (the definition carries
// them). The far farm has its own key: reading the counter there over
// SSH proves the guest was made to accept it. With TINYFARM_BENCH set it
// also migrates the same guest offline (the anchor) and prints bench TSV
// rows.
func TestMigrateQemuLive(t *testing.T) {
	rel := guesttest.NeedVM(t)
	ctx := context.Background()
	bin := guesttest.BuildTinyfarm(t)
	remote, farState := guesttest.FarHost(t, bin)
	far := farm.New(farState, farm.Options{Drivers: farm.DefaultDrivers()})
	t.Cleanup(func() {
		if g, err := far.Guest(context.Background(), "live"); err == nil {
			g.Destroy(context.Background(), false)
		}
	})
	state := t.TempDir()
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers()})
	disk := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	def := farm.Definition{Name: "live", Driver: "qemu", Disk: disk.Path, MemBytes: 160 << 20, CPUs: 1,
		Kernel: rel.Vmlinux, Initrds: []string{rel.ModulesInitrd}, HostKey: disk.HostKey, User: "root"}
	if _, err := fm.Define(def, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	g, _ := fm.Guest(ctx, "live")
	t.Cleanup(func() { g.Destroy(context.Background(), false) })
	if _, err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitReady(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	guesttest.MustExec(t, g, guesttest.CounterLoop)
	time.Sleep(300 * time.Millisecond)
	st, err := g.Status(ctx)
	if err != nil || st.PID == 0 {
		t.Fatalf("status: %+v %v", st, err)
	}
	srcPID := st.PID
	before := guesttest.Counter(t, g)

	farDisk := filepath.Join(farState, "disks", "live.img")
	// Refused before copying: a guest with a share (QEMU will not
	// migrate a mounted 9p share).
	if _, err := g.Share(ctx, farm.ShareOptions{HostPath: t.TempDir(), GuestPath: "/mnt/s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.Migrate(ctx, g, remote, ops.MigrateOptions{Live: true}); !errors.Is(err, driver.ErrUnsupported) || !strings.Contains(err.Error(), "share") {
		t.Errorf("live migration of a guest with a share: %v, want unsupported naming the share", err)
	}
	if _, err := os.Stat(farDisk); err == nil {
		t.Error("a refused live migration copied the disk there")
	}
	if _, err := g.Unshare(ctx, "/mnt/s", farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	// Failing after the copy (the far side gives the state no time to
	// load): the guest runs on here, nothing is left there.
	if _, err := ops.Migrate(ctx, g, remote, ops.MigrateOptions{Live: true, Timeout: time.Millisecond}); err == nil {
		t.Fatal("a live migration with no time to load there succeeded")
	} else {
		t.Logf("failed live migration: %v", err)
	}
	if _, err := os.Stat(farDisk); err == nil {
		t.Error("a failed live migration left its disk copy there")
	}
	if _, err := far.Get("live"); err == nil {
		t.Error("a failed live migration left the guest defined there")
	}
	if !g.Running(ctx) {
		t.Fatal("a failed live migration stopped the guest here")
	}
	if a, b := guesttest.Counter(t, g), guesttest.Counter(t, g); b < a || a < before {
		t.Errorf("counter after a failed live migration: %d, %d (before %d)", a, b, before)
	}

	res, err := ops.Migrate(ctx, g, remote, ops.MigrateOptions{Live: true, Timeout: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("live migrate: downtime %v (QEMU's own figure %v), total %v; disk %d bytes sent (%d while running, %d in the pause) in %d of %d chunks; state stream %d bytes (RAM %d); there: %s",
		res.Downtime, res.QEMUDowntime, res.Duration, res.BytesSent, res.PreCopySent, res.DeltaSent, res.ChunksSent, res.Chunks, res.StateBytes, res.RAMBytes, res.State)
	if !res.Live || res.State != "running" || res.SHA256 == "" || res.Downtime <= 0 {
		t.Errorf("result: %+v", res)
	}
	// The source QEMU was started by this test process: its exit is
	// reaped by the Start that spawned it, a moment after Stop saw it end.
	gone := false
	for i := 0; i < 100 && !gone; i++ {
		gone = errors.Is(syscall.Kill(srcPID, 0), syscall.ESRCH)
		if !gone {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !gone {
		t.Errorf("the source QEMU (pid %d) still exists 5s after the move", srcPID)
	}
	if _, err := fm.Get("live"); !errors.Is(err, farm.ErrNotFound) {
		t.Errorf("still defined here after the move: %v", err)
	}
	fg, err := far.Guest(ctx, "live")
	if err != nil {
		t.Fatal(err)
	}
	if !fg.Running(ctx) {
		t.Fatal("not running there")
	}
	n1, n2, err := guesttest.FarCounter(fg, 500*time.Millisecond)
	if err != nil {
		t.Fatalf("the counter there: %v", err)
	}
	t.Logf("counter: %d here before, %d then %d there", before, n1, n2)
	if n1 < before || n2 <= n1 {
		t.Errorf("counter did not go on there: %d before, %d then %d after", before, n1, n2)
	}

	if os.Getenv("TINYFARM_BENCH") == "" {
		return
	}
	// The anchor: the same guest, running here again, migrated offline
	// (stop, disk delta, boot there) to an empty far disk, as the live
	// run started from.
	if err := fg.Destroy(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := fm.Define(def, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	g, _ = fm.Guest(ctx, "live")
	if _, err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitReady(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	off, err := ops.Migrate(ctx, g, remote, ops.MigrateOptions{Timeout: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("offline migrate: downtime %v, total %v", off.Downtime, off.Duration)
	fmt.Printf("live migrate qemu downtime (s)\t%.3f\toffline migrate\t%.3f\t%.3f\n", res.Downtime.Seconds(), off.Downtime.Seconds(), res.Downtime.Seconds()/off.Downtime.Seconds())
	fmt.Printf("live migrate qemu total (s)\t%.2f\toffline migrate\t%.2f\t%.2f\n", res.Duration.Seconds(), off.Duration.Seconds(), res.Duration.Seconds()/off.Duration.Seconds())
}

// TestMigrateQemuLiveBridge: a VM on the farm bridge moves live to a far
// host (a network namespace) whose farm has another subnet, as every
// host of a cluster has. Refused before anything is copied while a guest
// there has the VM's address. Once free, the move keeps the VM's address
// and MAC (they are in its memory) as a kept address there: the far
// bridge answers for the VM's old gateway (a /32) and routes its address
// (a /32 route); the far side checked an SSH handshake with the pinned
// key at that address before the source let go, and the counter goes on
// there, read over SSH at that address from inside the far namespace;
// its DHCP renewal (to its old gateway) is acked there. Stopped there, the bridge keeps nothing of it; started again there, it
// boots with the same address (the far DHCP server answers it as its old
// farm did) and answers SSH at it.
func TestMigrateQemuLiveBridge(t *testing.T) {
	guesttest.NeedVM(t)
	ctx := context.Background()
	const farBridge, farSubnet = "tftest8f", "10.77.247.0/24"
	bin := guesttest.BuildTinyfarm(t)
	remote, farState := guesttest.FarHost(t, bin)
	os.MkdirAll(farState, 0o700)
	if err := os.WriteFile(filepath.Join(farState, "network.json"), []byte(`{"bridge":"`+farBridge+`","subnet":"`+farSubnet+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	far := farm.New(farState, farm.Options{Drivers: farm.DefaultDrivers()})
	state := t.TempDir()
	t.Cleanup(func() {
		if g, err := far.Guest(context.Background(), "brlive"); err == nil {
			guesttest.InNetns(guesttest.MigNS, func() error { return g.Destroy(context.Background(), false) })
		}
		// The DHCP servers the two farms started (by pid, each its own).
		guesttest.KillDHCP(farState, farBridge)
		guesttest.KillDHCP(state, guesttest.OpsBridge)
	})
	fm := guesttest.OpsFarm(t, state)
	g, _ := guesttest.QemuGuest(t, fm, state, farm.Definition{Name: "brlive", Net: "bridge", MemBytes: 160 << 20})
	guesttest.MustExec(t, g, guesttest.CounterLoop)
	before := guesttest.Counter(t, g)
	farDisk := filepath.Join(farState, "disks", "brlive.img")
	ip, mac := g.Def.IP, g.Def.MAC
	addr, _, _ := strings.Cut(ip, "/")
	gw := fm.Gateway()

	// A guest there has the VM's address: refused, nothing copied.
	squat := farm.Definition{Name: "squat", Driver: "qemu", Kernel: g.Def.Kernel, Disk: g.Def.Disk, DiskRO: true, MemBytes: 64 << 20, Net: "bridge", IP: ip, Gateway: gw}
	if _, err := far.Define(squat, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := ops.Migrate(ctx, g, remote, ops.MigrateOptions{Live: true, Timeout: 90 * time.Second})
	if !errors.Is(err, driver.ErrUnsupported) || !strings.Contains(err.Error(), "guest squat's") {
		t.Errorf("live move of a bridged VM whose address a guest there has: %v, want unsupported naming that guest", err)
	} else {
		t.Logf("refused: %v", err)
	}
	if _, err := os.Stat(farDisk); err == nil {
		t.Error("a refused live migration copied the disk there")
	}
	if !g.Running(ctx) {
		t.Fatal("a refused live migration stopped the guest")
	}
	sg, _ := far.Guest(ctx, "squat")
	if err := sg.Destroy(ctx, false); err != nil {
		t.Fatal(err)
	}

	res, err := ops.Migrate(ctx, g, remote, ops.MigrateOptions{Live: true, Timeout: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("live migrate on the bridge to another subnet: downtime %v, total %v; there: %s at %s", res.Downtime, res.Duration, res.State, res.IP)
	if res.IP != addr {
		t.Errorf("address there %s, want the VM's own %s", res.IP, ip)
	}
	far = farm.New(farState, farm.Options{Drivers: farm.DefaultDrivers()})
	fg, err := far.Guest(ctx, "brlive")
	if err != nil {
		t.Fatal(err)
	}
	if fg.Def.IP != ip || fg.Def.MAC != mac || fg.Def.Gateway != gw {
		t.Errorf("defined there with %s %s gateway %q, want %s %s gateway %s", fg.Def.IP, fg.Def.MAC, fg.Def.Gateway, ip, mac, gw)
	}
	kept := func() (addrs, routes string) {
		a, _ := exec.Command("ip", "-n", guesttest.MigNS, "-4", "-o", "addr", "show", "dev", farBridge).Output()
		r, _ := exec.Command("ip", "-n", guesttest.MigNS, "-4", "route", "show", "dev", farBridge).Output()
		return string(a), string(r)
	}
	a, r := kept()
	t.Logf("far bridge:\n%s%s", a, r)
	if !strings.Contains(a, gw+"/32") || !strings.Contains(r, addr+" proto 116 scope link src "+gw) {
		t.Errorf("far bridge: want %s/32 and a route to %s from it", gw, addr)
	}
	n1, n2, err := guesttest.FarCounter(fg, 500*time.Millisecond)
	if err != nil {
		t.Fatalf("the counter there, over SSH at %s: %v", ip, err)
	}
	if n1 < before || n2 <= n1 {
		t.Errorf("counter did not go on there: %d before, %d then %d after", before, n1, n2)
	}
	// Its lease renewed there (udhcpc renews on SIGUSR1): the request
	// goes to its old gateway, which the far bridge holds, and the far
	// DHCP server acks its kept address.
	dhcpLog := filepath.Join(farState, "guests", ".dhcp-"+farBridge+".log")
	err = guesttest.InNetns(guesttest.MigNS, func() error {
		_, err := fg.Exec(ctx, []string{"sh", "-c", "killall -USR1 udhcpc"}, driver.ExecOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	acked := false
	for i := 0; i < 100 && !acked; i++ {
		b, _ := os.ReadFile(dhcpLog)
		acked = strings.Contains(string(b), "REQUEST "+mac+" -> ACK "+addr)
		if !acked {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !acked {
		b, _ := os.ReadFile(dhcpLog)
		t.Errorf("no renewal of %s acked there:\n%s", addr, b)
	}

	// Stopped there: nothing of the kept address is left on the bridge.
	// Started again: it boots with the same address, from the far DHCP
	// server, and answers SSH at it.
	if err := guesttest.InNetns(guesttest.MigNS, func() error { _, err := fg.Stop(ctx, 10*time.Second); return err }); err != nil {
		t.Fatal(err)
	}
	if a, r := kept(); strings.Contains(a, gw) || strings.Contains(r, addr) {
		t.Errorf("far bridge after the guest stopped:\n%s%s", a, r)
	}
	err = guesttest.InNetns(guesttest.MigNS, func() error {
		if _, err := fg.Start(ctx); err != nil {
			return err
		}
		if err := fg.WaitReady(ctx, 90*time.Second); err != nil {
			return err
		}
		r, err := fg.Exec(ctx, []string{"sh", "-c", "ip -4 -o addr show dev eth0; ip route"}, driver.ExecOptions{})
		if err == nil {
			t.Logf("restarted there:\n%s", r.Stdout)
			if !strings.Contains(string(r.Stdout), ip) || !strings.Contains(string(r.Stdout), "default via "+gw) {
				t.Errorf("restarted there: want %s, default via %s", ip, gw)
			}
		}
		return err
	})
	if err != nil {
		t.Fatalf("restart there: %v", err)
	}
}
