package template

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/targetlua"
)

// Module is require("template").
func Module() engine.Module {
	return engine.ModuleFunc{ModName: "template", Open: func(env *engine.Env) lua.LGFunction {
		return func(L *lua.LState) int {
			L.Push(L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
				"render": func(L *lua.LState) int { return luaRender(L, env) },
				"write":  func(L *lua.LState) int { return luaWrite(L, env) },
			}))
			return 1
		}
	}, DocList: []engine.Doc{
		{Name: "template.render", Call: "template.render(text, vars, {name})", Opts: renderOpts{},
			Summary: "The rendered text: {{ expr }} inserts a Lua value, {% statement %} is Lua (for/if ... end),\n{# #} is a comment; errors name the template's line and column.",
			Example: `template.render("{% for _, p in ipairs(ports) do %}listen {{ p }};\n{% end %}", { ports = { 80, 443 } })`},
		{Name: "template.write", Call: "template.write(target, path, src_or_file, vars, {mode, owner})", Opts: writeOpts{},
			Summary: "The rendered file in a target (host directory, image.edit target, guest): atomic, ok when\nequal, a diff in check mode. src_or_file is template text (a tag or a newline) or a file\nnext to the playbook."},
	}}
}

type renderOpts struct {
	Name string `lua:"name" default:"inline" doc:"the template's name in errors"`
}

// template.render(text, vars, {name}) -> the rendered text
func luaRender(L *lua.LState, env *engine.Env) int {
	src := L.CheckString(1)
	var o renderOpts
	lx.Opts(L, 3, "template.render", &o)
	if o.Name == "" {
		o.Name = "inline"
	}
	L.Push(lua.LString(render(L, o.Name, src, 2, "template.render")))
	return 1
}

type writeOpts struct {
	Mode  string `lua:"mode" default:"0644" doc:"octal"`
	Owner string `lua:"owner" default:"0:0" doc:"numeric uid:gid"`
}

// template.write(target, path, src_or_file, vars, {mode="0644", owner="0:0"})
// -> changed: the rendered file in any target (a host directory, an
// image.edit target, a guest), written atomically, a diff in check mode.
func luaWrite(L *lua.LState, env *engine.Env) int {
	t, done := targetlua.Check(L, 1, env, "template.write")
	defer done()
	path := L.CheckString(2)
	out := RenderArg(L, env, 3, "template.write "+path)
	var o writeOpts
	lx.Opts(L, 5, "template.write", &o)
	mode := fs.FileMode(0o644)
	if o.Mode != "" {
		n, err := lx.ParseMode(o.Mode)
		if err != nil {
			lx.Raisef(L, "template.write %s: %v", path, err)
		}
		mode = n
	}
	uid, gid := 0, 0
	if o.Owner != "" {
		if _, err := fmt.Sscanf(o.Owner, "%d:%d", &uid, &gid); err != nil {
			lx.Raisef(L, "template.write %s: owner %q: want numeric uid:gid", path, o.Owner)
		}
	}
	changed := targetlua.WriteFile(L, env, t, path, []byte(out), targetlua.FileOptions{
		Mode: mode, UID: uid, GID: gid, Module: "template", Action: "write",
	})
	L.Push(lua.LBool(changed))
	return 1
}

// RenderArg renders the template at stack index n with the vars table at
// n+1. The argument is template text when it holds a tag or a newline,
// else a template file, relative to the playbook's directory (then the
// working directory). what names the call in errors.
func RenderArg(L *lua.LState, env *engine.Env, n int, what string) string {
	arg := L.CheckString(n)
	if IsInline(arg) {
		return render(L, "inline", arg, n+1, what)
	}
	p := arg
	if !filepath.IsAbs(p) && env.Dir() != "" {
		if _, err := os.Stat(filepath.Join(env.Dir(), p)); err == nil {
			p = filepath.Join(env.Dir(), p)
		}
	}
	src, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		lx.Raise(L, lx.WithKind(fmt.Errorf("%s: template file %s: not found (next to the playbook or in the working directory; inline templates hold a {{ }} tag or a newline): %w", what, arg, err), lx.KindNotFound))
	}
	if err != nil {
		lx.Raise(L, fmt.Errorf("%s: template file %s: %w", what, arg, err))
	}
	return render(L, arg, string(src), n+1, what)
}

// IsInline tells template text from a template file name.
func IsInline(s string) bool {
	return strings.Contains(s, "\n") || strings.Contains(s, "{{") || strings.Contains(s, "{%")
}

func render(L *lua.LState, name, src string, varsArg int, what string) string {
	var vars *lua.LTable
	switch v := L.Get(varsArg).(type) {
	case *lua.LNilType:
	case *lua.LTable:
		vars = v
	default:
		lx.Raisef(L, "%s: vars must be a table, got %s", what, v.Type())
	}
	t, err := Compile(name, src)
	if err == nil {
		var out string
		out, err = t.Render(L, vars)
		if err == nil {
			return out
		}
	}
	lx.Raise(L, lx.WithKind(fmt.Errorf("%s: %w", what, err), lx.KindInvalid))
	return ""
}
