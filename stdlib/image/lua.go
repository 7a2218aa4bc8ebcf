//go:build linux

package image

import (
	"slices"

	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

// Module is require("image").
//
//	image.build{path, size, fs, label, core, layout, hostname, authorized_keys,
//	            extensions, files, bootlocal} -> disk
//	image.edit(path, fn)          fn(t) gets an image target for tcz.* / persist.*
//	image.unpack(core, dir) -> {entries, archives, bytes}
//	image.pack(dir, out, {mtime, level}) -> changed
//
// A disk is a table {path, host_key, layout, fs, size, label, uuid,
// bootcodes, extensions, changed}; colinux.guest{disk = ...} accepts it.
// Extensions and a missing core come from the engine's tcz mirror
// (tcz.mirror{}): core = nil takes the arch's official core (x86_64
// corepure64.gz, x86 core.gz); core = {"rootfs64.gz", "modules64.gz"}
// names release files; a local path is used as is.
func Module() engine.Module {
	return engine.ModuleFunc{ModName: "image", Open: open, DocList: docs()}
}

type buildOpts struct {
	Path           string            `lua:"path,required"`
	Size           lx.Size           `lua:"size"`
	FS             string            `lua:"fs"`
	Label          string            `lua:"label"`
	Core           []string          `lua:"core"`
	Layout         string            `lua:"layout"`
	Hostname       string            `lua:"hostname"`
	AuthorizedKeys []string          `lua:"authorized_keys"`
	Extensions     []string          `lua:"extensions"`
	Files          map[string]string `lua:"files"`
	Bootlocal      []string          `lua:"bootlocal"`
}

type packOpts struct {
	Mtime int64 `lua:"mtime"`
	Level int   `lua:"level"`
}

func open(env *engine.Env) lua.LGFunction {
	return func(L *lua.LState) int {
		mod := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"build":  func(L *lua.LState) int { return luaBuild(env, L) },
			"edit":   func(L *lua.LState) int { return luaEdit(env, L) },
			"unpack": func(L *lua.LState) int { return luaUnpack(env, L) },
			"pack":   func(L *lua.LState) int { return luaPack(env, L) },
		})
		L.Push(mod)
		return 1
	}
}

func subject(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		p = a
	}
	return "image:" + p
}

// image.build{...} -> disk table. Check mode reports what would change
// and writes nothing.
func luaBuild(env *engine.Env, L *lua.LState) int {
	if _, ok := L.Get(1).(*lua.LTable); !ok {
		lx.Raisef(L, "image.build: want an options table {path, ...}, got %s", L.Get(1).Type())
	}
	var o buildOpts
	lx.Opts(L, 1, "image.build", &o)
	// tinyfarm must always be able to log in to what it built: the farm
	// key is authorized along with any keys the playbook gives.
	fk, err := ssh.EnsureFarmKey(env.StateDir)
	if err != nil {
		lx.Raise(L, err)
	}
	if !slices.Contains(o.AuthorizedKeys, fk.AuthorizedKey()) {
		o.AuthorizedKeys = append([]string{fk.AuthorizedKey()}, o.AuthorizedKeys...)
	}
	opts := Options{Path: o.Path, Size: int64(o.Size), FS: o.FS, Label: o.Label, Core: o.Core, Layout: Layout(o.Layout),
		Hostname: o.Hostname, AuthorizedKeys: o.AuthorizedKeys, Extensions: o.Extensions, Files: o.Files,
		Bootlocal: o.Bootlocal, Check: env.Check, Logf: env.Logf}
	if len(o.Extensions) > 0 || coreNeedsMirror(o.Core) {
		c, err := tcz.LuaClient(L, env)
		if err != nil {
			lx.Raise(L, err)
		}
		opts.Mirror = c
	}
	var r Result
	err = env.Block(L, func(ctx context.Context) error {
		var err error
		r, err = Build(ctx, opts)
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	c := engine.Change{Module: "image", Action: "build", Subject: subject(o.Path), Status: engine.StatusOK}
	if r.Changed {
		c.Status, c.Detail = engine.StatusChanged, r.Reason
	}
	env.Report(L, c)
	L.Push(diskTable(L, r))
	return 1
}

// coreNeedsMirror reports whether core names release files to fetch: it is
// empty (the mirror's core) or has a name that is no local file.
func coreNeedsMirror(core []string) bool {
	for _, c := range core {
		if _, err := os.Stat(c); err != nil {
			return true
		}
	}
	return len(core) == 0
}

func diskTable(L *lua.LState, r Result) *lua.LTable {
	t := L.NewTable()
	t.RawSetString("path", lua.LString(r.Path))
	t.RawSetString("host_key", lua.LString(r.HostKey))
	t.RawSetString("layout", lua.LString(r.Layout))
	t.RawSetString("fs", lua.LString(r.FS))
	t.RawSetString("size", lua.LNumber(r.Size))
	t.RawSetString("label", lua.LString(r.Label))
	t.RawSetString("uuid", lua.LString(r.UUID))
	t.RawSetString("changed", lua.LBool(r.Changed))
	t.RawSetString("bootcodes", lx.FromGo(L, r.Bootcodes))
	ext := r.Extensions
	if ext == nil {
		ext = []string{}
	}
	t.RawSetString("extensions", lx.FromGo(L, ext))
	return t
}

// imageTarget is the target image.edit hands to its callback: the mounted
// tree, named "image:<path>" in reports, dead once edit returns.
type imageTarget struct {
	img  string
	t    target.Target
	dead bool
}

var errEditOver = fmt.Errorf("image target used after image.edit returned: %w", ErrInvalid)

func (i *imageTarget) Describe() string { return "image:" + i.img }

func (i *imageTarget) Lstat(ctx context.Context, name string) (target.Entry, error) {
	if i.dead {
		return target.Entry{}, errEditOver
	}
	return i.t.Lstat(ctx, name)
}

func (i *imageTarget) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if i.dead {
		return nil, errEditOver
	}
	return i.t.Open(ctx, name)
}

func (i *imageTarget) Apply(ctx context.Context, c target.Change) error {
	if i.dead {
		return errEditOver
	}
	return i.t.Apply(ctx, c)
}

func (i *imageTarget) ReadDir(ctx context.Context, name string) ([]target.Entry, error) {
	if i.dead {
		return nil, errEditOver
	}
	dr, ok := i.t.(target.DirReader)
	if !ok {
		return nil, fmt.Errorf("readdir %s: %w", name, target.ErrUnsupported)
	}
	return dr.ReadDir(ctx, name)
}

func (i *imageTarget) Caps() target.Caps { return target.CapsOf(i.t) }

// image.edit(path, fn): mounts the disk (read-only in check mode), calls
// fn(t) with a target for tcz.* and persist.*, always unmounts. Returns
// fn's results. The calls inside report their own changes. In check mode
// a disk that does not exist yet (an image.build would make it) is not
// opened: edit reports may_change and fn is not called.
func luaEdit(env *engine.Env, L *lua.LState) int {
	p := L.CheckString(1)
	fn := L.CheckFunction(2)
	abs, _ := filepath.Abs(p)
	if _, err := os.Stat(abs); err != nil {
		if env.Check && (env.Pending(subject(abs)) || errors.Is(err, os.ErrNotExist)) {
			env.Report(L, engine.Change{Module: "image", Action: "edit", Subject: subject(abs), Status: engine.StatusMayChange, Detail: "the disk does not exist yet"})
			return 0
		}
		lx.Raise(L, fmt.Errorf("image.edit %s: %w", p, err))
	}
	// Read before mounting: the mount itself touches the image.
	var sc *sidecar
	if s, err := readSidecar(abs); err == nil && s.fresh(abs) && !env.Check {
		sc = s
	}
	ctx := env.Context(L)
	m, err := mountImage(ctx, abs, env.Check)
	if err != nil {
		lx.Raise(L, fmt.Errorf("image.edit %s: %w", p, err))
	}
	it := &imageTarget{img: abs, t: m.dir}
	ud := L.NewUserData()
	ud.Value = it
	mt := L.NewTable()
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(it.Describe()))
		return 1
	}))
	ud.Metatable = mt
	top := L.GetTop()
	L.Push(fn)
	L.Push(ud)
	callErr := L.PCall(1, lua.MultRet, nil)
	it.dead = true
	closeErr := m.Close()
	if callErr != nil {
		if ae, ok := callErr.(*lua.ApiError); ok {
			L.Error(ae.Object, 0) // re-raise the callback's error value as is
		}
		lx.Raise(L, callErr)
	}
	if closeErr != nil {
		lx.Raise(L, fmt.Errorf("image.edit %s: %w", p, closeErr))
	}
	if sc != nil {
		sc.Edited = true
		if err := writeSidecar(abs, sc); err != nil {
			lx.Raise(L, fmt.Errorf("image.edit %s: sidecar: %w", p, err))
		}
	}
	return L.GetTop() - top
}

// image.unpack(core, dir) -> {entries, archives, bytes}. Check mode
// reports changed and extracts nothing.
func luaUnpack(env *engine.Env, L *lua.LState) int {
	core, dir := L.CheckString(1), L.CheckString(2)
	c := engine.Change{Module: "image", Action: "unpack", Subject: dir, Status: engine.StatusChanged, Detail: core}
	if env.Check {
		if _, err := os.Stat(core); err != nil && !env.Pending(core) {
			lx.Raise(L, fmt.Errorf("image.unpack %s: %w", core, err))
		}
		env.Report(L, c)
		L.Push(lx.FromGo(L, map[string]any{"entries": 0, "archives": 0, "bytes": 0}))
		return 1
	}
	var r UnpackResult
	err := env.Block(L, func(ctx context.Context) error {
		var err error
		r, err = Unpack(ctx, core, dir, UnpackOptions{})
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	env.Report(L, c)
	L.Push(lx.FromGo(L, map[string]any{"entries": r.Entries, "archives": r.Archives, "bytes": r.Bytes}))
	return 1
}

// image.pack(dir, out, {mtime, level}) -> changed: a reproducible gzip
// newc cpio of dir; out is rewritten only when its content differs.
func luaPack(env *engine.Env, L *lua.LState) int {
	dir, out := L.CheckString(1), L.CheckString(2)
	var o packOpts
	lx.Opts(L, 3, "image.pack", &o)
	if o.Level < 0 || o.Level > 9 {
		lx.Raisef(L, "image.pack: level %d: want 1..9", o.Level)
	}
	var r PackResult
	err := env.Block(L, func(ctx context.Context) error {
		var err error
		r, err = Pack(ctx, dir, out, PackOptions{Mtime: o.Mtime, Level: o.Level, Check: env.Check})
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	abs, _ := filepath.Abs(out)
	c := engine.Change{Module: "image", Action: "pack", Subject: abs, Status: engine.StatusOK}
	if r.Changed {
		c.Status, c.Detail = engine.StatusChanged, fmt.Sprintf("%d entries, %d bytes", r.Entries, r.Size)
	}
	if env.Check && env.Pending(dir) {
		c.Status, c.Detail = engine.StatusMayChange, "an earlier step would change the tree first"
	}
	env.Report(L, c)
	L.Push(lua.LBool(r.Changed))
	return 1
}
