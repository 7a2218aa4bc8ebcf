//go:build linux

package colinux_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/luatest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
)

// TestTour runs testdata/tour_test.lua, the VServer/OpenVZ operations in
// a row on real guests (clone, a share in the default mode, unify on
// btrfs, checkpoint and restore under a new name on the bridge, live
// migration on the bridge to a far host in a network namespace, destroy),
// then checks from inside the far namespace that the moved VM's counter
// went on.
func TestTour(t *testing.T) {
	rel := guesttest.NeedVM(t)
	ctx := context.Background()
	const farBridge = "tftest8f"
	bin := guesttest.BuildTinyfarm(t)
	remote, farState := guesttest.FarHost(t, bin)
	os.MkdirAll(farState, 0o700)
	if err := os.WriteFile(filepath.Join(farState, "network.json"), []byte(`{"bridge":"`+farBridge+`","subnet":"`+guesttest.OpsSubnet+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	mnt := guesttest.ScratchBtrfs(t)
	state, work, share := t.TempDir(), t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(share, "index.html"), []byte("tour\n"), 0o644)
	// The Lua run's farm reads its network from the state dir.
	if err := os.WriteFile(filepath.Join(state, "network.json"), []byte(`{"bridge":"`+guesttest.OpsBridge+`","subnet":"`+guesttest.OpsSubnet+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	fm := guesttest.OpsFarm(t, state)
	t.Cleanup(func() {
		bg := context.Background()
		if fg, err := farm.New(farState, farm.Options{Drivers: farm.DefaultDrivers()}).Guest(bg, "vm2"); err == nil {
			guesttest.InNetns(guesttest.MigNS, func() error { return fg.Destroy(bg, false) })
		}
		defs, _ := fm.List()
		for _, d := range defs {
			if g, err := fm.Guest(bg, d.Name); err == nil {
				g.Destroy(bg, false)
			}
		}
		guesttest.KillDHCP(farState, farBridge) // the servers the two farms started
		guesttest.KillDHCP(state, guesttest.OpsBridge)
	})
	nsDisk := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	web := filepath.Join(mnt, "web.img")
	guesttest.CpNoReflink(t, nsDisk.Path, web)
	if _, err := fm.Define(farm.Definition{Name: "web", Driver: "ns", Disk: web, MemBytes: 64 << 20, HostKey: nsDisk.HostKey,
		User: "root", UserNS: ns.UserNSAvailable()}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	vmDisk := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	if _, err := fm.Define(farm.Definition{Name: "vm", Driver: "qemu", Net: "bridge", Disk: vmDisk.Path, MemBytes: 160 << 20, CPUs: 1,
		Kernel: rel.Vmlinux, Initrds: []string{rel.ModulesInitrd}, HostKey: vmDisk.HostKey, User: "root"}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	luatest.Run(t, "testdata/tour_test.lua", engine.Options{
		Modules:  []engine.Module{colinux.Module(farm.DefaultDrivers())},
		StateDir: state,
		Vars: map[string]any{"bridge": guesttest.OpsBridge, "subnet": guesttest.OpsSubnet, "share": share, "btrfs": mnt, "work": work, "state": state,
			"vm_disk": vmDisk.Path,
			"far": map[string]any{"name": "far", "address": remote.Address, "key": remote.Key, "host_key": remote.HostKey,
				"state_dir": remote.StateDir, "binary": remote.Binary}},
	})
	b, err := os.ReadFile(filepath.Join(work, "counter"))
	if err != nil {
		t.Fatalf("the tour did not get to the live migration: %v", err)
	}
	before, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	fg, err := farm.New(farState, farm.Options{Drivers: farm.DefaultDrivers()}).Guest(ctx, "vm2")
	if err != nil {
		t.Fatal(err)
	}
	n1, n2, err := guesttest.FarCounter(fg, 500*time.Millisecond)
	if err != nil {
		t.Fatalf("vm2's counter there, over SSH at its address: %v", err)
	}
	t.Logf("vm2's counter: %d before the move, %d then %d there", before, n1, n2)
	if n1 < before || n2 <= n1 {
		t.Errorf("vm2's counter did not go on there: %d before, %d then %d", before, n1, n2)
	}
}
