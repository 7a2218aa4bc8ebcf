//go:build linux

package colinux_test

import (
	"testing"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/luatest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
)

// TestLuaOps runs testdata/ops_test.lua. No guest is started (no network):
// clone works on the stopped guest's disk.
func TestLuaOps(t *testing.T) {
	needRoot(t)
	state := t.TempDir()
	disk := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	luatest.Run(t, "testdata/ops_test.lua", engine.Options{
		Modules:  []engine.Module{colinux.Module(colinux.DefaultDrivers())},
		StateDir: state,
		Vars:     map[string]any{"disk": disk.Path, "host_key": disk.HostKey},
	})
}

// TestLuaListLimit runs testdata/limit_test.lua under --limit 'web*,!web2'.
func TestLuaListLimit(t *testing.T) {
	needRoot(t)
	state := t.TempDir()
	disk := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	limit, err := engine.ParseLimit("web*,!web2")
	if err != nil {
		t.Fatal(err)
	}
	luatest.Run(t, "testdata/limit_test.lua", engine.Options{
		Modules:  []engine.Module{colinux.Module(colinux.DefaultDrivers())},
		StateDir: state,
		Vars:     map[string]any{"disk": disk.Path, "host_key": disk.HostKey},
		Select:   engine.Selection{Limit: limit},
	})
}

// TestLuaNetwork runs testdata/network_test.lua on a fresh state dir.
func TestLuaNetwork(t *testing.T) {
	luatest.Run(t, "testdata/network_test.lua", engine.Options{
		Modules:  []engine.Module{colinux.Module(colinux.DefaultDrivers())},
		StateDir: t.TempDir(),
	})
}
