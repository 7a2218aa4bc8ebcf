package tcz

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/targetlua"
)

// Module is require("tcz").
//
//	tcz.mirror{url, version, arch, cache, kernel} -> {url, version, arch, cache, kernel}
//	tcz.deps(name | {names}) -> {names in install order}
//	tcz.fetch(name | {names}) -> {order, downloaded, changed}
//	tcz.info(name) -> {Title=..., Version=..., ...}
//	tcz.search(term) -> {names}
//	tcz.install(target, name, {onboot, overwrite}) -> {changed, order, installed, files, kept, queued}
//	tcz.remove(target, name) -> {changed, removed, shared}
//	tcz.installed(target) -> {names}
//	tcz.pack{dir, name, deps, out, info, all_root, epoch} -> {changed, files, md5, size}
//
// The mirror is per engine (one playbook run): it starts with the defaults
// (http://repo.tinycorelinux.net, 15.x, x86_64, cache <state dir>/tcz)
// and tcz.mirror{} replaces it. Other modules (image.build) use the same
// mirror through [LuaClient].
func Module() engine.Module {
	return engine.ModuleFunc{ModName: "tcz", Open: open, DocList: docs()}
}

type mirrorOpts struct {
	URL     string `lua:"url"`
	Version string `lua:"version"`
	Arch    string `lua:"arch"`
	Cache   string `lua:"cache"`
	Kernel  string `lua:"kernel"`
}

type installOpts struct {
	Onboot    bool `lua:"onboot"`
	Overwrite bool `lua:"overwrite"`
}

type packOpts struct {
	Dir     string            `lua:"dir,required"`
	Name    string            `lua:"name,required"`
	Deps    []string          `lua:"deps"`
	Out     string            `lua:"out"`
	Info    map[string]string `lua:"info"`
	AllRoot bool              `lua:"all_root"`
	Epoch   int64             `lua:"epoch"`
}

// registryKey holds the engine's mirror in the Lua registry (per LState,
// so per engine; never package state).
const registryKey = "tinyfarm.tcz.client"

// LuaClient returns the engine's tcz client: the one set by tcz.mirror{},
// else a default one (cache <state dir>/tcz), created on first use.
func LuaClient(L *lua.LState, env *engine.Env) (*Client, error) {
	if ud, ok := L.G.Registry.RawGetString(registryKey).(*lua.LUserData); ok {
		if c, ok := ud.Value.(*Client); ok {
			return c, nil
		}
	}
	c, err := newLuaClient(env, mirrorOpts{})
	if err != nil {
		return nil, err
	}
	setClient(L, c)
	return c, nil
}

func setClient(L *lua.LState, c *Client) {
	ud := L.NewUserData()
	ud.Value = c
	L.G.Registry.RawSetString(registryKey, ud)
}

func newLuaClient(env *engine.Env, o mirrorOpts) (*Client, error) {
	cache := o.Cache
	if cache == "" && env.StateDir != "" {
		cache = filepath.Join(env.StateDir, "tcz")
	}
	return New(Config{URL: o.URL, Version: o.Version, Arch: o.Arch, Cache: cache, Kernel: o.Kernel, Logf: env.Logf})
}

func open(env *engine.Env) lua.LGFunction {
	return func(L *lua.LState) int {
		mod := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"mirror":    func(L *lua.LState) int { return luaMirror(env, L) },
			"deps":      func(L *lua.LState) int { return luaDeps(env, L) },
			"fetch":     func(L *lua.LState) int { return luaFetch(env, L) },
			"info":      func(L *lua.LState) int { return luaInfo(env, L) },
			"search":    func(L *lua.LState) int { return luaSearch(env, L) },
			"install":   func(L *lua.LState) int { return luaInstall(env, L) },
			"remove":    func(L *lua.LState) int { return luaRemove(env, L) },
			"installed": func(L *lua.LState) int { return luaInstalled(env, L) },
			"pack":      func(L *lua.LState) int { return luaPack(env, L) },
		})
		L.Push(mod)
		return 1
	}
}

// withSuggestion adds the nearest extension names of the mirror to a
// not-found error about names ("ngnix": did you mean "nginx"?).
func withSuggestion(env *engine.Env, L *lua.LState, c *Client, err error, names ...string) error {
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	var all []string
	_ = env.Block(L, func(ctx context.Context) error {
		all, _ = c.Search(ctx, "")
		return nil
	})
	var hints []string
	for _, n := range names {
		if slices.Contains(all, n) {
			continue
		}
		best, hint := 3, ""
		for _, a := range all {
			if d := lx.Distance(n, a); d < best {
				best, hint = d, a
			}
		}
		if hint != "" {
			hints = append(hints, fmt.Sprintf("%q for %q", hint, n))
		}
	}
	if len(hints) == 0 {
		return err
	}
	return fmt.Errorf("%w (did you mean %s? tcz.search(term) lists names)", err, strings.Join(hints, ", "))
}

func client(env *engine.Env, L *lua.LState) *Client {
	c, err := LuaClient(L, env)
	if err != nil {
		lx.Raise(L, err)
	}
	return c
}

// names reads argument n: one name or a list of names.
func names(L *lua.LState, n int, fn string) []string {
	switch v := L.Get(n).(type) {
	case lua.LString:
		return []string{string(v)}
	case *lua.LTable:
		return lx.StringList(L, n, fn)
	default:
		lx.Raisef(L, "%s: argument #%d: want a name or a list of names, got %s", fn, n, v.Type())
	}
	return nil
}

// tcz.mirror{url, version, arch, cache, kernel}: sets this run's mirror and
// returns its configuration; without arguments it only returns it.
func luaMirror(env *engine.Env, L *lua.LState) int {
	if L.Get(1) != lua.LNil {
		var o mirrorOpts
		lx.Opts(L, 1, "tcz.mirror", &o)
		c, err := newLuaClient(env, o)
		if err != nil {
			lx.Raise(L, err)
		}
		setClient(L, c)
	}
	cfg := client(env, L).Config()
	L.Push(lx.FromGo(L, map[string]any{"url": cfg.URL, "version": cfg.Version, "arch": cfg.Arch, "cache": cfg.Cache, "kernel": cfg.Kernel}))
	return 1
}

// tcz.deps(name | {names}) -> install order, dependencies first.
func luaDeps(env *engine.Env, L *lua.LState) int {
	ns := names(L, 1, "tcz.deps")
	c := client(env, L)
	var d Deps
	err := env.Block(L, func(ctx context.Context) error {
		var err error
		d, err = c.Deps(ctx, ns...)
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	L.Push(lx.FromGo(L, d.Order))
	return 1
}

// tcz.fetch(name | {names}) -> {order, downloaded, changed}: downloads the
// tree into the cache (md5-checked). Check mode downloads nothing.
func luaFetch(env *engine.Env, L *lua.LState) int {
	ns := names(L, 1, "tcz.fetch")
	c := client(env, L)
	var r FetchResult
	err := env.Block(L, func(ctx context.Context) error {
		var err error
		r, err = c.Fetch(ctx, FetchOptions{Check: env.Check}, ns...)
		return err
	})
	if err != nil {
		lx.Raise(L, withSuggestion(env, L, c, err, ns...))
	}
	ch := engine.Change{Module: "tcz", Action: "fetch", Subject: "tcz:" + strings.Join(ns, ","), Status: engine.StatusOK}
	if r.Changed {
		ch.Status, ch.Detail = engine.StatusChanged, "download "+strings.Join(r.Downloaded, " ")
	}
	env.Report(L, ch)
	L.Push(lx.FromGo(L, map[string]any{"order": r.Order, "downloaded": r.Downloaded, "changed": r.Changed}))
	return 1
}

// tcz.info(name) -> the .info fields ("Title", "Version", ...).
func luaInfo(env *engine.Env, L *lua.LState) int {
	n := L.CheckString(1)
	c := client(env, L)
	var info Info
	err := env.Block(L, func(ctx context.Context) error {
		var err error
		info, err = c.Info(ctx, n)
		return err
	})
	if err != nil {
		lx.Raise(L, withSuggestion(env, L, c, err, n))
	}
	L.Push(lx.FromGo(L, info.Fields))
	return 1
}

// tcz.search(term) -> sorted names.
func luaSearch(env *engine.Env, L *lua.LState) int {
	term := L.CheckString(1)
	c := client(env, L)
	var out []string
	err := env.Block(L, func(ctx context.Context) error {
		var err error
		out, err = c.Search(ctx, term)
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	if out == nil {
		out = []string{}
	}
	L.Push(lx.FromGo(L, out))
	return 1
}

// tcz.install(target, name, {onboot, overwrite}) -> result table.
func luaInstall(env *engine.Env, L *lua.LState) int {
	t, done := targetlua.Check(L, 1, env, "tcz.install")
	defer done()
	n := L.CheckString(2)
	var o installOpts
	lx.Opts(L, 3, "tcz.install", &o)
	c := client(env, L)
	nn, err := c.Name(n)
	if err != nil {
		lx.Raise(L, fmt.Errorf("tcz.install: %w", err))
	}
	var r InstallResult
	err = env.Block(L, func(ctx context.Context) error {
		var err error
		r, err = c.Install(ctx, t, nn, InstallOptions{Onboot: o.Onboot, Overwrite: o.Overwrite, Check: env.Check})
		return err
	})
	if err != nil {
		lx.Raise(L, withSuggestion(env, L, c, err, nn))
	}
	subject := targetlua.Subject(t, InstalledDir+"/"+nn)
	ch := engine.Change{Module: "tcz", Action: "install", Subject: subject, Status: engine.StatusOK, Diff: r.Diff}
	if r.Changed {
		ch.Status = engine.StatusChanged
		if len(r.Installed) > 0 {
			ch.Detail = fmt.Sprintf("%s (%d files)", strings.Join(r.Installed, " "), len(r.Files))
		} else {
			ch.Detail = "onboot.lst"
		}
	}
	env.Report(L, ch)
	L.Push(lx.FromGo(L, map[string]any{
		"changed": r.Changed, "order": r.Order, "installed": nonNil(r.Installed),
		"files": len(r.Files), "kept": nonNil(r.Kept), "queued": nonNil(r.Queued),
	}))
	return 1
}

// tcz.remove(target, name) -> {changed, removed, shared}.
func luaRemove(env *engine.Env, L *lua.LState) int {
	t, done := targetlua.Check(L, 1, env, "tcz.remove")
	defer done()
	n := L.CheckString(2)
	c := client(env, L)
	nn, err := c.Name(n)
	if err != nil {
		lx.Raise(L, fmt.Errorf("tcz.remove: %w", err))
	}
	var r RemoveResult
	err = env.Block(L, func(ctx context.Context) error {
		var err error
		r, err = c.Remove(ctx, t, nn, RemoveOptions{Check: env.Check})
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	ch := engine.Change{Module: "tcz", Action: "remove", Subject: targetlua.Subject(t, InstalledDir+"/"+nn), Status: engine.StatusOK, Diff: r.Diff}
	if r.Changed {
		ch.Status, ch.Detail = engine.StatusChanged, fmt.Sprintf("%d names", len(r.Removed))
	}
	env.Report(L, ch)
	L.Push(lx.FromGo(L, map[string]any{"changed": r.Changed, "removed": nonNil(r.Removed), "shared": nonNil(r.Shared)}))
	return 1
}

// tcz.installed(target) -> sorted names marked in usr/local/tce.installed.
func luaInstalled(env *engine.Env, L *lua.LState) int {
	t, done := targetlua.Check(L, 1, env, "tcz.installed")
	defer done()
	var out []string
	err := env.Block(L, func(ctx context.Context) error {
		var err error
		out, err = Installed(ctx, t)
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	L.Push(lx.FromGo(L, nonNil(out)))
	return 1
}

// tcz.pack{dir, name, deps, out, info, all_root, epoch} -> {changed, files, md5, size}.
func luaPack(env *engine.Env, L *lua.LState) int {
	var o packOpts
	if _, ok := L.Get(1).(*lua.LTable); !ok {
		lx.Raisef(L, "tcz.pack: want an options table {dir, name, ...}, got %s", L.Get(1).Type())
	}
	lx.Opts(L, 1, "tcz.pack", &o)
	var r PackResult
	err := env.Block(L, func(ctx context.Context) error {
		var err error
		r, err = Pack(ctx, PackOptions{Dir: o.Dir, Name: o.Name, Deps: o.Deps, Out: o.Out, Info: o.Info, AllRoot: o.AllRoot, Epoch: o.Epoch, Check: env.Check})
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	out := o.Out
	if out == "" {
		out = "."
	}
	subject, _ := filepath.Abs(filepath.Join(out, o.Name+".tcz"))
	ch := engine.Change{Module: "tcz", Action: "pack", Subject: subject, Status: engine.StatusOK}
	if r.Changed {
		ch.Status = engine.StatusChanged
	}
	env.Report(L, ch)
	L.Push(lx.FromGo(L, map[string]any{"changed": r.Changed, "files": nonNil(r.Files), "md5": r.MD5, "size": r.Size}))
	return 1
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
