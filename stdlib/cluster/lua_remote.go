package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/internal/errtext"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/targetlua"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
	"github.com/tinyfarm/tinyfarm/stdlib/target/cmdtarget"
)

// hostSessions are a run's machine sessions, one per host, opened on
// first use and closed when the run ends.
type hostSessions struct {
	mu     sync.Mutex
	login  RemoteOptions
	used   bool // a session was opened: login can no longer change
	hosts  map[string]*hostSession
	guests map[string]*guestConn // "host/guest": g:ssh() connections (lua_remote_ssh.go)
}

type hostSession struct {
	once sync.Once
	m    *Machine
	err  error
}

// machine is the run's session with host, dialed once (parallel() workers
// reaching the same host wait for the one dial).
func (k *conn) machine(ctx context.Context, host string) (*Machine, error) {
	k.sess.mu.Lock()
	if k.sess.hosts == nil {
		k.sess.hosts = map[string]*hostSession{}
		k.env.OnClose(k.closeMachines)
	}
	s := k.sess.hosts[host]
	if s == nil {
		s = &hostSession{}
		k.sess.hosts[host] = s
	}
	k.sess.used = true
	login := k.sess.login
	k.sess.mu.Unlock()
	s.once.Do(func() {
		c, err := k.get(ctx)
		if err != nil {
			s.err = err
			return
		}
		if login.StateDir == "" {
			login.StateDir = k.env.StateDir
		}
		s.m, s.err = DialHost(ctx, c, host, login)
	})
	return s.m, s.err
}

func (k *conn) closeMachines() {
	k.sess.mu.Lock()
	defer k.sess.mu.Unlock()
	for _, gc := range k.sess.guests { // they run through the hosts' connections
		gc.c.Close()
	}
	for _, s := range k.sess.hosts {
		if s.m != nil {
			s.m.Close()
		}
	}
}

type loginOpts struct {
	Key  string `lua:"key" doc:"the private key file this controller logs into the hosts with (default: its farm key, <state>/keys/farm_ed25519)"`
	User string `lua:"user" default:"root" doc:"the login user on the hosts"`
}

// cluster.login{key, user}: how this run logs into the cluster's hosts.
func luaLogin(k *conn, L *lua.LState) int {
	var o loginOpts
	lx.Opts(L, 1, "cluster.login", &o)
	k.sess.mu.Lock()
	defer k.sess.mu.Unlock()
	if k.sess.used {
		lx.Raise(L, fmt.Errorf("cluster.login: call it before the first remote guest or cluster.run: %w", ErrInvalid))
	}
	if o.Key != "" && !filepath.IsAbs(o.Key) {
		o.Key = filepath.Join(k.env.Dir(), o.Key)
	}
	k.sess.login = RemoteOptions{Key: o.Key, User: o.User}
	return 0
}

// remoteGuest is a guest on another host of the cluster, driven through
// that host's tinyfarm in machine mode.
type remoteGuest struct {
	k    *conn
	host string
	info MachineGuest
}

const remoteGuestType = "tinyfarm.cluster.guest"

// Describe names it in change reports: host and guest.
func (g *remoteGuest) Describe() string { return "guest:" + g.host + "/" + g.info.Name }

func (g *remoteGuest) call(ctx context.Context, method string, params, out any) error {
	m, err := g.k.machine(ctx, g.host)
	if err != nil {
		return err
	}
	return m.Call(ctx, method, params, out, nil)
}

// Target is the running guest as tcz and persist see it: shell commands
// run as the guest's root through the host's tinyfarm (machine exec),
// bulk changes as one tar stream on the command's stdin.
func (g *remoteGuest) Target(ctx context.Context) (target.Target, error) {
	if _, err := g.k.machine(ctx, g.host); err != nil {
		return nil, err
	}
	return cmdtarget.New(machineRunner{g}, "/", g.Describe()), nil
}

// PlanTarget is Target in check mode: a guest that does not run yet is an
// empty root, so every change to it shows.
func (g *remoteGuest) PlanTarget(ctx context.Context) (target.Target, error) {
	var st MachineStatus
	err := g.call(ctx, MethodStatus, MachineGuestOp{Name: g.info.Name}, &st)
	if lx.KindOf(err) == lx.KindNotFound {
		return target.Offline(g.Describe()), nil // defined by this run, in check mode
	}
	if err != nil {
		return nil, err
	}
	if st.State != "running" {
		return target.Offline(g.Describe()), nil
	}
	return g.Target(ctx)
}

type machineRunner struct{ g *remoteGuest }

func (r machineRunner) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, []byte, int, error) {
	var in []byte
	if stdin != nil {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, nil, 0, err
		}
		in = b
	}
	var res MachineExecResult
	err := r.g.call(ctx, MethodExec, MachineExec{Name: r.g.info.Name, Argv: []string{"/bin/sh", "-c", cmd}, Stdin: in, Root: true}, &res)
	return res.Stdout, res.Stderr, res.Code, err
}

// remoteGuestOpts are cluster.guest's options: colinux.guest's, and the
// host.
type remoteGuestOpts struct {
	GuestOptions
	Host lua.LValue `lua:"host,required" doc:"the host it runs on: a name or what cluster.place returns"`
}

// cluster.guest{name, host, <colinux.guest options>} defines (or updates)
// the guest on that host and returns it: the methods of a local guest,
// each a call to that host's tinyfarm.
func luaGuest(k *conn, L *lua.LState) int {
	o := remoteGuestOpts{GuestOptions: GuestOptions{Mem: 128 << 20}}
	lx.Opts(L, 1, "cluster.guest", &o)
	host := hostName(L, o.Host, "cluster.guest")
	g := &remoteGuest{k: k, host: host, info: MachineGuest{Name: o.Name}}
	var res MachineDefined
	k.call(L, func(ctx context.Context, c *Client) error {
		return g.call(ctx, MethodDefine, MachineDefine{Options: o.GuestOptions, Check: k.env.Check}, &res)
	})
	if res.Guest.Name != "" {
		g.info = res.Guest
	}
	ch := engine.Change{Module: "cluster", Action: "guest", Subject: g.Describe(), Status: engine.StatusOK, Diff: res.Diff}
	if res.Changed {
		ch.Status, ch.Detail = engine.StatusChanged, res.Detail
	}
	k.env.Report(L, ch)
	L.Push(pushRemote(L, g))
	return 1
}

func pushRemote(L *lua.LState, g *remoteGuest) *lua.LUserData {
	ud := L.NewUserData()
	ud.Value = g
	ud.Metatable = L.GetTypeMetatable(remoteGuestType)
	return ud
}

func checkRemote(L *lua.LState) *remoteGuest {
	if ud, ok := L.Get(1).(*lua.LUserData); ok {
		if g, ok := ud.Value.(*remoteGuest); ok {
			return g
		}
	}
	L.ArgError(1, "remote guest expected (call methods as g:start(), not g.start())")
	return nil
}

// remoteMetatable makes the remote guest type: local guests' method names.
func remoteMetatable(k *conn, L *lua.LState) {
	mt := L.NewTypeMetatable(remoteGuestType)
	idx := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"start":      func(L *lua.LState) int { return remoteStartStop(k, L, MethodStart) },
		"stop":       func(L *lua.LState) int { return remoteStartStop(k, L, MethodStop) },
		"status":     func(L *lua.LState) int { return remoteStatus(k, L) },
		"wait_ready": func(L *lua.LState) int { return remoteWaitReady(k, L) },
		"exec":       func(L *lua.LState) int { return remoteExec(k, L) },
		"read":       func(L *lua.LState) int { return remoteRead(k, L) },
		"write":      func(L *lua.LState) int { return remoteWrite(k, L) },
		"ssh":        func(L *lua.LState) int { return remoteSSH(k, L) },
	})
	mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		g := checkRemote(L)
		switch key := L.CheckString(2); key {
		case "name":
			L.Push(lua.LString(g.info.Name))
		case "host":
			L.Push(lua.LString(g.host))
		case "ip":
			L.Push(lua.LString(g.info.IP))
		case "driver":
			L.Push(lua.LString(g.info.Driver))
		case "mem":
			L.Push(lua.LNumber(g.info.Mem))
		case "host_key":
			L.Push(lua.LString(g.info.HostKey))
		default:
			L.Push(idx.RawGetString(key))
		}
		return 1
	}))
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		g := checkRemote(L)
		L.Push(lua.LString(fmt.Sprintf("guest %s on %s (%s, %s)", g.info.Name, g.host, g.info.Driver, g.info.IP)))
		return 1
	}))
	mt.RawSetString("methods", idx)
}

func (g *remoteGuest) block(k *conn, L *lua.LState, fn func(ctx context.Context) error) {
	if err := k.env.Block(L, fn); err != nil {
		lx.Raise(L, err)
	}
}

func (g *remoteGuest) report(k *conn, L *lua.LState, action string, changed bool, detail string) {
	ch := engine.Change{Module: "cluster", Action: action, Subject: g.Describe(), Status: engine.StatusOK, Detail: detail}
	if changed {
		ch.Status = engine.StatusChanged
	}
	if k.env.Check && !changed && k.env.Pending(g.Describe()) {
		ch.Status = engine.StatusMayChange
	}
	k.env.Report(L, ch)
}

type remoteStopOpts struct {
	Grace time.Duration `lua:"grace" default:"10s" doc:"how long a clean shutdown may take before the guest is killed"`
}

// g:start() / g:stop{grace} -> changed
func remoteStartStop(k *conn, L *lua.LState, method string) int {
	g := checkRemote(L)
	o := remoteStopOpts{Grace: 10 * time.Second}
	if method == MethodStop {
		lx.Opts(L, 2, "stop", &o)
	}
	var res MachineChanged
	g.block(k, L, func(ctx context.Context) error {
		return g.call(ctx, method, MachineGuestOp{Name: g.info.Name, Check: k.env.Check, Grace: o.Grace}, &res)
	})
	g.report(k, L, method, res.Changed, "")
	L.Push(lua.LBool(res.Changed))
	return 1
}

// g:status() -> {state, reason, pid, ip, driver, isolation, disk, autostart, restart_needed, oom_kills, host}
func remoteStatus(k *conn, L *lua.LState) int {
	g := checkRemote(L)
	var st MachineStatus
	g.block(k, L, func(ctx context.Context) error {
		return g.call(ctx, MethodStatus, MachineGuestOp{Name: g.info.Name}, &st)
	})
	L.Push(lx.FromGo(L, map[string]any{"state": st.State, "reason": st.Reason, "pid": st.PID, "ip": st.IP, "driver": st.Driver,
		"isolation": st.Isolation, "disk": st.Disk, "autostart": st.Autostart, "restart_needed": st.RestartNeeded,
		"oom_kills": st.OOMKills, "host": g.host}))
	return 1
}

type remoteReadyOpts struct {
	Timeout time.Duration `lua:"timeout" default:"60s"`
}

// g:wait_ready{timeout=60}
func remoteWaitReady(k *conn, L *lua.LState) int {
	g := checkRemote(L)
	o := remoteReadyOpts{Timeout: 60 * time.Second}
	lx.Opts(L, 2, "wait_ready", &o)
	g.block(k, L, func(ctx context.Context) error {
		return g.call(ctx, MethodWaitReady, MachineGuestOp{Name: g.info.Name, Check: k.env.Check, Wait: o.Timeout}, nil)
	})
	return 0
}

type remoteExecOpts struct {
	Check    *bool         `lua:"check" default:"true" doc:"raise on a non-zero exit"`
	Stdin    string        `lua:"stdin" doc:"text fed to the command"`
	ReadOnly bool          `lua:"readonly" doc:"the command changes nothing: ok, and run in check mode"`
	Timeout  time.Duration `lua:"timeout" doc:"kill the command after this long (default: none)"`
}

// g:exec(cmd, {check=true, stdin, readonly, timeout}) -> {code, stdout, stderr}, as a local guest's.
func remoteExec(k *conn, L *lua.LState) int {
	g := checkRemote(L)
	argv := lx.Command(L, 2, "exec")
	var o remoteExecOpts
	lx.Opts(L, 3, "exec", &o)
	ch := engine.Change{Module: "cluster", Action: "exec", Subject: g.Describe() + ": " + strings.Join(argv, " "), Status: engine.StatusChanged}
	if o.ReadOnly {
		ch.Status = engine.StatusOK
	}
	if k.env.Check && !o.ReadOnly {
		ch.Status, ch.Detail = engine.StatusMayChange, "not run in check mode"
		k.env.Report(L, ch)
		L.Push(lx.FromGo(L, map[string]any{"code": 0, "stdout": "", "stderr": "", "skipped": true}))
		return 1
	}
	var res MachineExecResult
	p := MachineExec{Name: g.info.Name, Argv: argv, Timeout: o.Timeout}
	if o.Stdin != "" {
		p.Stdin = []byte(o.Stdin)
	}
	g.block(k, L, func(ctx context.Context) error { return g.call(ctx, MethodExec, p, &res) })
	if (o.Check == nil || *o.Check) && res.Code != 0 {
		tail := errtext.Tail(res.Stderr, 400)
		lx.Raise(L, fmt.Errorf("guest %s on %s: exec %q: exit status %d: %s", g.info.Name, g.host, strings.Join(argv, " "), res.Code, tail))
	}
	k.env.Report(L, ch)
	L.Push(lx.FromGo(L, map[string]any{"code": res.Code, "stdout": string(res.Stdout), "stderr": string(res.Stderr)}))
	return 1
}

// g:read(path) -> content, or nil when there is no such file
func remoteRead(k *conn, L *lua.LState) int {
	g := checkRemote(L)
	path := L.CheckString(2)
	var res MachineFileContent
	g.block(k, L, func(ctx context.Context) error {
		return g.call(ctx, MethodRead, MachineFile{Name: g.info.Name, Path: path}, &res)
	})
	if res.Missing {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LString(res.Content))
	return 1
}

type remoteWriteOpts struct {
	Mode  string `lua:"mode" default:"0644" doc:"octal"`
	Owner string `lua:"owner" default:"0:0" doc:"numeric uid:gid"`
}

// g:write(path, content, {mode="0644", owner="0:0"}) -> changed
func remoteWrite(k *conn, L *lua.LState) int {
	g := checkRemote(L)
	path, content := L.CheckString(2), L.CheckString(3)
	var o remoteWriteOpts
	lx.Opts(L, 4, "write", &o)
	p := MachineFile{Name: g.info.Name, Path: path, Content: []byte(content), Mode: 0o644, Check: k.env.Check}
	if o.Mode != "" {
		n, err := lx.ParseMode(o.Mode)
		if err != nil {
			lx.Raisef(L, "write %s: %v", path, err)
		}
		p.Mode = uint32(n)
	}
	if o.Owner != "" {
		if _, err := fmt.Sscanf(o.Owner, "%d:%d", &p.UID, &p.GID); err != nil {
			lx.Raisef(L, "write %s: owner %q: want numeric uid:gid", path, o.Owner)
		}
	}
	var res MachineWritten
	g.block(k, L, func(ctx context.Context) error { return g.call(ctx, MethodWrite, p, &res) })
	targetlua.ReportPut(L, k.env, "cluster", "write", g.Describe()+"/"+strings.TrimLeft(path, "/"),
		target.PutResult{Changed: res.Changed, Diff: res.Diff, Detail: res.Detail})
	L.Push(lua.LBool(res.Changed))
	return 1
}

type runOpts struct {
	Check *bool `lua:"check" doc:"run the far playbook in check mode (default: as this run)"`
}

// cluster.run(host, playbook, {vars}, {check}): the playbook (a file here,
// relative to this playbook) runs on host through its tinyfarm; its
// changes join this run's recap, each subject prefixed with the host.
func luaRun(k *conn, L *lua.LState) int {
	host := hostName(L, L.Get(1), "cluster.run")
	file := L.CheckString(2)
	var vars map[string]any
	if t, ok := L.Get(3).(*lua.LTable); ok {
		m, ok := lx.ToGo(t).(map[string]any)
		if !ok && t.Len() > 0 {
			lx.Raise(L, fmt.Errorf("cluster.run %s: vars: want a table with names as keys: %w", file, ErrInvalid))
		}
		vars = m
	} else if L.Get(3) != lua.LNil {
		lx.Raise(L, fmt.Errorf("cluster.run %s: vars: want a table, got %s: %w", file, L.Get(3).Type(), ErrInvalid))
	}
	var o runOpts
	lx.Opts(L, 4, "cluster.run", &o)
	check := k.env.Check
	if o.Check != nil {
		check = *o.Check || k.env.Check
	}
	path := file
	if !filepath.IsAbs(path) {
		path = filepath.Join(k.env.Dir(), path)
	}
	src, err := os.ReadFile(path)
	if err != nil {
		lx.Raise(L, fmt.Errorf("cluster.run %s: %w", file, err))
	}
	// The far changes and logs are this run's, reported as they arrive
	// (Report may run while L is blocked), in their order: the session's
	// reader hands a call's events over one at a time.
	var mu sync.Mutex
	live := true
	var res MachineRunResult
	runErr := k.env.Block(L, func(ctx context.Context) error {
		m, err := k.machine(ctx, host)
		if err != nil {
			return err
		}
		return m.Call(ctx, MethodRun, MachineRun{Name: filepath.Base(file), Source: string(src), Vars: vars, Check: check}, &res,
			func(raw json.RawMessage) {
				var ev engine.Event
				if json.Unmarshal(raw, &ev) != nil {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if live {
					reportFar(k.env, L, host, ev)
				}
			})
	})
	// A call given up (Ctrl-C) may still get events: they belong to no
	// task of this run any more.
	mu.Lock()
	live = false
	mu.Unlock()
	if runErr != nil {
		lx.Raise(L, fmt.Errorf("cluster.run %s on %s: %w", file, host, runErr))
	}
	var rec engine.Recap
	if len(res.Recap) > 0 {
		if err := json.Unmarshal(res.Recap, &rec); err != nil {
			lx.Raise(L, fmt.Errorf("cluster.run %s on %s: its recap: %w", file, host, err))
		}
	}
	L.Push(lx.FromGo(L, map[string]any{"host": host, "tasks": rec.Tasks, "ok": rec.OK, "changed": rec.Changed,
		"may_change": rec.MayChange, "failed": rec.Failed, "skipped": rec.Skipped}))
	return 1
}

// reportFar reports one event of a far run as this run's: a change with
// its subject prefixed by the host (and its far task in the detail), into
// L's running task; a log or error as a log line naming the host. The far
// tasks themselves are not counted here: the far changes count in the
// controller's task that called cluster.run, once each.
func reportFar(env *engine.Env, L *lua.LState, host string, ev engine.Event) {
	switch ev.Type {
	case "change":
		if ev.Change != nil {
			c := *ev.Change
			c.Subject = host + ":" + c.Subject
			if ev.Task != "" {
				c.Detail = strings.TrimSpace("[" + ev.Task + "] " + c.Detail)
			}
			env.Report(L, c)
		}
	case "log":
		env.Logf("%s: %s", host, ev.Msg)
	case "error":
		env.Logf("%s: error: %s", host, ev.Msg)
	}
}
