//go:build linux

package guesttest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
)

// Main runs a guest package's tests: the test binary doubles as the ns
// monitor and the farm's DHCP server (ns.Main, farmnet.Main), and the
// bridges named are deleted afterwards.
func Main(m *testing.M, bridges ...string) {
	ns.Main()
	farmnet.Main()
	code := m.Run()
	for _, b := range bridges {
		ns.DeleteBridge(b)
	}
	os.Exit(code)
}

// The operations tests have a bridge and subnet of their own.
const (
	OpsBridge = "tftest8"
	OpsSubnet = "10.77.248.0/24"
)

// NeedVM skips a test that boots a VM under TCG: in -short mode, when not
// root, without QEMU (scripts/deps.sh installs it) or without the mini
// release (make minicore), which it returns.
func NeedVM(t *testing.T) *minicore.Release {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM under TCG")
	}
	NeedRoot(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed (scripts/deps.sh)")
	}
	return minicore.Require(t)
}

// SSHDisk builds a guest disk that root can log in to over SSH with the
// farm key of state; it returns the disk's path and its pinned host key.
func SSHDisk(t *testing.T, state string) (string, string) {
	d := BuildDisk(t, Options{SSH: true, StateDir: state})
	return d.Path, d.HostKey
}

// KillDHCP ends the farm DHCP server that the farm of state started on
// bridge, by its pid (the server outlives the test process otherwise).
func KillDHCP(state, bridge string) {
	if pid := farmnet.DHCPPID(filepath.Join(state, "guests"), bridge); pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// MustExec runs script in guest g with /bin/sh and returns its trimmed
// stdout; an error or a non-zero exit fails the test.
func MustExec(t *testing.T, g *farm.Guest, script string) string {
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

// CounterLoop starts a shell loop in the guest that counts in a tmpfs
// (lost on a reboot, kept by a checkpoint or a live move). Each value is
// written to a temporary file and renamed over /run/tf/n, so a reader
// never sees the file between truncation and write.
// The first value is written before the loop goes to the background, so
// a read right after this command never finds the file missing.
const CounterLoop = "mkdir -p /run/tf && mount -t tmpfs tmpfs /run/tf && echo 0 > /run/tf/n && " +
	"(i=0; while :; do i=$((i+1)); echo $i > /run/tf/n.new; mv /run/tf/n.new /run/tf/n; sleep 0.05; done) </dev/null >/dev/null 2>&1 &"

// Counter reads the counter of CounterLoop. Right after a bridged VM's
// first boot, CI saw one read (in about one run of the package in two,
// only after TestTour) find no /run/tf/n although the command that wrote
// it had succeeded; the cause is not known (see the session notes), so a
// missing file is read again for up to 10 s, and a file that stays
// missing fails with the guest's mounts.
func Counter(t *testing.T, g *farm.Guest) int {
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
			t.Fatalf("%s: no counter: %v %s\n%s", g.Def.Name, err, r.Stderr, MustExec(t, g, "grep /run /proc/mounts; ls -la /run"))
		}
		t.Logf("%s: counter not readable yet: %v %s", g.Def.Name, err, r.Stderr)
		time.Sleep(200 * time.Millisecond)
	}
}

// OpsFarm is a farm in state on the operations tests' bridge (OpsBridge,
// deleted at the end of the test) with the registered drivers.
func OpsFarm(t *testing.T, state string) *farm.Farm {
	t.Cleanup(func() { ns.DeleteBridge(OpsBridge) })
	return farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: OpsBridge, Subnet: OpsSubnet})
}

// ScratchBtrfs makes a btrfs filesystem in a sparse file, loop-mounts it
// and returns the mount point; everything goes in t.Cleanup.
func ScratchBtrfs(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		t.Skip("mkfs.btrfs not installed (scripts/deps.sh: btrfs-progs)")
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "btrfs.img"), filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if err := os.Truncate(img, 0); err != nil {
		f, _ := os.Create(img)
		f.Close()
	}
	if err := os.Truncate(img, 512<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.btrfs", "-q", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.btrfs: %v\n%s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a btrfs scratch filesystem here: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// CpNoReflink copies src to dst sparsely without sharing blocks (a copy
// that unify has something to share with).
func CpNoReflink(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "--sparse=always", "--reflink=never", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
}
