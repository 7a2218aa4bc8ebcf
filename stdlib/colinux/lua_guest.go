package colinux

import (
	"context"
	"fmt"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/internal/errtext"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

func (m *luaMod) report(L *lua.LState, g *farm.Guest, action string, changed bool, detail string) {
	ch := engine.Change{Module: "colinux", Action: action, Subject: "guest:" + g.Def.Name, Status: engine.StatusOK, Detail: detail}
	if changed {
		ch.Status = engine.StatusChanged
	}
	if m.env.Check && m.env.Pending("guest:"+g.Def.Name) && !changed {
		ch.Status = engine.StatusMayChange
	}
	m.env.Report(L, ch)
}

func (m *luaMod) block(L *lua.LState, fn func(ctx context.Context) error) {
	if err := m.env.Block(L, fn); err != nil {
		lx.Raise(L, err)
	}
}

// g:start() -> changed
func (m *luaMod) start(L *lua.LState) int {
	g := checkGuest(L)
	var changed bool
	if m.env.Check {
		changed = !g.Running(m.env.Context(L))
	} else {
		m.block(L, func(ctx context.Context) (err error) { changed, err = g.Start(ctx); return })
	}
	m.report(L, g, "start", changed, "")
	L.Push(lua.LBool(changed))
	return 1
}

type stopOpts struct {
	Grace time.Duration `lua:"grace" default:"10s" doc:"how long a clean shutdown may take before the guest is killed"`
}

type destroyOpts struct {
	Disk bool `lua:"disk" default:"false" doc:"also remove the disk image"`
}

// g:stop{grace=10} -> changed
func (m *luaMod) stop(L *lua.LState) int {
	g := checkGuest(L)
	o := stopOpts{Grace: 10 * time.Second}
	lx.Opts(L, 2, "stop", &o)
	var changed bool
	if m.env.Check {
		changed = g.Running(m.env.Context(L))
	} else {
		m.block(L, func(ctx context.Context) (err error) { changed, err = g.Stop(ctx, o.Grace); return })
	}
	m.report(L, g, "stop", changed, "")
	L.Push(lua.LBool(changed))
	return 1
}

// g:restart{grace=10}: stop (if running) and start again; always changed.
func (m *luaMod) restart(L *lua.LState) int {
	g := checkGuest(L)
	o := stopOpts{Grace: 10 * time.Second}
	lx.Opts(L, 2, "restart", &o)
	if !m.env.Check {
		m.block(L, func(ctx context.Context) error {
			if _, err := g.Stop(ctx, o.Grace); err != nil {
				return err
			}
			_, err := g.Start(ctx)
			return err
		})
	}
	m.report(L, g, "restart", true, "")
	return 0
}

// g:status() -> {state, reason, pid, ip, driver, isolation, disk,
// disk_placed, autostart, restart_needed, oom_kills}
func (m *luaMod) status(L *lua.LState) int {
	g := checkGuest(L)
	var st driver.Status
	restart := []string{}
	m.block(L, func(ctx context.Context) (err error) {
		if st, err = g.Status(ctx); err == nil {
			restart = append(restart, g.RestartNeeded(ctx)...)
		}
		return err
	})
	ip, _, _ := strings.Cut(g.Def.IP, "/")
	L.Push(lx.FromGo(L, map[string]any{"state": string(st.State), "reason": st.Reason, "pid": st.PID, "ip": ip, "driver": g.Def.Driver, "isolation": st.Isolation,
		"disk": g.Def.Disk, "disk_placed": g.Def.DiskPlaced, "autostart": g.Def.Autostart, "restart_needed": restart, "oom_kills": st.OOMKills}))
	return 1
}

type readyOpts struct {
	Timeout time.Duration `lua:"timeout" default:"60s"`
}

// g:wait_ready{timeout=60}: the guest's ready marker, then one SSH handshake
// (over which a qemu guest's shares are mounted).
func (m *luaMod) waitReady(L *lua.LState) int {
	g := checkGuest(L)
	o := readyOpts{Timeout: 60 * time.Second}
	lx.Opts(L, 2, "wait_ready", &o)
	if m.env.Check && !g.Running(m.env.Context(L)) {
		return 0 // it would have been started: nothing to wait for in check mode
	}
	m.block(L, func(ctx context.Context) error { return g.WaitReady(ctx, o.Timeout) })
	return 0
}

// g:ssh() -> session (see require("ssh"))
func (m *luaMod) ssh(L *lua.LState) int {
	g := checkGuest(L)
	var c *ssh.Client
	m.block(L, func(ctx context.Context) (err error) { c, err = g.Conn(ctx); return })
	L.Push(ssh.PushSharedSession(L, m.env, c, "guest:"+g.Def.Name))
	return 1
}

type execOpts struct {
	Check    *bool         `lua:"check" default:"true" doc:"raise on a non-zero exit"`
	Stdin    string        `lua:"stdin" doc:"text fed to the command"`
	ReadOnly bool          `lua:"readonly" doc:"the command changes nothing: ok, and run in check mode"`
	Timeout  time.Duration `lua:"timeout" doc:"kill the command after this long (default: none, like ssh's s:run)"`
}

// g:exec(cmd, {check=true, stdin, readonly, timeout}) -> {code, stdout, stderr}
// timeout defaults as the ssh module's s:run does (none: only the run's
// own deadline); a suspended guest is refused at once.
func (m *luaMod) exec(L *lua.LState) int {
	g := checkGuest(L)
	argv := lx.Command(L, 2, "exec")
	var o execOpts
	lx.Opts(L, 3, "exec", &o)
	ch := engine.Change{Module: "colinux", Action: "exec", Subject: "guest:" + g.Def.Name + ": " + strings.Join(argv, " "), Status: engine.StatusChanged}
	if o.ReadOnly {
		ch.Status = engine.StatusOK
	}
	if m.env.Check && (!o.ReadOnly || !g.Running(m.env.Context(L))) {
		ch.Status, ch.Detail = engine.StatusMayChange, "not run in check mode"
		m.env.Report(L, ch)
		L.Push(lx.FromGo(L, map[string]any{"code": 0, "stdout": "", "stderr": "", "skipped": true}))
		return 1
	}
	var res driver.ExecResult
	opts := driver.ExecOptions{Timeout: o.Timeout}
	if o.Stdin != "" {
		opts.Stdin = strings.NewReader(o.Stdin)
	}
	m.block(L, func(ctx context.Context) (err error) { res, err = g.Exec(ctx, argv, opts); return })
	if (o.Check == nil || *o.Check) && res.Code != 0 {
		tail := errtext.Tail(res.Stderr, 400)
		lx.Raise(L, fmt.Errorf("guest %s: exec %q: exit status %d: %s", g.Def.Name, strings.Join(argv, " "), res.Code, tail))
	}
	m.env.Report(L, ch)
	L.Push(lx.FromGo(L, map[string]any{"code": res.Code, "stdout": string(res.Stdout), "stderr": string(res.Stderr)}))
	return 1
}

// g:console(n) -> the last n lines of the console (all without n)
func (m *luaMod) console(L *lua.LState) int {
	g := checkGuest(L)
	s, err := g.Console(L.OptInt(2, 0))
	if err != nil {
		lx.Raise(L, err)
	}
	L.Push(lua.LString(s))
	return 1
}

// g:suspend() -> changed (false: suspended already)
func (m *luaMod) suspend(L *lua.LState) int {
	return m.freeze(L, "suspend", (*farm.Guest).Suspend, driver.Suspended)
}

// g:resume() -> changed (false: running already)
func (m *luaMod) resume(L *lua.LState) int {
	return m.freeze(L, "resume", (*farm.Guest).Resume, driver.Running)
}

func (m *luaMod) freeze(L *lua.LState, op string, fn func(*farm.Guest, context.Context) (bool, error), want driver.State) int {
	g := checkGuest(L)
	var changed bool
	if m.env.Check {
		st, _ := g.Status(m.env.Context(L))
		changed = st.State != want
	} else {
		m.block(L, func(ctx context.Context) (err error) { changed, err = fn(g, ctx); return })
	}
	m.report(L, g, op, changed, "")
	L.Push(lua.LBool(changed))
	return 1
}

// g:destroy{disk=false}: stop, forget the definition (and the disk with disk=true).
func (m *luaMod) destroy(L *lua.LState) int {
	g := checkGuest(L)
	var o destroyOpts
	lx.Opts(L, 2, "destroy", &o)
	detail := ""
	if g.Def.Disk != "" && !o.Disk {
		detail = "disk kept: " + g.Def.Disk
	}
	if !m.env.Check {
		m.block(L, func(ctx context.Context) error {
			moved, err := g.DestroyMoved(ctx, o.Disk)
			if len(moved) > 0 {
				detail = "disk kept: " + strings.Join(moved, ", ")
			}
			return err
		})
	}
	m.report(L, g, "destroy", true, detail)
	return 0
}

func (m *luaMod) conf(L *lua.LState) int {
	g := checkGuest(L)
	s, err := g.Conf(m.env.Context(L))
	if err != nil {
		lx.Raise(L, err)
	}
	L.Push(lua.LString(s))
	return 1
}

// g:addr(port) -> "host:port" where the host reaches that guest port
func (m *luaMod) addr(L *lua.LState) int {
	g := checkGuest(L)
	a, err := g.Addr(L.CheckInt(2))
	if err != nil {
		lx.Raise(L, err)
	}
	L.Push(lua.LString(a))
	return 1
}
