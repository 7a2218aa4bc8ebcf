package persist_test

import (
	"testing"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/luatest"
	"github.com/tinyfarm/tinyfarm/stdlib/host"
	"github.com/tinyfarm/tinyfarm/stdlib/persist"
)

func runLua(t *testing.T, file string, check bool) {
	rec := &luatest.Recorder{}
	luatest.Run(t, file, engine.Options{
		Modules:  []engine.Module{persist.Module(), host.Module(), rec.Module()},
		Check:    check,
		Reporter: rec,
		StateDir: t.TempDir(),
	})
}

func TestLua(t *testing.T)          { runLua(t, "testdata/persist_test.lua", false) }
func TestLuaCheckMode(t *testing.T) { runLua(t, "testdata/persist_check_test.lua", true) }
