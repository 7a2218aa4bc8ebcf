//go:build linux

package ops_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
)

// TestMigrateKeepsDestroyedDisk: the far host has <state>/disks/twin.img,
// the disk a guest "twin" destroyed there left (destroy keeps disks). A
// move of another guest named twin there (an ns guest on the bridge, in
// its user namespace) is refused before anything is copied, with an
// error naming that file and what to do; the file is as it was, the
// guest runs on here. Once the file is removed there, as the error says,
// the move goes through.
func TestMigrateKeepsDestroyedDisk(t *testing.T) {
	guesttest.NeedRoot(t)
	ctx := context.Background()
	bin := guesttest.BuildTinyfarm(t)
	remote, farState := guesttest.FarHost(t, bin)
	far := farm.New(farState, farm.Options{Drivers: farm.DefaultDrivers()})
	t.Cleanup(func() {
		if g, err := far.Guest(context.Background(), "twin"); err == nil {
			g.Destroy(context.Background(), false)
		}
	})
	state := t.TempDir()
	t.Cleanup(func() { ns.DeleteBridge(unifyBridge) })
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: unifyBridge, Subnet: unifySubnet})

	// There: a guest twin, defined with its disk in the far farm's disks
	// directory, then destroyed (the disk stays).
	farDisk := filepath.Join(farState, "disks", "twin.img")
	old := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	os.MkdirAll(filepath.Dir(farDisk), 0o700)
	guesttest.Run(t, "cp", "--sparse=always", old.Path, farDisk)
	if _, err := far.Define(farm.Definition{Name: "twin", Driver: "ns", Disk: farDisk, MemBytes: 64 << 20, User: "root", UserNS: ns.UserNSAvailable()}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	fg, err := far.Guest(ctx, "twin")
	if err != nil {
		t.Fatal(err)
	}
	if err := fg.Destroy(ctx, false); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(farDisk)
	if err != nil {
		t.Fatalf("destroy kept no disk there: %v", err)
	}

	// Here: another twin, running, with data of its own.
	disk := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	if _, err := fm.Define(farm.Definition{Name: "twin", Driver: "ns", Disk: disk.Path, MemBytes: 64 << 20, HostKey: disk.HostKey,
		User: "root", UserNS: ns.UserNSAvailable()}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	g, _ := fm.Guest(ctx, "twin")
	t.Cleanup(func() { g.Destroy(context.Background(), false) })
	if _, err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	guesttest.MustExec(t, g, "echo the-new-twin > /root/data.txt; sync")

	_, err = ops.Migrate(ctx, g, remote, ops.MigrateOptions{})
	if !errors.Is(err, farm.ErrExists) || !strings.Contains(err.Error(), farDisk) || !strings.Contains(err.Error(), "remove it there") {
		t.Fatalf("move onto a destroyed guest's disk there: %v, want exists naming %s and the fix", err, farDisk)
	}
	t.Logf("refused: %v", err)
	if got, _ := os.ReadFile(farDisk); !bytes.Equal(got, want) {
		t.Error("the refused move changed the disk there")
	}
	if _, err := os.Stat(farDisk + ".migrating"); err == nil {
		t.Error("the refused move marked the disk there as its copy")
	}
	if !g.Running(ctx) {
		t.Fatal("the refused move stopped the guest here")
	}

	// The fix the error names: remove the file there, move again.
	os.Remove(farDisk)
	res, err := ops.Migrate(ctx, g, remote, ops.MigrateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.State != "running" {
		t.Errorf("there: %s", res.State)
	}
	fg, err = far.Guest(ctx, "twin")
	if err != nil {
		t.Fatal(err)
	}
	if got := guesttest.MustExec(t, fg, "cat /root/data.txt"); got != "the-new-twin" {
		t.Errorf("data there: %q", got)
	}
	if _, err := os.Stat(farDisk + ".migrating"); err == nil {
		t.Error("the moved guest's disk is still marked as a migration's copy")
	}
}
