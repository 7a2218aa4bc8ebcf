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
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
	"github.com/tinyfarm/tinyfarm/stdlib/image"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// TestMigrateNetns: a running ns guest moves to another tinyfarm host
// (a network namespace with its own dropbear and state dir). An
// unreachable host fails cleanly with the guest untouched; the real move
// resumes a half-copied disk, verifies it, starts the guest there and
// only then forgets it here; the data written before is there.
func TestMigrateNetns(t *testing.T) {
	guesttest.NeedRoot(t)
	ctx := context.Background()
	bin := guesttest.BuildTinyfarm(t)
	remote, farState := guesttest.FarHost(t, bin)
	far := farm.New(farState, farm.Options{Drivers: farm.DefaultDrivers()})
	t.Cleanup(func() {
		for _, name := range []string{"mover", "cold"} {
			if g, err := far.Guest(context.Background(), name); err == nil {
				g.Destroy(context.Background(), false)
			}
		}
	})
	state := t.TempDir()
	t.Cleanup(func() { ns.DeleteBridge(unifyBridge) })
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: unifyBridge, Subnet: unifySubnet})
	disk := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	if _, err := fm.Define(farm.Definition{Name: "mover", Driver: "ns", Disk: disk.Path, MemBytes: 64 << 20, HostKey: disk.HostKey, User: "root"}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	g, _ := fm.Guest(ctx, "mover")
	t.Cleanup(func() { g.Destroy(context.Background(), false) })
	if _, err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	guesttest.MustExec(t, g, "echo moved-with-me > /root/data.txt; sync")

	// Unreachable: nothing listens on port 1 there.
	bad := remote
	bad.Port, bad.Timeout = 1, 2*time.Second
	if _, err := ops.Migrate(ctx, g, bad, ops.MigrateOptions{}); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("migrate to an unreachable host: %v", err)
	} else {
		t.Logf("unreachable: %v", err)
	}
	if !g.Running(ctx) {
		t.Fatal("a failed migration stopped the guest")
	}
	if _, err := fm.Get("mover"); err != nil {
		t.Fatalf("a failed migration removed the guest: %v", err)
	}
	// Live: unsupported, says why, guest untouched.
	if _, err := ops.Migrate(ctx, g, remote, ops.MigrateOptions{Live: true}); !errors.Is(err, driver.ErrUnsupported) {
		t.Errorf("live migration of an ns guest: %v", err)
	}

	// A half-done earlier copy there: the first half of the disk.
	farDisk := filepath.Join(farState, "disks", "mover.img")
	os.MkdirAll(filepath.Dir(farDisk), 0o700)
	guesttest.Run(t, "cp", "--sparse=always", disk.Path, farDisk)
	size := fileSize(t, disk.Path)
	os.Truncate(farDisk, size/2)

	res, err := ops.Migrate(ctx, g, remote, ops.MigrateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("migrate: %d bytes sent (%d while running) in %d of %d chunks, %v, down %v, there: %s %s",
		res.BytesSent, res.PreCopySent, res.ChunksSent, res.Chunks, res.Duration, res.Downtime, res.State, res.IP)
	if res.State != "running" || res.SHA256 == "" {
		t.Errorf("result: %+v", res)
	}
	if _, err := fm.Get("mover"); !errors.Is(err, farm.ErrNotFound) {
		t.Errorf("still defined here after the move: %v", err)
	}
	if _, err := os.Stat(disk.Path); err != nil {
		t.Errorf("the local disk was removed without disk=true: %v", err)
	}
	fg, err := far.Guest(ctx, "mover")
	if err != nil {
		t.Fatal(err)
	}
	if !fg.Running(ctx) {
		t.Fatal("not running there")
	}
	if got := guesttest.MustExec(t, fg, "cat /root/data.txt"); got != "moved-with-me" {
		t.Errorf("data there: %q", got)
	}
	// The far farm has its own key, which the guest now accepts: the far
	// side's SSH handshake with it succeeds (from inside its namespace).
	if err := guesttest.InNetns(guesttest.MigNS, func() error { return fg.WaitReady(ctx, 30*time.Second) }); err != nil {
		t.Errorf("the far farm over SSH to the moved guest: %v", err)
	}
	// And this farm's key is gone from the guest: this host gave it away.
	hereKey, err := os.ReadFile(filepath.Join(state, ssh.FarmKeyFile+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	hereBlob := strings.Fields(string(hereKey))[1]
	if keys := guesttest.MustExec(t, fg, "cat /root/.ssh/authorized_keys"); !res.KeyRevoked || strings.Contains(keys, hereBlob) {
		t.Errorf("the moved guest still accepts the source farm's key (revoked %v):\n%s", res.KeyRevoked, keys)
	}
	// A stopped guest: the far key goes into its disk before the copy.
	cold := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	if _, err := fm.Define(farm.Definition{Name: "cold", Driver: "ns", Disk: cold.Path, MemBytes: 64 << 20, HostKey: cold.HostKey, User: "root"}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	cg, _ := fm.Guest(ctx, "cold")
	// A share whose host directory the far host lacks: refused before
	// anything is copied.
	gone := filepath.Join(t.TempDir(), "gone")
	os.Mkdir(gone, 0o755)
	if _, err := cg.Share(ctx, farm.ShareOptions{HostPath: gone, GuestPath: "/mnt/gone"}); err != nil {
		t.Fatal(err)
	}
	os.Remove(gone)
	if _, err := ops.Migrate(ctx, cg, remote, ops.MigrateOptions{}); !errors.Is(err, farm.ErrInvalid) || !strings.Contains(err.Error(), gone) {
		t.Errorf("migrate with a share missing there: %v, want invalid naming %s", err, gone)
	}
	if _, err := os.Stat(filepath.Join(farState, "disks", "cold.img")); err == nil {
		t.Error("a refused migration copied the disk")
	}
	if _, err := cg.Unshare(ctx, "/mnt/gone", farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.Migrate(ctx, cg, remote, ops.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	farKey, err := os.ReadFile(filepath.Join(farState, ssh.FarmKeyFile+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	var keys []byte
	if err := image.Edit(ctx, filepath.Join(farState, "disks", "cold.img"), func(tg target.Target) (err error) {
		keys, err = target.ReadFile(ctx, tg, "root/.ssh/authorized_keys")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(keys), strings.TrimSpace(string(farKey))) {
		t.Errorf("the far farm's key is not in the moved disk's authorized_keys:\n%s", keys)
	}
	if strings.Contains(string(keys), hereBlob) {
		t.Errorf("the source farm's key is still in the moved disk's authorized_keys:\n%s", keys)
	}
	// Migrating onto a name that exists there: refused before anything.
	if _, err := fm.Define(farm.Definition{Name: "mover", Driver: "ns", Disk: disk.Path, MemBytes: 64 << 20}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	g2, _ := fm.Guest(ctx, "mover")
	if _, err := ops.Migrate(ctx, g2, remote, ops.MigrateOptions{}); !errors.Is(err, farm.ErrExists) {
		t.Errorf("migrate onto an existing far guest: %v", err)
	}
	if _, err := fm.Get("mover"); err != nil {
		t.Errorf("a refused migration removed the guest: %v", err)
	}
}

// TestMigrateThroughput compares a cold guest's fresh migration with scp
// of the same disk over the same dropbear. Prints bench TSV rows.
func TestMigrateThroughput(t *testing.T) {
	if os.Getenv("TINYFARM_BENCH") == "" {
		t.Skip("set TINYFARM_BENCH=1 (bench/migrate.sh)")
	}
	guesttest.NeedRoot(t)
	if _, err := exec.LookPath("scp"); err != nil {
		t.Skip("scp not installed")
	}
	ctx := context.Background()
	bin := guesttest.BuildTinyfarm(t)
	remote, farState := guesttest.FarHost(t, bin)
	far := farm.New(farState, farm.Options{Drivers: farm.DefaultDrivers()})
	t.Cleanup(func() {
		if g, err := far.Guest(context.Background(), "cold"); err == nil {
			g.Destroy(context.Background(), false)
		}
	})
	fm := farm.New(t.TempDir(), farm.Options{Drivers: farm.DefaultDrivers(), Bridge: unifyBridge, Subnet: unifySubnet})
	disk := guesttest.BuildDisk(t, guesttest.Options{Extensions: []string{"dropbear"}, Size: "256M"})
	// Fill some of it with incompressible data, as a used disk would be.
	guesttest.Run(t, "sh", "-c", "dd if=/dev/urandom of="+disk.Path+" bs=1M seek=100 count=64 conv=notrunc 2>/dev/null")
	if _, err := fm.Define(farm.Definition{Name: "cold", Driver: "ns", Disk: disk.Path, MemBytes: 64 << 20}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	g, _ := fm.Guest(ctx, "cold")
	t.Cleanup(func() { g.Destroy(context.Background(), false) })
	res, err := ops.Migrate(ctx, g, remote, ops.MigrateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(known, []byte(guesttest.MigFarIP+" "+remote.HostKey+"\n"), 0o600)
	t0 := time.Now()
	guesttest.Run(t, "scp", "-O", "-q", "-i", remote.Key, "-o", "UserKnownHostsFile="+known, "-o", "BatchMode=yes",
		disk.Path, "root@"+guesttest.MigFarIP+":"+filepath.Join(farState, "scp.img"))
	scp := time.Since(t0)
	size := fileSize(t, disk.Path)
	mbps := func(d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }
	fmt.Printf("migrate %dM disk (s)\t%.2f\tscp -O\t%.2f\t%.2f\n", size>>20, res.Duration.Seconds(), scp.Seconds(), res.Duration.Seconds()/scp.Seconds())
	fmt.Printf("migrate disk MiB/s\t%.1f\tscp -O\t%.1f\t%.2f\n", mbps(res.Duration), mbps(scp), mbps(res.Duration)/mbps(scp))
	t.Logf("migrate sent %d of %d bytes (%d/%d chunks) in %v; scp %v", res.BytesSent, size, res.ChunksSent, res.Chunks, res.Duration, scp)
}
