//go:build linux

package colinux_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/image"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// The far "host" of the migration tests: a network namespace joined to
// this one by a veth pair in 10.77.246.0/30 (.1 here, .2 there).
const (
	migNS     = "tfmig9"
	migVethA  = "tfmig9a"
	migVethB  = "tfmig9b"
	migHereIP = "10.77.246.1"
	migFarIP  = "10.77.246.2"
)

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// buildTinyfarm builds the tinyfarm binary the far host runs.
func buildTinyfarm(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tinyfarm")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/tinyfarm/tinyfarm/cmd/tinyfarm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build tinyfarm: %v\n%s", err, out)
	}
	return bin
}

// farHost makes the far host: the namespace, the veth pair, a dropbear on
// the far address that lets the returned key log in as root (with a home
// of its own: /etc/passwd bind-mounted in a private mount namespace), and a state dir. Everything goes in t.Cleanup.
func farHost(t *testing.T, bin string) (colinux.Remote, string) {
	t.Helper()
	dropbear, err := exec.LookPath("dropbear")
	if err != nil {
		t.Skip("dropbear not installed")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed")
	}
	exec.Command("ip", "netns", "del", migNS).Run() // a leftover of a killed run
	exec.Command("ip", "link", "del", migVethA).Run()
	run(t, "ip", "netns", "add", migNS)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", migNS).Run()
		exec.Command("ip", "link", "del", migVethA).Run()
	})
	run(t, "ip", "link", "add", migVethA, "type", "veth", "peer", "name", migVethB, "netns", migNS)
	run(t, "ip", "addr", "add", migHereIP+"/30", "dev", migVethA)
	run(t, "ip", "link", "set", migVethA, "up")
	run(t, "ip", "-n", migNS, "addr", "add", migFarIP+"/30", "dev", migVethB)
	run(t, "ip", "-n", migNS, "link", "set", migVethB, "up")
	run(t, "ip", "-n", migNS, "link", "set", "lo", "up")

	dir := t.TempDir()
	client, _ := ssh.GenerateHostKey()
	server, _ := ssh.GenerateHostKey()
	pem, _ := client.OpenSSH()
	key := filepath.Join(dir, "id_ed25519")
	os.WriteFile(key, pem, 0o600)
	home := filepath.Join(dir, "home")
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	os.Chmod(home, 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "authorized_keys"), []byte(client.AuthorizedKey()+"\n"), 0o600)
	hostKey := filepath.Join(dir, "host_key")
	os.WriteFile(hostKey, server.Dropbear(), 0o600)
	passwd, _ := os.ReadFile("/etc/passwd")
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(string(passwd), "\n"), "\n") {
		if f := strings.Split(l, ":"); len(f) == 7 && f[0] == "root" {
			f[5], f[6] = home, "/bin/sh"
			l = strings.Join(f, ":")
		}
		lines = append(lines, l)
	}
	fake := filepath.Join(dir, "passwd")
	os.WriteFile(fake, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	// nsenter + unshare -m rather than ip netns exec, which remounts /sys
	// (hiding the cgroup tree the far tinyfarm needs).
	cmd := exec.Command("nsenter", "--net=/run/netns/"+migNS, "unshare", "-m", "--propagation", "slave", "/bin/sh", "-c", `mount --bind "$1" /etc/passwd && shift && exec "$@"`, "sh", fake,
		dropbear, "-F", "-E", "-s", "-p", migFarIP+":22", "-r", hostKey, "-P", filepath.Join(dir, "dropbear.pid"))
	log := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // only the dropbear this test started
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", migFarIP+":22", 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if i > 50 {
			t.Fatalf("far dropbear does not listen: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	state := filepath.Join(dir, "state")
	return colinux.Remote{Name: "far", Address: migFarIP, Key: key, HostKey: server.AuthorizedKey(), StateDir: state, Binary: bin}, state
}

// TestMigrateNetns: a running ns guest moves to another tinyfarm host
// (a network namespace with its own dropbear and state dir). An
// unreachable host fails cleanly with the guest untouched; the real move
// resumes a half-copied disk, verifies it, starts the guest there and
// only then forgets it here; the data written before is there.
func TestMigrateNetns(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	bin := buildTinyfarm(t)
	remote, farState := farHost(t, bin)
	far := colinux.New(farState, colinux.Options{Drivers: colinux.DefaultDrivers()})
	t.Cleanup(func() {
		for _, name := range []string{"mover", "cold"} {
			if g, err := far.Guest(context.Background(), name); err == nil {
				g.Destroy(context.Background(), false)
			}
		}
	})
	state := t.TempDir()
	t.Cleanup(func() { ns.DeleteBridge(unifyBridge) })
	farm := colinux.New(state, colinux.Options{Drivers: colinux.DefaultDrivers(), Bridge: unifyBridge, Subnet: unifySubnet})
	disk := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	if _, err := farm.Define(colinux.Definition{Name: "mover", Driver: "ns", Disk: disk.Path, MemBytes: 64 << 20, HostKey: disk.HostKey, User: "root"}, colinux.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	g, _ := farm.Guest(ctx, "mover")
	t.Cleanup(func() { g.Destroy(context.Background(), false) })
	if _, err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	mustExec(t, g, "echo moved-with-me > /root/data.txt; sync")

	// Unreachable: nothing listens on port 1 there.
	bad := remote
	bad.Port, bad.Timeout = 1, 2*time.Second
	if _, err := g.Migrate(ctx, bad, colinux.MigrateOptions{}); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("migrate to an unreachable host: %v", err)
	} else {
		t.Logf("unreachable: %v", err)
	}
	if !g.Running(ctx) {
		t.Fatal("a failed migration stopped the guest")
	}
	if _, err := farm.Get("mover"); err != nil {
		t.Fatalf("a failed migration removed the guest: %v", err)
	}
	// Live: unsupported, says why, guest untouched.
	if _, err := g.Migrate(ctx, remote, colinux.MigrateOptions{Live: true}); !errors.Is(err, driver.ErrUnsupported) {
		t.Errorf("live migration of an ns guest: %v", err)
	}

	// A half-done earlier copy there: the first half of the disk.
	farDisk := filepath.Join(farState, "disks", "mover.img")
	os.MkdirAll(filepath.Dir(farDisk), 0o700)
	run(t, "cp", "--sparse=always", disk.Path, farDisk)
	size := fileSize(t, disk.Path)
	os.Truncate(farDisk, size/2)

	res, err := g.Migrate(ctx, remote, colinux.MigrateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("migrate: %d bytes sent (%d while running) in %d of %d chunks, %v, down %v, there: %s %s",
		res.BytesSent, res.PreCopySent, res.ChunksSent, res.Chunks, res.Duration, res.Downtime, res.State, res.IP)
	if res.State != "running" || res.SHA256 == "" {
		t.Errorf("result: %+v", res)
	}
	if _, err := farm.Get("mover"); !errors.Is(err, colinux.ErrNotFound) {
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
	if got := mustExec(t, fg, "cat /root/data.txt"); got != "moved-with-me" {
		t.Errorf("data there: %q", got)
	}
	// The far farm has its own key, which the guest now accepts: the far
	// side's SSH handshake with it succeeds (from inside its namespace).
	if err := inNetns(migNS, func() error { return fg.WaitReady(ctx, 30*time.Second) }); err != nil {
		t.Errorf("the far farm over SSH to the moved guest: %v", err)
	}
	// And this farm's key is gone from the guest: this host gave it away.
	hereKey, err := os.ReadFile(filepath.Join(state, ssh.FarmKeyFile+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	hereBlob := strings.Fields(string(hereKey))[1]
	if keys := mustExec(t, fg, "cat /root/.ssh/authorized_keys"); !res.KeyRevoked || strings.Contains(keys, hereBlob) {
		t.Errorf("the moved guest still accepts the source farm's key (revoked %v):\n%s", res.KeyRevoked, keys)
	}
	// A stopped guest: the far key goes into its disk before the copy.
	cold := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	if _, err := farm.Define(colinux.Definition{Name: "cold", Driver: "ns", Disk: cold.Path, MemBytes: 64 << 20, HostKey: cold.HostKey, User: "root"}, colinux.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	cg, _ := farm.Guest(ctx, "cold")
	// A share whose host directory the far host lacks: refused before
	// anything is copied.
	gone := filepath.Join(t.TempDir(), "gone")
	os.Mkdir(gone, 0o755)
	if _, err := cg.Share(ctx, colinux.ShareOptions{HostPath: gone, GuestPath: "/mnt/gone"}); err != nil {
		t.Fatal(err)
	}
	os.Remove(gone)
	if _, err := cg.Migrate(ctx, remote, colinux.MigrateOptions{}); !errors.Is(err, colinux.ErrInvalid) || !strings.Contains(err.Error(), gone) {
		t.Errorf("migrate with a share missing there: %v, want invalid naming %s", err, gone)
	}
	if _, err := os.Stat(filepath.Join(farState, "disks", "cold.img")); err == nil {
		t.Error("a refused migration copied the disk")
	}
	if _, err := cg.Unshare(ctx, "/mnt/gone", colinux.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cg.Migrate(ctx, remote, colinux.MigrateOptions{}); err != nil {
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
	if _, err := farm.Define(colinux.Definition{Name: "mover", Driver: "ns", Disk: disk.Path, MemBytes: 64 << 20}, colinux.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	g2, _ := farm.Guest(ctx, "mover")
	if _, err := g2.Migrate(ctx, remote, colinux.MigrateOptions{}); !errors.Is(err, colinux.ErrExists) {
		t.Errorf("migrate onto an existing far guest: %v", err)
	}
	if _, err := farm.Get("mover"); err != nil {
		t.Errorf("a refused migration removed the guest: %v", err)
	}
}

// TestMigrateThroughput compares a cold guest's fresh migration with scp
// of the same disk over the same dropbear. Prints bench TSV rows.
func TestMigrateThroughput(t *testing.T) {
	if os.Getenv("TINYFARM_BENCH") == "" {
		t.Skip("set TINYFARM_BENCH=1 (bench/migrate.sh)")
	}
	needRoot(t)
	if _, err := exec.LookPath("scp"); err != nil {
		t.Skip("scp not installed")
	}
	ctx := context.Background()
	bin := buildTinyfarm(t)
	remote, farState := farHost(t, bin)
	far := colinux.New(farState, colinux.Options{Drivers: colinux.DefaultDrivers()})
	t.Cleanup(func() {
		if g, err := far.Guest(context.Background(), "cold"); err == nil {
			g.Destroy(context.Background(), false)
		}
	})
	farm := colinux.New(t.TempDir(), colinux.Options{Drivers: colinux.DefaultDrivers(), Bridge: unifyBridge, Subnet: unifySubnet})
	disk := guesttest.BuildDisk(t, guesttest.Options{Extensions: []string{"dropbear"}, Size: "256M"})
	// Fill some of it with incompressible data, as a used disk would be.
	run(t, "sh", "-c", "dd if=/dev/urandom of="+disk.Path+" bs=1M seek=100 count=64 conv=notrunc 2>/dev/null")
	if _, err := farm.Define(colinux.Definition{Name: "cold", Driver: "ns", Disk: disk.Path, MemBytes: 64 << 20}, colinux.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	g, _ := farm.Guest(ctx, "cold")
	t.Cleanup(func() { g.Destroy(context.Background(), false) })
	res, err := g.Migrate(ctx, remote, colinux.MigrateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(known, []byte(migFarIP+" "+remote.HostKey+"\n"), 0o600)
	t0 := time.Now()
	run(t, "scp", "-O", "-q", "-i", remote.Key, "-o", "UserKnownHostsFile="+known, "-o", "BatchMode=yes",
		disk.Path, "root@"+migFarIP+":"+filepath.Join(farState, "scp.img"))
	scp := time.Since(t0)
	size := fileSize(t, disk.Path)
	mbps := func(d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }
	fmt.Printf("migrate %dM disk (s)\t%.2f\tscp -O\t%.2f\t%.2f\n", size>>20, res.Duration.Seconds(), scp.Seconds(), res.Duration.Seconds()/scp.Seconds())
	fmt.Printf("migrate disk MiB/s\t%.1f\tscp -O\t%.1f\t%.2f\n", mbps(res.Duration), mbps(scp), mbps(res.Duration)/mbps(scp))
	t.Logf("migrate sent %d of %d bytes (%d/%d chunks) in %v; scp %v", res.BytesSent, size, res.ChunksSent, res.Chunks, res.Duration, scp)
}
