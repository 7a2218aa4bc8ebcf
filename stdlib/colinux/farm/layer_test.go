//go:build linux

package farm_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
)

// TestLayeredGuestOnTheFarm: a guest defined with a base and no disk gets
// its layer in the state dir, made at its first start; it boots from the
// base in the default isolation (user namespace where available), answers
// SSH with the base's pinned host key, writes into its layer only, and
// destroy with disk = true removes the layer and leaves the base.
func TestLayeredGuestOnTheFarm(t *testing.T) {
	guesttest.NeedRoot(t)
	state := t.TempDir()
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: testBridge, Subnet: "10.77.251.0/24"})
	base, hk := guesttest.SSHDisk(t, state)
	if _, err := fm.Define(farm.Definition{Name: "lay", Driver: "qemu", Kernel: "/k", Base: base, MemBytes: 64 << 20}, farm.ChangeOptions{}); !errors.Is(err, farm.ErrInvalid) {
		t.Errorf("a qemu guest with a base: %v", err)
	}
	res, err := fm.Define(farm.Definition{Name: "lay", Driver: "ns", Base: base, MemBytes: 32 << 20, HostKey: hk, User: "root", UserNS: ns.UserNSAvailable()}, farm.ChangeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	layer := filepath.Join(state, "disks", "lay.layer.img")
	if d := res.Def; d.Disk != layer || !d.DiskPlaced || d.Base != base {
		t.Fatalf("definition %+v: want its layer at %s", d, layer)
	}
	ctx := context.Background()
	g, _ := fm.Guest(ctx, "lay")
	if _, err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Destroy(context.Background(), true) })
	if err := g.WaitReady(ctx, 30e9); err != nil { // one SSH handshake with the pinned key
		t.Fatal(err)
	}
	r, err := g.Exec(ctx, []string{"sh", "-c", "echo mine > /root/note && cat /root/note && ls /usr/local/sbin/dropbear"}, driver.ExecOptions{})
	if err != nil || r.Code != 0 || !strings.Contains(string(r.Stdout), "mine") {
		t.Fatalf("exec: %v %+v %s", err, r, r.Stderr)
	}
	if err := g.Destroy(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(layer); !os.IsNotExist(err) {
		t.Errorf("layer after destroy{disk = true}: %v", err)
	}
	if _, err := os.Stat(base); err != nil {
		t.Errorf("base after destroy: %v", err)
	}
}
