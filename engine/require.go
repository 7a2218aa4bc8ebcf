package engine

import (
	"io/fs"
	"path"
	"path/filepath"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// setPath makes require search, in order: the playbook's directory, the
// -I/$TINYFARM_PATH directories, then the built-in recipe tree. Each
// directory is tried as DIR/?.lua and DIR/?/init.lua, so require("lib.nginx")
// finds DIR/lib/nginx.lua.
func (e *Engine) setPath(dir string) {
	e.pathDir = dir
	var parts []string
	for _, d := range append([]string{dir}, e.opts.Path...) {
		if d == "" {
			continue
		}
		d, _ = filepath.Abs(d)
		parts = append(parts, filepath.Join(d, "?.lua"), filepath.Join(d, "?", "init.lua"))
	}
	pkg := e.L.GetGlobal("package").(*lua.LTable)
	pkg.RawSetString("path", lua.LString(strings.Join(parts, ";")))
	if e.opts.Lib != nil && !e.libLoader {
		e.libLoader = true
		loaders := pkg.RawGetString("loaders").(*lua.LTable)
		loaders.Append(e.L.NewFunction(e.loadBuiltin))
	}
}

// loadBuiltin is a package.loaders entry for recipes embedded in the binary.
func (e *Engine) loadBuiltin(L *lua.LState) int {
	name := L.CheckString(1)
	rel := strings.ReplaceAll(name, ".", "/")
	for _, p := range []string{rel + ".lua", path.Join(rel, "init.lua")} {
		src, err := fs.ReadFile(e.opts.Lib, p)
		if err != nil {
			continue
		}
		fn, err := L.Load(strings.NewReader(string(src)), "@builtin/"+p)
		if err != nil {
			L.RaiseError("error loading built-in module %s: %s", name, err.Error())
		}
		L.Push(fn)
		return 1
	}
	L.Push(lua.LString("\n\tno built-in recipe '" + rel + ".lua'"))
	return 1
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
