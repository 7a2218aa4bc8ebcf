package luatest

import (
	"sync"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
)

// Recorder is a Reporter that keeps the changes every finished task (or
// one-call task) reported, and offers them to Lua tests as require("rec"):
// rec.take() returns {{module, action, subject, status, diff, detail}...}
// and clears them. Use it as both Options.Reporter and one of the Modules.
type Recorder struct {
	mu      sync.Mutex
	changes []engine.Change
}

// Event implements engine.Reporter.
func (r *Recorder) Event(ev engine.Event) {
	if ev.Type != "task_end" {
		return
	}
	r.mu.Lock()
	r.changes = append(r.changes, ev.Changes...)
	r.mu.Unlock()
}

// Module is require("rec").
func (r *Recorder) Module() engine.Module {
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

// Interface guards
var _ engine.Reporter = (*Recorder)(nil)
