package host

import (
	"context"
	"fmt"
	"io/fs"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
)

// Module is require("host").
func Module() engine.Module {
	return engine.ModuleFunc{ModName: "host", Open: open, DocList: docs()}
}

type runOpts struct {
	Check    *bool             `lua:"check"`
	Stdin    string            `lua:"stdin"`
	Env      map[string]string `lua:"env"`
	Dir      string            `lua:"dir"`
	Timeout  time.Duration     `lua:"timeout"`
	ReadOnly bool              `lua:"readonly"`
}

type writeOpts struct {
	Mode string `lua:"mode" doc:"octal; default: the file's mode, else 0644"`
}

func open(env *engine.Env) lua.LGFunction {
	return func(L *lua.LState) int {
		mod := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"run":   func(L *lua.LState) int { return luaRun(env, L) },
			"read":  luaRead,
			"write": func(L *lua.LState) int { return luaWrite(env, L) },
			"sleep": func(L *lua.LState) int { return luaSleep(env, L) },
		})
		L.Push(mod)
		return 1
	}
}

// host.run(cmd, {check=true, stdin, env, dir, timeout, readonly}) -> {code, stdout, stderr}
// cmd is a shell string or an argv list. readonly=true says the command
// changes nothing: it reports ok and also runs in check mode.
func luaRun(env *engine.Env, L *lua.LState) int {
	var argv []string
	switch v := L.Get(1).(type) {
	case lua.LString:
		argv = Shell(string(v))
	case *lua.LTable:
		argv = lx.StringList(L, 1, "host.run")
	default:
		lx.Raisef(L, "host.run: argument #1: want a command string or an argv list, got %s", v.Type())
	}
	if len(argv) == 0 {
		lx.Raisef(L, "host.run: empty command")
	}
	var o runOpts
	lx.Opts(L, 2, "host.run", &o)
	change := engine.Change{Module: "host", Action: "run", Subject: Describe(argv), Status: engine.StatusChanged}
	if o.ReadOnly {
		change.Status = engine.StatusOK
	}
	if env.Check && !o.ReadOnly {
		change.Status = engine.StatusMayChange
		change.Detail = "not run in check mode"
		env.Report(L, change)
		L.Push(lx.FromGo(L, map[string]any{"code": 0, "stdout": "", "stderr": "", "skipped": true}))
		return 1
	}
	ro := RunOptions{Env: o.Env, Dir: o.Dir, Timeout: o.Timeout}
	if o.Stdin != "" {
		ro.Stdin = []byte(o.Stdin)
	}
	var res Result
	err := env.Block(L, func(ctx context.Context) error {
		var err error
		res, err = Run(ctx, argv, ro)
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	if o.Check == nil || *o.Check {
		if err := Check(argv, res); err != nil {
			lx.Raise(L, err)
		}
	}
	env.Report(L, change)
	L.Push(lx.FromGo(L, res))
	return 1
}

// host.read(path) -> string, or nil when the file does not exist.
func luaRead(L *lua.LState) int {
	b, ok, err := ReadFile(L.CheckString(1))
	if err != nil {
		lx.Raise(L, err)
	}
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LString(b))
	return 1
}

// host.write(path, content, {mode}) -> changed
func luaWrite(env *engine.Env, L *lua.LState) int {
	path := L.CheckString(1)
	content := L.CheckString(2)
	var o writeOpts
	lx.Opts(L, 3, "host.write", &o)
	var perm fs.FileMode
	var err error
	if o.Mode != "" {
		perm, err = lx.ParseMode(o.Mode)
	}
	if err != nil {
		lx.Raise(L, lx.WithKind(fmt.Errorf("host.write %s: %w", path, err), lx.KindInvalid))
	}
	var fc FileChange
	if env.Check {
		fc, err = PlanWrite(path, []byte(content), perm)
	} else {
		fc, err = WriteFile(path, []byte(content), perm)
	}
	if err != nil {
		lx.Raise(L, err)
	}
	c := engine.Change{Module: "host", Action: "write", Subject: path, Status: engine.StatusOK, Diff: fc.Diff, Detail: fc.Detail}
	if fc.Changed {
		c.Status = engine.StatusChanged
	}
	if env.Check && env.Pending(path) {
		c.Status, c.Detail = engine.StatusMayChange, "an earlier step would change it first"
	}
	env.Report(L, c)
	L.Push(lua.LBool(fc.Changed))
	return 1
}

// host.sleep(seconds): waits without holding the VM, so parallel workers
// overlap; cancelled by Ctrl-C.
func luaSleep(env *engine.Env, L *lua.LState) int {
	d := time.Duration(float64(L.CheckNumber(1)) * float64(time.Second))
	err := env.Block(L, func(ctx context.Context) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("sleep: %w", ctx.Err())
		}
	})
	if err != nil {
		lx.Raise(L, err)
	}
	return 0
}
