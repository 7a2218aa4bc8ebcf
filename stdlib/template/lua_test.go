package template_test

import (
	"testing"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/luatest"
	"github.com/tinyfarm/tinyfarm/stdlib/host"
	"github.com/tinyfarm/tinyfarm/stdlib/template"
)

func TestLua(t *testing.T) {
	rec := &luatest.Recorder{}
	luatest.Run(t, "testdata/template_test.lua", engine.Options{
		Modules:  []engine.Module{template.Module(), host.Module(), rec.Module()},
		Reporter: rec,
	})
}

func TestCheckModeWritesNothing(t *testing.T) {
	rec := &luatest.Recorder{}
	luatest.Run(t, "testdata/template_check_test.lua", engine.Options{
		Modules:  []engine.Module{template.Module(), host.Module(), rec.Module()},
		Reporter: rec,
		Check:    true,
	})
}
