//go:build linux

package ops_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
	"github.com/tinyfarm/tinyfarm/stdlib/image"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// The unify and migrate tests have a bridge and subnet of their own.
const (
	unifyBridge = "tftest9"
	unifySubnet = "10.77.247.0/24"
)

// fileSum is the sha256 of a file inside a stopped guest's disk.
// dfUsed is the used space of the file system at dir as df reports it,
// after a sync.
func dfUsed(t *testing.T, dir string) int64 {
	t.Helper()
	exec.Command("sync", "-f", dir).Run()
	out, err := exec.Command("df", "-B1", "--output=used", dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
	if err != nil {
		t.Fatalf("df: %q", out)
	}
	return n
}

func fileSum(t *testing.T, disk, name string) string {
	t.Helper()
	var sum string
	err := image.View(context.Background(), disk, func(tg target.Target) error {
		rc, err := tg.Open(context.Background(), name)
		if err != nil {
			return err
		}
		defer rc.Close()
		h := sha256.New()
		if _, err := io.Copy(h, rc); err != nil {
			return err
		}
		sum = fmt.Sprintf("%x", h.Sum(nil))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// TestUnifyBtrfs: two guests built from the same packages, their disks on
// a btrfs scratch filesystem. A dry run measures and changes nothing;
// unify shares the identical files' blocks; a second run saves nothing
// more; then a write in guest A leaves guest B's copy unchanged.
func TestUnifyBtrfs(t *testing.T) {
	guesttest.NeedRoot(t)
	ctx := context.Background()
	mnt := guesttest.ScratchBtrfs(t)
	state := t.TempDir()
	t.Cleanup(func() { ns.DeleteBridge(unifyBridge) })
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: unifyBridge, Subnet: unifySubnet})
	var disks []string
	for _, name := range []string{"ua", "ub"} {
		d := guesttest.BuildDisk(t, guesttest.Options{Extensions: []string{"dropbear"}})
		disk := filepath.Join(mnt, name+".img")
		guesttest.CpNoReflink(t, d.Path, disk)
		disks = append(disks, disk)
		if _, err := fm.Define(farm.Definition{Name: name, Driver: "ns", Disk: disk, MemBytes: 64 << 20}, farm.ChangeOptions{}); err != nil {
			t.Fatal(err)
		}
		g, _ := fm.Guest(ctx, name)
		t.Cleanup(func() { g.Destroy(context.Background(), false) })
	}
	used := func() string {
		out, _ := exec.Command("btrfs", "filesystem", "du", "-s", "--raw", disks[0], disks[1]).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	t.Logf("before:\n%s", used())

	dry, err := ops.Unify(ctx, fm, ops.UnifyOptions{Guests: []string{"ua", "ub"}, Check: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dry run: %+v", dry)
	if !dry.Supported || dry.Filesystem != "btrfs" || dry.Files == 0 || dry.BytesShared == 0 {
		t.Fatalf("dry run found nothing to share: %+v", dry)
	}
	if again, _ := ops.Unify(ctx, fm, ops.UnifyOptions{Guests: []string{"ua", "ub"}, Check: true}); again.BytesShared != dry.BytesShared || again.AlreadyShared != 0 {
		t.Errorf("a dry run changed something: second dry run %+v", again)
	}

	dfBefore := dfUsed(t, mnt)
	t0 := time.Now()
	res, err := ops.Unify(ctx, fm, ops.UnifyOptions{Guests: []string{"ua", "ub"}})
	if err != nil {
		t.Fatal(err)
	}
	dfFreed := dfBefore - dfUsed(t, mnt)
	t.Logf("unify in %v: %d files, %d bytes identical, %d newly shared, %d freed (df: %d), %d unaligned, %d differed",
		time.Since(t0), res.Files, res.Identical, res.BytesShared, res.BytesFreed, dfFreed, res.Unaligned, res.Differed)
	t.Logf("after:\n%s", used())
	// What it says it freed is what df sees (the scratch file system has
	// no other writer), and never more than it shared.
	if d := res.BytesFreed - dfFreed; d > 256<<10 || d < -256<<10 || res.BytesFreed > res.BytesShared {
		t.Errorf("unify reports %d bytes freed (%d shared); df says %d", res.BytesFreed, res.BytesShared, dfFreed)
	}
	if res.BytesShared != dry.BytesShared || res.Differed != 0 {
		t.Errorf("unify saved %d, the dry run predicted %d (differed %d)", res.BytesShared, dry.BytesShared, res.Differed)
	}
	second, err := ops.Unify(ctx, fm, ops.UnifyOptions{Guests: []string{"ua", "ub"}})
	if err != nil {
		t.Fatal(err)
	}
	if second.BytesShared != 0 || second.AlreadyShared != res.BytesShared+res.AlreadyShared {
		t.Errorf("second run: saved %d (want 0), already shared %d (want %d)", second.BytesShared, second.AlreadyShared, res.BytesShared)
	}
	for _, d := range disks {
		if out, err := exec.Command("e2fsck", "-fn", d).CombinedOutput(); err != nil {
			t.Errorf("e2fsck %s after unify: %v\n%s", d, err, out)
		}
	}

	// A write in guest A to a file whose blocks are now shared.
	const victim = "usr/local/sbin/dropbear"
	before := fileSum(t, disks[1], victim)
	if fileSum(t, disks[0], victim) != before {
		t.Fatalf("%s differs between the guests before the write", victim)
	}
	a, _ := fm.Guest(ctx, "ua")
	if _, err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	guesttest.MustExec(t, a, "printf 'written-by-guest-A' | dd of=/"+victim+" bs=1 seek=4096 conv=notrunc 2>/dev/null; sync")
	if _, err := a.Stop(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := fileSum(t, disks[0], victim); got == before {
		t.Errorf("guest A's write did not land in its own disk")
	}
	if got := fileSum(t, disks[1], victim); got != before {
		t.Errorf("guest A's write shows in guest B: %s -> %s", before, got)
	}
	// B boots and still has the unchanged file.
	b, _ := fm.Guest(ctx, "ub")
	if _, err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := guesttest.MustExec(t, b, "grep -c written-by-guest-A /"+victim+" || true"); got != "0" {
		t.Errorf("guest B sees guest A's write: %q", got)
	}
	// A running guest is skipped, with the reason.
	r, err := ops.Unify(ctx, fm, ops.UnifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Skipped["ub"], "running") || r.BytesShared != 0 {
		t.Errorf("unify with ub running: %+v", r)
	}
}

// TestUnifyUnsupportedExt4: on a filesystem that cannot share extents,
// unify reports what it could save, a real run fails as unsupported, and
// nothing changes.
func TestUnifyUnsupportedExt4(t *testing.T) {
	guesttest.NeedRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	if out, _ := exec.Command("stat", "-f", "-c", "%T", dir).Output(); !strings.Contains(string(out), "ext") {
		t.Skipf("temp dir is on %s, not ext4", out)
	}
	fm := farm.New(t.TempDir(), farm.Options{Drivers: farm.DefaultDrivers(), Bridge: unifyBridge, Subnet: unifySubnet})
	d := guesttest.BuildDisk(t, guesttest.Options{})
	for _, name := range []string{"ea", "eb"} {
		disk := filepath.Join(dir, name+".img")
		guesttest.CpNoReflink(t, d.Path, disk)
		if _, err := fm.Define(farm.Definition{Name: name, Driver: "ns", Disk: disk, MemBytes: 64 << 20}, farm.ChangeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dry, err := ops.Unify(ctx, fm, ops.UnifyOptions{Check: true, Exclude: []string{"usr/local/"}})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Supported || dry.Filesystem != "ext4" || dry.BytesShared == 0 {
		t.Errorf("dry run on ext4: %+v", dry)
	}
	res, err := ops.Unify(ctx, fm, ops.UnifyOptions{})
	if !errors.Is(err, driver.ErrUnsupported) || !strings.Contains(err.Error(), "unsupported on ext4") || !strings.Contains(err.Error(), "btrfs") {
		t.Errorf("unify on ext4: %v", err)
	}
	t.Logf("ext4: %v", err)
	if res.BytesShared < dry.BytesShared {
		t.Errorf("unify on ext4 reports %d could be saved, the dry run with an exclude %d", res.BytesShared, dry.BytesShared)
	}
}
