package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
)

// Module is require("proxy"). resolver returns the Resolver of guest names
// for a run (stdlib/all wires the guests module in); nil, or a nil result,
// means NoGuests. The registry lives in <StateDir>/proxy.
//
// Lua surface (every mutating call is idempotent, reports ok or changed with
// a unified diff of the routing table, and writes nothing in check mode):
//
//	proxy.vhost{host, to, port, replace=false}    -> changed
//	proxy.forward{listen, to, port, replace=false} -> changed
//	proxy.remove{host=...} / proxy.remove{listen=...} -> changed
//	proxy.routes() -> {vhosts={{host, to, guest, addr, port, to_port, backend}...}, forwards={{listen, ...}...}}
//	proxy.nginx{path, stream_path, conf, prefix, command, reload, pid_file,
//	            listen, default_server, keepalive} -> changed
//	proxy.serve{listen=":80", access_log, <limits>} -> the bound address ("127.0.0.1:41234")
//	proxy.daemon{listen=":80", stop, <limits>} -> the address
//
// <limits> are optional: read_header_timeout, idle_timeout, body_timeout,
// write_timeout, backend_timeout (seconds or "30s"), max_conns, max_conns_per_ip,
// max_headers (see Limits and Options for the defaults).
//
// `to` is an address ("10.0.0.5", "backend.example.com", "10.0.0.5:8080"),
// a guest name, or a guest object (any userdata whose value has a
// GuestName() string method, such as a colinux guest).
//
// proxy.serve runs the embedded proxy inside this tinyfarm process, in the
// background, until the run (or REPL session) ends. It is for playbooks and
// tests that need the proxy while they run; a long-lived proxy is
// `tinyfarm proxy serve`, which serves the same registry.
func Module(resolver func(env *engine.Env) Resolver) engine.Module {
	return engine.ModuleFunc{ModName: "proxy", Open: func(env *engine.Env) lua.LGFunction {
		var res Resolver
		if resolver != nil {
			res = resolver(env)
		}
		if res == nil {
			res = noGuests{}
		}
		m := &luaModule{env: env, reg: NewRegistry(filepath.Join(env.StateDir, "proxy"), res), servers: map[string]*luaServer{}}
		return m.open
	}, DocList: docs()}
}

// NoGuests is the resolver argument of Module for a build without a guests
// module: every guest name is unknown.
func NoGuests(*engine.Env) Resolver { return noGuests{} }

type noGuests struct{}

func (noGuests) ResolveGuest(_ context.Context, name string, _ int) (string, error) {
	return "", fmt.Errorf("unknown guest %q: define it with colinux.guest: %w", name, ErrNotFound)
}

// luaModule is the module's state for one run. Lua calls hold the VM lock,
// so the fields need no lock of their own.
type luaModule struct {
	env *engine.Env
	reg *Registry
	// routesPending: in check mode, a route call would have changed the
	// table, so what proxy.nginx renders from the registry is stale.
	routesPending bool
	servers       map[string]*luaServer // by listen address as given
}

type luaServer struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
}

func (m *luaModule) open(L *lua.LState) int {
	mod := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"vhost":   m.vhost,
		"forward": m.forward,
		"remove":  m.remove,
		"routes":  m.routes,
		"nginx":   m.nginx,
		"serve":   m.serve,
		"daemon":  m.daemon,
	})
	L.Push(mod)
	return 1
}

type vhostOpts struct {
	Host    string     `lua:"host,required"`
	To      lua.LValue `lua:"to,required"`
	Port    int        `lua:"port"`
	Replace bool       `lua:"replace"`
}

type forwardOpts struct {
	Listen  string     `lua:"listen,required"`
	To      lua.LValue `lua:"to,required"`
	Port    int        `lua:"port"`
	Replace bool       `lua:"replace"`
}

type removeOpts struct {
	Host   string `lua:"host"`
	Listen string `lua:"listen"`
}

type nginxOpts struct {
	Path          string   `lua:"path,required"`
	StreamPath    string   `lua:"stream_path"`
	Conf          string   `lua:"conf"`
	Prefix        string   `lua:"prefix"`
	Command       []string `lua:"command"`
	Reload        bool     `lua:"reload"`
	PIDFile       string   `lua:"pid_file"`
	Listen        string   `lua:"listen"`
	DefaultServer bool     `lua:"default_server"`
	Keepalive     int      `lua:"keepalive"`
}

type serveOpts struct {
	Listen    string `lua:"listen"`
	AccessLog string `lua:"access_log"`
	Limits
}

// options decodes the options table at 1, which must be there.
func options(L *lua.LState, fn string, dst any) {
	if L.Get(1) == lua.LNil {
		lx.Raisef(L, "%s: want an options table", fn)
	}
	lx.Opts(L, 1, fn, dst)
}

// guestTarget turns a `to` option into the string the registry resolves.
func guestTarget(L *lua.LState, fn string, v lua.LValue) string {
	switch x := v.(type) {
	case lua.LString:
		return string(x)
	case *lua.LUserData:
		if g, ok := x.Value.(interface{ GuestName() string }); ok {
			return g.GuestName()
		}
	}
	lx.Raisef(L, "%s: option to: want an address, a guest name or a guest, got %s", fn, v.Type())
	return ""
}

// reportRoute reports a route change and pushes "changed". In check mode
// a subject an earlier call would already change is "may change".
func (m *luaModule) reportRoute(L *lua.LState, action, subject string, ch Change) {
	c := engine.Change{Module: "proxy", Action: action, Subject: subject, Status: engine.StatusOK, Diff: ch.Diff}
	if ch.Changed {
		c.Status = engine.StatusChanged
		if m.env.Check {
			if m.env.Pending(subject) {
				c.Status, c.Detail = engine.StatusMayChange, "an earlier step would change it first"
			}
			m.routesPending = true
		}
	}
	m.env.Report(L, c)
	L.Push(lua.LBool(ch.Changed))
}

// proxy.vhost{host, to, port, replace} -> changed
func (m *luaModule) vhost(L *lua.LState) int {
	var o vhostOpts
	options(L, "proxy.vhost", &o)
	spec := VHostSpec{Host: o.Host, To: guestTarget(L, "proxy.vhost", o.To), Port: o.Port, Replace: o.Replace}
	var ch Change
	err := m.env.Block(L, func(ctx context.Context) error {
		var err error
		ch, err = m.reg.VHost(ctx, spec, ChangeOptions{Check: m.env.Check})
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	subject, _ := NormalizeHost(o.Host)
	m.reportRoute(L, "vhost", subject, ch)
	return 1
}

// proxy.forward{listen, to, port, replace} -> changed
func (m *luaModule) forward(L *lua.LState) int {
	var o forwardOpts
	options(L, "proxy.forward", &o)
	spec := ForwardSpec{Listen: o.Listen, To: guestTarget(L, "proxy.forward", o.To), Port: o.Port, Replace: o.Replace}
	var ch Change
	err := m.env.Block(L, func(ctx context.Context) error {
		var err error
		ch, err = m.reg.Forward(ctx, spec, ChangeOptions{Check: m.env.Check})
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	subject, _ := normalizeListen(o.Listen)
	m.reportRoute(L, "forward", subject, ch)
	return 1
}

// proxy.remove{host} or proxy.remove{listen} -> changed
func (m *luaModule) remove(L *lua.LState) int {
	var o removeOpts
	options(L, "proxy.remove", &o)
	var ch Change
	err := m.env.Block(L, func(ctx context.Context) error {
		var err error
		ch, err = m.reg.Remove(ctx, RemoveSpec{Host: o.Host, Listen: o.Listen}, ChangeOptions{Check: m.env.Check})
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	subject, _ := NormalizeHost(o.Host)
	if o.Listen != "" {
		subject, _ = normalizeListen(o.Listen)
	}
	m.reportRoute(L, "remove", subject, ch)
	return 1
}

// proxy.routes() -> {vhosts = {...}, forwards = {...}}
func (m *luaModule) routes(L *lua.LState) int {
	var t Table
	err := m.env.Block(L, func(ctx context.Context) error {
		var err error
		t, err = m.reg.Routes(ctx)
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	L.Push(routesTable(L, t))
	return 1
}

func routesTable(L *lua.LState, t Table) *lua.LTable {
	route := func(key, val, to string, guest bool, addr string, port, toPort int, backend string) *lua.LTable {
		r := L.CreateTable(0, 7)
		r.RawSetString(key, lua.LString(val))
		r.RawSetString("to", lua.LString(to))
		r.RawSetString("guest", lua.LBool(guest))
		r.RawSetString("addr", lua.LString(addr))
		r.RawSetString("port", lua.LNumber(port))
		r.RawSetString("to_port", lua.LNumber(askedPort(port, toPort)))
		r.RawSetString("backend", lua.LString(backend))
		return r
	}
	vh := L.CreateTable(len(t.VHosts), 0)
	for _, v := range t.VHosts {
		vh.Append(route("host", v.Host, v.To, v.Guest, v.Addr, v.Port, v.ToPort, v.Backend()))
	}
	fw := L.CreateTable(len(t.Forwards), 0)
	for _, f := range t.Forwards {
		fw.Append(route("listen", f.Listen, f.To, f.Guest, f.Addr, f.Port, f.ToPort, f.Backend()))
	}
	out := L.CreateTable(0, 2)
	out.RawSetString("vhosts", vh)
	out.RawSetString("forwards", fw)
	return out
}

// proxy.nginx{path, stream_path, conf, prefix, command, reload, pid_file,
// listen, default_server, keepalive} -> changed
func (m *luaModule) nginx(L *lua.LState) int {
	var o nginxOpts
	options(L, "proxy.nginx", &o)
	cfg := NginxConfig{
		Path: o.Path, StreamPath: o.StreamPath, Conf: o.Conf, Prefix: o.Prefix, Command: o.Command,
		Reload: o.Reload, PIDFile: o.PIDFile, Check: m.env.Check,
		Render: NginxOptions{Listen: o.Listen, DefaultServer: o.DefaultServer, Keepalive: o.Keepalive},
	}
	var ch Change
	err := m.env.Block(L, func(ctx context.Context) error {
		t, err := m.reg.Routes(ctx)
		if err != nil {
			return err
		}
		ch, err = ApplyNginx(ctx, t, cfg)
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	c := engine.Change{Module: "proxy", Action: "nginx", Subject: o.Path, Status: engine.StatusOK, Diff: ch.Diff}
	if ch.Changed {
		c.Status = engine.StatusChanged
	}
	if m.env.Check && (m.routesPending || m.env.Pending(o.Path)) {
		c.Status, c.Detail = engine.StatusMayChange, "an earlier step would change the routes first"
	}
	m.env.Report(L, c)
	L.Push(lua.LBool(ch.Changed))
	return 1
}

type daemonOpts struct {
	Listen string `lua:"listen"`
	Stop   bool   `lua:"stop"`
	Limits
}

// proxy.daemon{listen=":80"} -> address: makes sure a detached
// `tinyfarm proxy serve` serves this state directory's routes on listen,
// starting it if needed (changed) and leaving a running one alone (ok; it
// reloads routes by itself). The farm has one daemon: one running on
// another address (or with other limits) moves, and the change says from
// where. proxy.daemon{stop=true} ends it.
func (m *luaModule) daemon(L *lua.LState) int {
	var o daemonOpts
	lx.Opts(L, 1, "proxy.daemon", &o)
	if o.Listen == "" {
		o.Listen = ":80"
	}
	dir := filepath.Dir(m.reg.Path())
	pid, addr, running := RunningDaemon(dir)
	c := engine.Change{Module: "proxy", Action: "daemon", Subject: "proxy-daemon:" + dir, Status: engine.StatusOK}
	if o.Stop {
		if running {
			c.Status, c.Detail = engine.StatusChanged, fmt.Sprintf("stop pid %d", pid)
		}
		if !m.env.Check {
			// Also when it is not running (killed): `tinyfarm boot` must not
			// start a daemon the playbook stopped.
			if err := m.env.Block(L, func(ctx context.Context) error { return ForgetDaemon(ctx, dir) }); err != nil {
				lx.Raise(L, err)
			}
		}
		m.env.Report(L, c)
		L.Push(lua.LString(addr))
		return 1
	}
	cfg := DaemonConfig{Dir: dir, Listen: o.Listen, Limits: o.Limits, Env: []string{"TINYFARM_HOME=" + m.env.StateDir}}
	if m.env.Check {
		want, _ := os.ReadFile(filepath.Join(dir, "serve.addr.want"))
		switch w := strings.TrimSpace(string(want)); {
		case !running:
			c.Status, c.Detail = engine.StatusChanged, "start on "+o.Listen
		case w != cfg.want():
			c.Status, c.Detail = engine.StatusChanged, fmt.Sprintf("move from %s (pid %d) to %s", w, pid, cfg.want())
		}
		m.env.Report(L, c)
		L.Push(lua.LString(o.Listen))
		return 1
	}
	var st DaemonStatus
	err := m.env.Block(L, func(ctx context.Context) (err error) {
		st, err = EnsureDaemon(ctx, cfg)
		return err
	})
	if err != nil {
		lx.Raise(L, err)
	}
	if st.Started {
		c.Status, c.Detail = engine.StatusChanged, fmt.Sprintf("pid %d on %s", st.PID, st.Addr)
		if st.Moved != "" {
			c.Detail = fmt.Sprintf("moved from %s (pid %d stopped): %s", st.Moved, pid, c.Detail)
		}
	}
	m.env.Report(L, c)
	L.Push(lua.LString(st.Addr))
	return 1
}

// proxy.serve{listen=":80", access_log} -> bound address. Runs the
// embedded proxy in the background until the engine closes. access_log is
// a file (appended to) or "-" for the run's output.
func (m *luaModule) serve(L *lua.LState) int {
	var o serveOpts
	lx.Opts(L, 1, "proxy.serve", &o)
	if o.Listen == "" {
		o.Listen = ":80"
	}
	c := engine.Change{Module: "proxy", Action: "serve", Subject: o.Listen, Status: engine.StatusChanged}
	if s, ok := m.servers[o.Listen]; ok {
		c.Status = engine.StatusOK
		m.env.Report(L, c)
		L.Push(lua.LString(s.addr))
		return 1
	}
	if m.env.Check {
		c.Status, c.Detail = engine.StatusMayChange, "not started in check mode"
		m.env.Report(L, c)
		L.Push(lua.LString(o.Listen))
		return 1
	}
	var accessLog io.Writer
	var logFile *os.File
	switch o.AccessLog {
	case "":
	case "-":
		accessLog = m.env.Stdout
	default:
		f, err := os.OpenFile(o.AccessLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			lx.Raise(L, fmt.Errorf("proxy serve %s: access log: %w", o.Listen, err))
		}
		accessLog, logFile = f, f
	}
	opts := Options{
		Listen:          o.Listen,
		RoutesFile:      m.reg.Path(),
		AccessLog:       accessLog,
		Logger:          slog.New(slog.NewTextHandler(m.env.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn})),
		ShutdownTimeout: 5 * time.Second,
	}
	o.Limits.Apply(&opts)
	srv, err := NewServer(opts)
	var ln net.Listener
	if err == nil {
		ln, err = net.Listen("tcp", o.Listen)
		if err != nil {
			err = fmt.Errorf("proxy serve %s: %w", o.Listen, err)
		}
	}
	if err != nil {
		if logFile != nil {
			logFile.Close()
		}
		lx.Raise(L, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &luaServer{addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- srv.Serve(ctx, ln) }()
	m.servers[o.Listen] = s
	m.env.OnClose(func() {
		s.cancel()
		if err := <-s.done; err != nil {
			fmt.Fprintf(m.env.Stdout, "proxy serve %s: %v\n", s.addr, err)
		}
		if logFile != nil {
			logFile.Close()
		}
	})
	c.Detail = "serving on " + s.addr + " until the run ends"
	m.env.Report(L, c)
	L.Push(lua.LString(s.addr))
	return 1
}
