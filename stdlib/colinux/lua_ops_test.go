//go:build linux

package colinux_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/luatest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/host"
)

func TestMain(m *testing.M) { guesttest.Main(m) }

// TestLuaOps runs testdata/ops_test.lua. No guest is started (no network):
// clone works on the stopped guest's disk.
func TestLuaOps(t *testing.T) {
	guesttest.NeedRoot(t)
	state := t.TempDir()
	disk := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	luatest.Run(t, "testdata/ops_test.lua", engine.Options{
		Modules:  []engine.Module{colinux.Module(farm.DefaultDrivers())},
		StateDir: state,
		Vars:     map[string]any{"disk": disk.Path, "host_key": disk.HostKey},
	})
}

// TestLuaListLimit runs testdata/limit_test.lua under --limit 'web*,!web2'.
func TestLuaListLimit(t *testing.T) {
	guesttest.NeedRoot(t)
	state := t.TempDir()
	disk := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	limit, err := engine.ParseLimit("web*,!web2")
	if err != nil {
		t.Fatal(err)
	}
	luatest.Run(t, "testdata/limit_test.lua", engine.Options{
		Modules:  []engine.Module{colinux.Module(farm.DefaultDrivers())},
		StateDir: state,
		Vars:     map[string]any{"disk": disk.Path, "host_key": disk.HostKey},
		Select:   engine.Selection{Limit: limit},
	})
}

// TestLuaNetwork runs testdata/network_test.lua on a fresh state dir.
func TestLuaNetwork(t *testing.T) {
	luatest.Run(t, "testdata/network_test.lua", engine.Options{
		Modules:  []engine.Module{colinux.Module(farm.DefaultDrivers()), host.Module()},
		StateDir: t.TempDir(),
	})
}

// TestLuaLifecycle runs testdata/lifecycle_test.lua: a real namespace
// guest in the default mode (user namespace where available) on a test
// bridge.
func TestLuaLifecycle(t *testing.T) {
	guesttest.NeedRoot(t)
	if !ns.UserNSAvailable() {
		t.Skip("no user namespaces with idmapped mounts here: the default mode is not userns")
	}
	state := t.TempDir()
	disk := guesttest.BuildDisk(t, guesttest.Options{})
	share := t.TempDir()
	os.WriteFile(filepath.Join(share, "hello.txt"), []byte("from the host\n"), 0o644)
	os.WriteFile(filepath.Join(share, "tc.txt"), []byte("tc's\n"), 0o644)
	os.Chown(filepath.Join(share, "tc.txt"), 1001, 50)
	t.Cleanup(func() {
		ns.DeleteBridge(guesttest.OpsBridge)
		fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers()})
		defs, _ := fm.List()
		for _, d := range defs {
			if g, err := fm.Guest(context.Background(), d.Name); err == nil {
				g.Destroy(context.Background(), false)
			}
		}
	})
	luatest.Run(t, "testdata/lifecycle_test.lua", engine.Options{
		Modules:  []engine.Module{colinux.Module(farm.DefaultDrivers())},
		StateDir: state,
		Vars:     map[string]any{"disk": disk.Path, "share": share, "bridge": guesttest.OpsBridge, "subnet": guesttest.OpsSubnet},
	})
}
