package colinux_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/luatest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver/fakedriver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
)

// emptyDisk is an empty file standing for a disk: the fake driver never
// reads it, but Define refuses a disk that does not exist.
func emptyDisk(t *testing.T, name string) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeModule is require("colinux") with the fake driver as its only one.
func fakeModule() engine.Module {
	return colinux.Module(map[string]driver.Runner{fakedriver.Name: &fakedriver.Runner{}})
}

// TestLuaFake runs testdata/fake_test.lua: the binding's option decoding,
// defaults, errors and recap over the fake driver, without root or
// guests (milliseconds).
func TestLuaFake(t *testing.T) {
	rec := &luatest.Recorder{}
	luatest.Run(t, "testdata/fake_test.lua", engine.Options{
		Modules: []engine.Module{fakeModule(), rec.Module()}, Reporter: rec, StateDir: t.TempDir(),
	})
}

// TestLuaFakeCheck runs testdata/fake_check_test.lua in check mode, with
// a running fake guest that it must leave running.
func TestLuaFakeCheck(t *testing.T) {
	state := t.TempDir()
	ctx := context.Background()
	fm := farm.New(state, farm.Options{Drivers: map[string]driver.Runner{fakedriver.Name: &fakedriver.Runner{}}})
	res, err := fm.Define(farm.Definition{Name: "up", Disk: emptyDisk(t, "up.img")}, farm.ChangeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g, _ := fm.Guest(ctx, res.Def.Name)
	if _, err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	rec := &luatest.Recorder{}
	luatest.Run(t, "testdata/fake_check_test.lua", engine.Options{
		Modules: []engine.Module{fakeModule(), rec.Module()}, Reporter: rec, StateDir: state, Check: true,
		Vars: map[string]any{"running": "up"},
	})
	if st, err := g.Status(ctx); err != nil || st.State != driver.Running {
		t.Errorf("after the check run: %s, %v; want it still running", st.State, err)
	}
}

// TestGoDefaults: a Go caller gets the guest a playbook gets: Define
// fills the driver chosen for the host (of the farm's) and mem 128M;
// FillDefaults also turns user namespaces on where the driver and the
// platform allow (the ns driver's Defaults).
func TestGoDefaults(t *testing.T) {
	fm := farm.New(t.TempDir(), farm.Options{Drivers: map[string]driver.Runner{fakedriver.Name: &fakedriver.Runner{}}})
	res, err := fm.Define(farm.Definition{Name: "plain", Disk: emptyDisk(t, "plain.img")}, farm.ChangeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := res.Def; d.Driver != fakedriver.Name || d.MemBytes != farm.DefaultMem || d.Net != "bridge" || d.IP == "" {
		t.Errorf("defaults: driver %q mem %d net %q ip %q", d.Driver, d.MemBytes, d.Net, d.IP)
	}
	d := farm.Definition{Name: "nsg", Driver: "ns", Disk: "/nonexistent/nsg.img"}
	fm.FillDefaults(&d, nil)
	if d.UserNS != (&ns.Runner{}).Defaults(driver.Scatter).UserNS || d.MemBytes != farm.DefaultMem {
		t.Errorf("ns defaults: userns %v, mem %d", d.UserNS, d.MemBytes)
	}
	off := false
	fm.FillDefaults(&d, &off)
	if d.UserNS {
		t.Error("userns = false was overridden")
	}
}
