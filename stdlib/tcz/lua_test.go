package tcz_test

import (
	"testing"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/luatest"
	"github.com/tinyfarm/tinyfarm/stdlib/host"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
	"github.com/tinyfarm/tinyfarm/stdlib/persist"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

func runLua(t *testing.T, file string, check bool) {
	rel := minicore.Require(t)
	rec := &luatest.Recorder{}
	luatest.Run(t, file, engine.Options{
		Modules:  []engine.Module{tcz.Module(), persist.Module(), host.Module(), rec.Module()},
		Check:    check,
		Reporter: rec,
		StateDir: t.TempDir(),
		Vars:     map[string]any{"mirror": "file://" + rel.Mirror, "kernel": rel.KernelVersion},
	})
}

func TestLua(t *testing.T)          { runLua(t, "testdata/tcz_test.lua", false) }
func TestLuaCheckMode(t *testing.T) { runLua(t, "testdata/tcz_check_test.lua", true) }
