package tcz_test

import (
	"sync"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/luatest"
	"github.com/tinyfarm/tinyfarm/stdlib/host"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
	"github.com/tinyfarm/tinyfarm/stdlib/persist"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

// recorder keeps the changes every finished call reported and offers them
// to Lua as require("rec"): rec.take() returns and clears them.
type recorder struct {
	mu      sync.Mutex
	changes []engine.Change
}

func (r *recorder) Event(ev engine.Event) {
	if ev.Type != "task_end" {
		return
	}
	r.mu.Lock()
	r.changes = append(r.changes, ev.Changes...)
	r.mu.Unlock()
}

func (r *recorder) module() engine.Module {
	return engine.ModuleFunc{ModName: "rec", Open: func(env *engine.Env) lua.LGFunction {
		return func(L *lua.LState) int {
			mod := L.NewTable()
			mod.RawSetString("take", L.NewFunction(func(L *lua.LState) int {
				r.mu.Lock()
				cs := r.changes
				r.changes = nil
				r.mu.Unlock()
				t := L.NewTable()
				for _, c := range cs {
					e := L.NewTable()
					e.RawSetString("module", lua.LString(c.Module))
					e.RawSetString("action", lua.LString(c.Action))
					e.RawSetString("subject", lua.LString(c.Subject))
					e.RawSetString("status", lua.LString(c.Status))
					e.RawSetString("diff", lua.LString(c.Diff))
					e.RawSetString("detail", lua.LString(c.Detail))
					t.Append(e)
				}
				L.Push(t)
				return 1
			}))
			L.Push(mod)
			return 1
		}
	}}
}

func runLua(t *testing.T, file string, check bool) {
	rel := minicore.Require(t)
	rec := &recorder{}
	luatest.Run(t, file, engine.Options{
		Modules:  []engine.Module{tcz.Module(), persist.Module(), host.Module(), rec.module()},
		Check:    check,
		Reporter: rec,
		StateDir: t.TempDir(),
		Vars:     map[string]any{"mirror": "file://" + rel.Mirror, "kernel": rel.KernelVersion},
	})
}

func TestLua(t *testing.T)          { runLua(t, "testdata/tcz_test.lua", false) }
func TestLuaCheckMode(t *testing.T) { runLua(t, "testdata/tcz_check_test.lua", true) }
