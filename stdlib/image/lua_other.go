//go:build !linux

package image

import (
	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
)

// Module is require("image"). Building and editing disks needs a Linux
// host (loop devices, mkfs.ext3): here every call says so.
func Module() engine.Module {
	return engine.ModuleFunc{ModName: "image", Open: func(env *engine.Env) lua.LGFunction {
		return func(L *lua.LState) int {
			unsupported := func(L *lua.LState) int {
				lx.Raisef(L, "image: building and editing disks needs a Linux host")
				return 0
			}
			L.Push(L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
				"build": unsupported, "edit": unsupported, "unpack": unsupported, "pack": unsupported,
			}))
			return 1
		}
	}}
}
