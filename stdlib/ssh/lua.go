package ssh

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/internal/fsutil"
)

// Module is require("ssh").
func Module() engine.Module {
	return engine.ModuleFunc{ModName: "ssh", Open: func(env *engine.Env) lua.LGFunction {
		return func(L *lua.LState) int {
			L.Push(L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
				"connect":  func(L *lua.LState) int { return luaConnect(env, L) },
				"farm_key": func(L *lua.LState) int { return luaFarmKey(env, L) },
			}))
			return 1
		}
	}, DocList: docs()}
}

type connectOpts struct {
	Host       string        `lua:"host,required"`
	Port       int           `lua:"port"`
	User       string        `lua:"user"`
	Key        string        `lua:"key"`
	HostKey    string        `lua:"host_key"`
	KnownHosts string        `lua:"known_hosts"`
	Timeout    time.Duration `lua:"timeout"`
	Retries    int           `lua:"retries"`
}

// ssh.connect{host, port=22, user="root", key=farm key, host_key | known_hosts, timeout, retries}
func luaConnect(env *engine.Env, L *lua.LState) int {
	var o connectOpts
	lx.Opts(L, 1, "ssh.connect", &o)
	cfg := Config{Host: o.Host, Port: o.Port, User: o.User, KeyPath: o.Key, KnownHosts: o.KnownHosts, Timeout: o.Timeout, Retries: o.Retries}
	if o.HostKey != "" {
		pubs, err := ParsePublicKeys(o.HostKey)
		if err != nil {
			lx.Raise(L, lx.WithKind(fmt.Errorf("ssh.connect: host_key: %w", err), lx.KindInvalid))
		}
		cfg.HostKeys = pubs
	}
	if o.HostKey == "" && o.KnownHosts == "" {
		lx.Raisef(L, "ssh.connect %s: give host_key (pinned) or known_hosts: tinyfarm never trusts an unknown host key", o.Host)
	}
	if o.Key == "" {
		fk, err := EnsureFarmKey(env.StateDir)
		if err != nil {
			lx.Raise(L, err)
		}
		cfg.Signer = fk.Signer
	}
	var c *Client
	err := env.Block(L, func(ctx context.Context) error {
		var err error
		c, err = Dial(ctx, cfg)
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	L.Push(PushSession(L, env, c, o.Host))
	return 1
}

func luaFarmKey(env *engine.Env, L *lua.LState) int {
	fk, err := EnsureFarmKey(env.StateDir)
	if err != nil {
		lx.Raise(L, err)
	}
	L.Push(lx.FromGo(L, map[string]any{"public": fk.AuthorizedKey(), "path": fk.Path, "fingerprint": Fingerprint(fk.PublicKey())}))
	return 1
}

// session is the Lua-side SSH session: one connection, many commands.
type session struct {
	c      *Client
	name   string // for reports: "guest:web1" or the host
	env    *engine.Env
	shared bool // the connection belongs to someone else (a guest's cache): close() leaves it open
}

const sessionType = "tinyfarm.ssh.session"

// PushSession wraps a connected client as a Lua session object with run,
// put, get, read, write and close. name labels its reports.
func PushSession(L *lua.LState, env *engine.Env, c *Client, name string) *lua.LUserData {
	return pushSession(L, &session{c: c, name: name, env: env})
}

// PushSharedSession is PushSession for a connection someone else owns and
// reuses: the session's close() does not close it.
func PushSharedSession(L *lua.LState, env *engine.Env, c *Client, name string) *lua.LUserData {
	return pushSession(L, &session{c: c, name: name, env: env, shared: true})
}

func pushSession(L *lua.LState, s *session) *lua.LUserData {
	ud := L.NewUserData()
	ud.Value = s
	mt := L.NewTypeMetatable(sessionType)
	if mt.RawGetString("__index") == lua.LNil {
		mt.RawSetString("__index", L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"run":   sessRun,
			"put":   sessPut,
			"get":   sessGet,
			"read":  sessRead,
			"write": sessWrite,
			"close": sessClose,
		}))
		mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
			s := checkSession(L)
			L.Push(lua.LString("ssh session " + s.c.Addr()))
			return 1
		}))
	}
	ud.Metatable = mt
	return ud
}

func checkSession(L *lua.LState) *session {
	ud := L.CheckUserData(1)
	s, ok := ud.Value.(*session)
	if !ok {
		L.ArgError(1, "ssh session expected (call it as s:run(...))")
	}
	return s
}

type runOpts struct {
	Sudo     bool              `lua:"sudo"`
	Check    *bool             `lua:"check"`
	Stdin    string            `lua:"stdin"`
	Env      map[string]string `lua:"env"`
	Timeout  time.Duration     `lua:"timeout"`
	ReadOnly bool              `lua:"readonly"`
}

// s:run(cmd, {sudo, check=true, stdin, env, timeout, readonly}) -> {code, stdout, stderr}
func sessRun(L *lua.LState) int {
	s := checkSession(L)
	cmd := L.CheckString(2)
	var o runOpts
	lx.Opts(L, 3, "run", &o)
	ch := engine.Change{Module: "ssh", Action: "run", Subject: s.name + ": " + abbrev(cmd, 60), Status: engine.StatusChanged}
	if o.ReadOnly {
		ch.Status = engine.StatusOK
	}
	if s.env.Check && !o.ReadOnly {
		ch.Status, ch.Detail = engine.StatusMayChange, "not run in check mode"
		s.env.Report(L, ch)
		L.Push(lx.FromGo(L, map[string]any{"code": 0, "stdout": "", "stderr": "", "skipped": true}))
		return 1
	}
	ro := RunOptions{Sudo: o.Sudo, Env: o.Env, Timeout: o.Timeout, IgnoreExit: o.Check != nil && !*o.Check}
	if o.Stdin != "" {
		ro.Stdin = strings.NewReader(o.Stdin)
	}
	var res Result
	err := s.env.Block(L, func(ctx context.Context) error {
		var err error
		res, err = s.c.Run(ctx, cmd, ro)
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	s.env.Report(L, ch)
	L.Push(lx.FromGo(L, map[string]any{"code": res.Code, "stdout": string(res.Stdout), "stderr": string(res.Stderr)}))
	return 1
}

type modeOpts struct {
	Mode string `lua:"mode"`
}

func parseMode(s string, def fs.FileMode) (fs.FileMode, error) {
	if s == "" {
		return def, nil
	}
	return lx.ParseMode(s)
}

// s:put(local, remote, {mode}) -> changed
func sessPut(L *lua.LState) int {
	s := checkSession(L)
	local, remote := L.CheckString(2), L.CheckString(3)
	var o modeOpts
	lx.Opts(L, 4, "put", &o)
	mode, err := parseMode(o.Mode, 0)
	if err != nil {
		lx.Raise(L, lx.WithKind(err, lx.KindInvalid))
	}
	data, err := os.ReadFile(local)
	if err != nil {
		lx.Raise(L, err)
	}
	if mode == 0 {
		if st, err := os.Stat(local); err == nil {
			mode = st.Mode().Perm()
		}
	}
	return writeRemote(L, s, "put", remote, data, mode)
}

// s:write(path, content, {mode}) -> changed
func sessWrite(L *lua.LState) int {
	s := checkSession(L)
	remote, content := L.CheckString(2), L.CheckString(3)
	var o modeOpts
	lx.Opts(L, 4, "write", &o)
	mode, err := parseMode(o.Mode, 0o644)
	if err != nil {
		lx.Raise(L, lx.WithKind(err, lx.KindInvalid))
	}
	return writeRemote(L, s, "write", remote, []byte(content), mode)
}

// writeRemote compares with the remote file first, so an unchanged file
// is neither rewritten nor reported as changed.
func writeRemote(L *lua.LState, s *session, action, remote string, data []byte, mode fs.FileMode) int {
	var old []byte
	var oldMode fs.FileMode
	exists := true
	err := s.env.Block(L, func(ctx context.Context) error {
		st, err := s.c.Stat(ctx, remote)
		if errors.Is(err, fs.ErrNotExist) {
			exists = false
			return nil
		}
		if err != nil {
			return err
		}
		oldMode = st.Mode().Perm()
		old, err = s.c.ReadFile(ctx, remote)
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	ch := engine.Change{Module: "ssh", Action: action, Subject: s.name + ":" + remote, Status: engine.StatusOK}
	changed := !exists || string(old) != string(data) || oldMode != mode.Perm()
	if changed {
		ch.Status = engine.StatusChanged
		ch.Diff = fsutil.Diff(remote, old, data)
		if exists && oldMode != mode.Perm() {
			ch.Detail = fmt.Sprintf("mode %04o -> %04o", oldMode, mode.Perm())
		}
	}
	if changed && !s.env.Check {
		err := s.env.Block(L, func(ctx context.Context) error { return s.c.WriteFile(ctx, remote, data, mode) })
		if err != nil {
			lx.Raise(L, err)
		}
	}
	s.env.Report(L, ch)
	L.Push(lua.LBool(changed))
	return 1
}

// s:get(remote, local) -> changed (local file)
func sessGet(L *lua.LState) int {
	s := checkSession(L)
	remote, local := L.CheckString(2), L.CheckString(3)
	var data []byte
	err := s.env.Block(L, func(ctx context.Context) error {
		var err error
		data, err = s.c.ReadFile(ctx, remote)
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	old, _ := os.ReadFile(local)
	changed := string(old) != string(data)
	ch := engine.Change{Module: "ssh", Action: "get", Subject: local, Status: engine.StatusOK}
	if changed {
		ch.Status, ch.Diff = engine.StatusChanged, fsutil.Diff(local, old, data)
		if !s.env.Check {
			if err := fsutil.WriteFileAtomic(local, data, 0o644); err != nil {
				lx.Raise(L, err)
			}
		}
	}
	s.env.Report(L, ch)
	L.Push(lua.LBool(changed))
	return 1
}

// s:read(path) -> string, or nil when missing
func sessRead(L *lua.LState) int {
	s := checkSession(L)
	remote := L.CheckString(2)
	var data []byte
	missing := false
	err := s.env.Block(L, func(ctx context.Context) error {
		var err error
		data, err = s.c.ReadFile(ctx, remote)
		if errors.Is(err, fs.ErrNotExist) {
			missing, err = true, nil
		}
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	if missing {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LString(data))
	return 1
}

func sessClose(L *lua.LState) int {
	s := checkSession(L)
	if !s.shared {
		s.c.Close()
	}
	return 0
}
