package persist

import (
	"context"
	"fmt"
	"sort"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/targetlua"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// Module is require("persist").
//
//	persist.bootlocal(target, lines, {id}) -> changed
//	persist.bootsync(target, lines, {id}) -> changed
//	persist.onboot(target, names, {remove, tce_dir}) -> changed
//	persist.filetool(target, {add, exclude, remove}) -> changed
//	persist.backup(target, {safe, name, dir}) -> {file, entries, skipped, bytes}
//	persist.restore(target, file) -> changed
//	persist.bootcodes{key=value | key=true, ...} -> "kernel line"
//	persist.parse_bootcodes(line) -> {key=value | key=true, ...}
//
// lines and names are a string or a list of strings. A target is a host
// directory path, an image target (image.edit) or a guest.
func Module() engine.Module {
	return engine.ModuleFunc{ModName: "persist", Open: open, DocList: docs()}
}

type blockOpts struct {
	ID string `lua:"id"`
}

type onbootOpts struct {
	Remove bool   `lua:"remove"`
	TCEDir string `lua:"tce_dir"`
}

type filetoolOpts struct {
	Add     []string `lua:"add"`
	Exclude []string `lua:"exclude"`
	Remove  bool     `lua:"remove"`
}

type backupOpts struct {
	Safe bool   `lua:"safe"`
	Name string `lua:"name"`
	Dir  string `lua:"dir"`
}

func open(env *engine.Env) lua.LGFunction {
	return func(L *lua.LState) int {
		mod := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"bootlocal":       func(L *lua.LState) int { return luaBlock(env, L, "bootlocal", "opt/bootlocal.sh", Bootlocal) },
			"bootsync":        func(L *lua.LState) int { return luaBlock(env, L, "bootsync", "opt/bootsync.sh", Bootsync) },
			"onboot":          func(L *lua.LState) int { return luaOnboot(env, L) },
			"filetool":        func(L *lua.LState) int { return luaFiletool(env, L) },
			"backup":          func(L *lua.LState) int { return luaBackup(env, L) },
			"restore":         func(L *lua.LState) int { return luaRestore(env, L) },
			"bootcodes":       luaBootcodes,
			"parse_bootcodes": luaParseBootcodes,
		})
		L.Push(mod)
		return 1
	}
}

// stringsArg reads argument n: a string or a list of strings.
func stringsArg(L *lua.LState, n int, fn string) []string {
	switch v := L.Get(n).(type) {
	case lua.LString:
		return []string{string(v)}
	case *lua.LTable:
		return lx.StringList(L, n, fn)
	default:
		lx.Raisef(L, "%s: argument #%d: want a string or a list of strings, got %s", fn, n, v.Type())
	}
	return nil
}

// report sends one change for a persist call on t. subject is the file
// the call edits; in check mode an earlier would-be change of it makes
// this one may_change.
func report(env *engine.Env, L *lua.LState, action string, t target.Target, file string, r Result) {
	subject := targetlua.Subject(t, file)
	c := engine.Change{Module: "persist", Action: action, Subject: subject, Status: engine.StatusOK, Diff: r.Diff}
	if r.Changed {
		c.Status = engine.StatusChanged
		c.Detail = strings.Join(r.Files, ", ")
	}
	if env.Check && env.Pending(subject) {
		c.Status, c.Detail = engine.StatusMayChange, "an earlier step would change it first"
	}
	env.Report(L, c)
}

// persist.bootlocal(target, lines, {id}) / persist.bootsync(...): the
// managed block id (default "default") holds exactly lines; an empty list
// removes it.
func luaBlock(env *engine.Env, L *lua.LState, action, file string,
	fn func(context.Context, target.Target, []string, BlockOptions) (Result, error)) int {
	name := "persist." + action
	t, done := targetlua.Check(L, 1, env, name)
	defer done()
	var lines []string
	if tb, ok := L.Get(2).(*lua.LTable); !ok || tb.Len() > 0 {
		lines = stringsArg(L, 2, name)
	}
	var o blockOpts
	lx.Opts(L, 3, name, &o)
	var r Result
	err := env.Block(L, func(ctx context.Context) error {
		var err error
		r, err = fn(ctx, t, lines, BlockOptions{ID: o.ID, Check: env.Check})
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	report(env, L, action, t, file, r)
	L.Push(lua.LBool(r.Changed))
	return 1
}

// persist.onboot(target, names, {remove, tce_dir}) -> changed
func luaOnboot(env *engine.Env, L *lua.LState) int {
	t, done := targetlua.Check(L, 1, env, "persist.onboot")
	defer done()
	ns := stringsArg(L, 2, "persist.onboot")
	var o onbootOpts
	lx.Opts(L, 3, "persist.onboot", &o)
	var r Result
	var dir string
	err := env.Block(L, func(ctx context.Context) error {
		dir = o.TCEDir
		if dir == "" {
			var err error
			if dir, err = target.TCEDir(ctx, t); err != nil {
				return err
			}
		}
		var err error
		r, err = Onboot(ctx, t, ns, ListOptions{Remove: o.Remove, TCEDir: dir, Check: env.Check})
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	report(env, L, "onboot", t, dir+"/onboot.lst", r)
	L.Push(lua.LBool(r.Changed))
	return 1
}

// persist.filetool(target, {add, exclude, remove}) -> changed
func luaFiletool(env *engine.Env, L *lua.LState) int {
	t, done := targetlua.Check(L, 1, env, "persist.filetool")
	defer done()
	var o filetoolOpts
	lx.Opts(L, 2, "persist.filetool", &o)
	var r Result
	err := env.Block(L, func(ctx context.Context) error {
		var err error
		r, err = Filetool(ctx, t, FiletoolOptions{Add: o.Add, Exclude: o.Exclude, Remove: o.Remove, Check: env.Check})
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	report(env, L, "filetool", t, "opt/.filetool.lst", r)
	L.Push(lua.LBool(r.Changed))
	return 1
}

// persist.backup(target, {safe, name, dir}) -> {file, entries, skipped, bytes}
// Always changed (a backup writes a new archive); check mode writes nothing.
func luaBackup(env *engine.Env, L *lua.LState) int {
	t, done := targetlua.Check(L, 1, env, "persist.backup")
	defer done()
	var o backupOpts
	lx.Opts(L, 2, "persist.backup", &o)
	var r BackupResult
	err := env.Block(L, func(ctx context.Context) error {
		var err error
		r, err = Backup(ctx, t, BackupOptions{Safe: o.Safe, Name: o.Name, Dir: o.Dir, Check: env.Check})
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	c := engine.Change{Module: "persist", Action: "backup", Subject: targetlua.Subject(t, r.File), Status: engine.StatusOK}
	if r.Changed {
		c.Status = engine.StatusChanged
		c.Detail = fmt.Sprintf("%d entries", len(r.Entries))
	}
	env.Report(L, c)
	L.Push(lx.FromGo(L, map[string]any{"file": r.File, "entries": nonNil(r.Entries), "skipped": nonNil(r.Skipped), "bytes": r.Bytes, "changed": r.Changed}))
	return 1
}

// persist.restore(target, file) -> changed. file is a name inside the
// target ("tce/mydata.tgz"); a missing one raises not_found.
func luaRestore(env *engine.Env, L *lua.LState) int {
	t, done := targetlua.Check(L, 1, env, "persist.restore")
	defer done()
	file := L.CheckString(2)
	var r Result
	err := env.Block(L, func(ctx context.Context) error {
		var err error
		r, err = Restore(ctx, t, file, RestoreOptions{Check: env.Check})
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	c := engine.Change{Module: "persist", Action: "restore", Subject: targetlua.Subject(t, file), Status: engine.StatusOK, Diff: r.Diff}
	if r.Changed {
		c.Status, c.Detail = engine.StatusChanged, fmt.Sprintf("%d names", len(r.Files))
	}
	env.Report(L, c)
	L.Push(lua.LBool(r.Changed))
	return 1
}

// persist.bootcodes{host="web1", nodhcp=true, tce="UUID=..."} -> "host=web1 nodhcp tce=UUID=..."
// true is a bare flag, false leaves the code out. Sorted by key.
func luaBootcodes(L *lua.LState) int {
	tb := L.CheckTable(1)
	codes := map[string]string{}
	var bad error
	tb.ForEach(func(k, v lua.LValue) {
		ks, ok := k.(lua.LString)
		if !ok {
			bad = fmt.Errorf("persist.bootcodes: keys must be names, got %s", k.Type())
			return
		}
		switch x := v.(type) {
		case lua.LBool:
			if x {
				codes[string(ks)] = ""
			}
		case lua.LString, lua.LNumber:
			codes[string(ks)] = x.String()
		default:
			bad = fmt.Errorf("persist.bootcodes: %s: want a string, number or boolean, got %s", ks, v.Type())
		}
	})
	if bad != nil {
		lx.Raise(L, lx.WithKind(bad, lx.KindInvalid))
	}
	line, err := Bootcodes(codes)
	if err != nil {
		lx.Raise(L, err)
	}
	L.Push(lua.LString(line))
	return 1
}

// persist.parse_bootcodes(line) -> {key=value, flag=true}: exact words,
// never prefix globbing.
func luaParseBootcodes(L *lua.LState) int {
	m, err := ParseBootcodes(L.CheckString(1))
	if err != nil {
		lx.Raise(L, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t := L.CreateTable(0, len(m))
	for _, k := range keys {
		if m[k] == "" {
			t.RawSetString(k, lua.LTrue)
		} else {
			t.RawSetString(k, lua.LString(m[k]))
		}
	}
	L.Push(t)
	return 1
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
