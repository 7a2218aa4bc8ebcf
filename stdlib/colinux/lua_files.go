package colinux

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/targetlua"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
	tmpl "github.com/tinyfarm/tinyfarm/stdlib/template"
)

type writeOpts struct {
	Mode  string `lua:"mode" default:"0644" doc:"octal"`
	Owner string `lua:"owner" default:"0:0" doc:"numeric uid:gid"`
}

// g:write(path, content, {mode="0644", owner="0:0"}) -> changed: a file in
// the running guest, replaced atomically; unchanged files are left alone.
func (m *luaMod) write(L *lua.LState) int {
	g := checkGuest(L)
	path, content := L.CheckString(2), L.CheckString(3)
	var o writeOpts
	lx.Opts(L, 4, "write", &o)
	L.Push(lua.LBool(m.writeFile(L, g, "write", path, []byte(content), o)))
	return 1
}

// g:template(path, src_or_file, vars, {mode="0644", owner="0:0"}) ->
// changed: g:write of a rendered template (see require("template")).
func (m *luaMod) template(L *lua.LState) int {
	g := checkGuest(L)
	path := L.CheckString(2)
	out := tmpl.RenderArg(L, m.env, 3, "template "+path)
	var o writeOpts
	lx.Opts(L, 5, "template", &o)
	L.Push(lua.LBool(m.writeFile(L, g, "template", path, []byte(out), o)))
	return 1
}

func (m *luaMod) writeFile(L *lua.LState, g *farm.Guest, action, path string, content []byte, o writeOpts) bool {
	mode := fs.FileMode(0o644)
	if o.Mode != "" {
		n, err := lx.ParseMode(o.Mode)
		if err != nil {
			lx.Raisef(L, "%s %s: %v", action, path, err)
		}
		mode = n
	}
	uid, gid := 0, 0
	if o.Owner != "" {
		if _, err := fmt.Sscanf(o.Owner, "%d:%d", &uid, &gid); err != nil {
			lx.Raisef(L, "%s %s: owner %q: want numeric uid:gid", action, path, o.Owner)
		}
	}
	var res target.PutResult
	m.block(L, func(ctx context.Context) (err error) {
		res, err = g.WriteFile(ctx, path, content, mode, uid, gid, m.env.Check)
		if err != nil {
			err = fmt.Errorf("colinux.%s %s: %w", action, path, err)
		}
		return err
	})
	targetlua.ReportPut(L, m.env, "colinux", action, g.Describe()+"/"+strings.TrimLeft(path, "/"), res)
	return res.Changed
}

// g:read(path) -> content, or nil when the file does not exist
func (m *luaMod) read(L *lua.LState) int {
	g := checkGuest(L)
	path := L.CheckString(2)
	var b []byte
	missing := false
	m.block(L, func(ctx context.Context) error {
		t, err := g.Target(ctx)
		if err != nil {
			return err
		}
		b, err = target.ReadFile(ctx, t, path)
		if errors.Is(err, fs.ErrNotExist) {
			missing, err = true, nil
		}
		return err
	})
	if missing {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LString(b))
	return 1
}
