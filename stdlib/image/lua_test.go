//go:build linux

package image_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/luatest"
	"github.com/tinyfarm/tinyfarm/stdlib/host"
	"github.com/tinyfarm/tinyfarm/stdlib/image"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
	"github.com/tinyfarm/tinyfarm/stdlib/persist"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

func runLua(t *testing.T, file string, check bool) {
	rel := minicore.Require(t)
	rec := &luatest.Recorder{}
	luatest.Run(t, file, engine.Options{
		Modules:  []engine.Module{image.Module(), tcz.Module(), persist.Module(), host.Module(), rec.Module()},
		Check:    check,
		Reporter: rec,
		StateDir: t.TempDir(),
		Vars: map[string]any{"mirror": "file://" + rel.Mirror, "kernel": rel.KernelVersion, "core": rel.Core,
			"root": os.Geteuid() == 0},
	})
	checkNoLoop(t)
}

// checkNoLoop fails when a loop device is still attached to a test file.
func checkNoLoop(t *testing.T) {
	ms, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, m := range ms {
		b, _ := os.ReadFile(m)
		if strings.Contains(string(b), "/"+strings.SplitN(t.Name(), "/", 2)[0]) {
			t.Errorf("loop device left attached: %s -> %s", m, strings.TrimSpace(string(b)))
		}
	}
}

func TestLua(t *testing.T)          { runLua(t, "testdata/image_test.lua", false) }
func TestLuaCheckMode(t *testing.T) { runLua(t, "testdata/image_check_test.lua", true) }
