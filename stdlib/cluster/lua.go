package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
)

// Module is require("cluster"): the hosts of this host's cluster, placement
// and cluster-wide claims. It connects on first use with the cluster
// configuration of the state directory (<state>/cluster).
func Module() engine.Module {
	return engine.ModuleFunc{ModName: "cluster", Open: open, DocList: docs()}
}

type placeOpts struct {
	Mem      lx.Size `lua:"mem,required" doc:"the guest's memory"`
	Driver   string  `lua:"driver" doc:"a driver the host must have (ns, qemu); default any"`
	Strategy string  `lua:"strategy" default:"spread" doc:"spread (most free memory) or pack (fullest that fits)"`
}

type claimOpts struct {
	Name   string     `lua:"name,required" doc:"the guest's name, unique in the cluster"`
	Host   lua.LValue `lua:"host,required" doc:"the host it runs on: what cluster.place returns, or its name"`
	Mem    lx.Size    `lua:"mem" doc:"its memory, counted by later placements"`
	Driver string     `lua:"driver" doc:"its driver"`
}

type routeOpts struct {
	VHost string     `lua:"vhost,required" doc:"the host name every host's proxy serves"`
	Host  lua.LValue `lua:"host,required" doc:"the host the site's guest runs on: a name or what cluster.place returns"`
	Addr  string     `lua:"addr,required" doc:"ip:port of the site as that host reaches it (the guest's IP and port)"`
	Guest string     `lua:"guest" doc:"the guest's name, for the listing"`
}

// hostName reads a host option: a name, or a host table from cluster.place.
func hostName(L *lua.LState, v lua.LValue, fn string) string {
	host := lua.LVAsString(v)
	if t, ok := v.(*lua.LTable); ok {
		host = lua.LVAsString(t.RawGetString("name"))
	}
	if host == "" {
		lx.Raise(L, fmt.Errorf("%s: host: want a host name or what cluster.place returns: %w", fn, ErrInvalid))
	}
	return host
}

// conn is the module's lazily opened client, one per engine.
type conn struct {
	env  *engine.Env
	once sync.Once
	c    *Client
	err  error
	sess hostSessions // lua_remote.go
}

func (k *conn) get(ctx context.Context) (*Client, error) {
	k.once.Do(func() {
		cfg, err := LoadConfig(Dir(k.env.StateDir))
		if err != nil {
			k.err = err
			return
		}
		k.c, k.err = Connect(context.Background(), cfg)
	})
	return k.c, k.err
}

// call runs fn with the cluster client off the Lua thread (engine.Env.Block)
// and raises its error at the playbook's line.
func (k *conn) call(L *lua.LState, fn func(ctx context.Context, c *Client) error) {
	err := k.env.Block(L, func(ctx context.Context) error {
		c, err := k.get(ctx)
		if err != nil {
			return err
		}
		return fn(ctx, c)
	})
	if err != nil {
		lx.Raise(L, err)
	}
}

func open(env *engine.Env) lua.LGFunction {
	return (&conn{env: env}).loader()
}

// loader is the module's loader on k (a test's conn may come with its
// machine sessions already open).
func (k *conn) loader() lua.LGFunction {
	return func(L *lua.LState) int {
		mod := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"hosts":   func(L *lua.LState) int { return luaHosts(k, L) },
			"guests":  func(L *lua.LState) int { return luaGuests(k, L) },
			"place":   func(L *lua.LState) int { return luaPlace(k, L) },
			"claim":   func(L *lua.LState) int { return luaClaim(k, L) },
			"route":   func(L *lua.LState) int { return luaRoute(k, L) },
			"release": func(L *lua.LState) int { return luaRelease(k, L) },
			"guest":   func(L *lua.LState) int { return luaGuest(k, L) },
			"run":     func(L *lua.LState) int { return luaRun(k, L) },
			"login":   func(L *lua.LState) int { return luaLogin(k, L) },
		})
		remoteMetatable(k, L)
		L.Push(mod)
		return 1
	}
}

func hostValue(L *lua.LState, h Host) lua.LValue {
	return lx.FromGo(L, map[string]any{
		"name": h.Name, "state": string(h.State), "mem": h.Mem, "committed": h.Committed, "free": h.Free(),
		"cpus": h.CPUs, "drivers": h.Drivers, "version": h.Version, "ssh_host_key": h.SSHHostKey, "proxy": h.ProxyAddr,
	})
}

func guestValue(L *lua.LState, g GuestRecord) lua.LValue {
	subnet := ""
	if p, err := netip.ParsePrefix(g.IP); err == nil {
		subnet = p.Masked().String()
	}
	return lx.FromGo(L, map[string]any{
		"name": g.Name, "host": g.Host, "ip": g.IP, "gateway": g.Gateway, "subnet": subnet, "uid_base": g.UIDBase,
		"mem": g.Mem, "driver": g.Driver, "state": g.State,
	})
}

// cluster.hosts() -> {{name, state, mem, committed, free, cpus, drivers, version, ssh_host_key}, ...}
func luaHosts(k *conn, L *lua.LState) int {
	var hosts []Host
	k.call(L, func(ctx context.Context, c *Client) (err error) {
		hosts, err = c.Hosts(ctx)
		return err
	})
	t := L.NewTable()
	for _, h := range hosts {
		t.Append(hostValue(L, h))
	}
	L.Push(t)
	return 1
}

// cluster.guests() -> {{name, host, ip, state, ...}, ...}
func luaGuests(k *conn, L *lua.LState) int {
	var gs []GuestRecord
	k.call(L, func(ctx context.Context, c *Client) (err error) {
		gs, err = c.Guests(ctx)
		return err
	})
	t := L.NewTable()
	for _, g := range gs {
		t.Append(guestValue(L, g))
	}
	L.Push(t)
	return 1
}

// cluster.place{mem, driver, strategy = "spread"|"pack"} -> host
func luaPlace(k *conn, L *lua.LState) int {
	o := placeOpts{Strategy: "spread"}
	lx.Opts(L, 1, "cluster.place", &o)
	spec := PlaceSpec{Mem: int64(o.Mem), Driver: o.Driver, Strategy: o.Strategy}
	var h Host
	k.call(L, func(ctx context.Context, c *Client) (err error) {
		h, err = c.Place(ctx, spec)
		return err
	})
	L.Push(hostValue(L, h))
	return 1
}

// cluster.claim{name, host, mem, driver} -> {name, host, ip, gateway, uid_base}
func luaClaim(k *conn, L *lua.LState) int {
	var o claimOpts
	lx.Opts(L, 1, "cluster.claim", &o)
	host := hostName(L, o.Host, "cluster.claim")
	ch := engine.Change{Module: "cluster", Action: "claim", Subject: "guest:" + o.Name, Status: engine.StatusChanged, Detail: "on " + host}
	var rec GuestRecord
	k.call(L, func(ctx context.Context, c *Client) (err error) {
		spec := GuestSpec{Name: o.Name, Host: host, Mem: int64(o.Mem), Driver: o.Driver}
		// The preview is the existing claim, or the one a claim would make
		// now: check mode shows (and returns) it without claiming.
		rec, err = c.PreviewClaim(ctx, spec)
		if err != nil {
			return err
		}
		gs, err := c.Guests(ctx)
		if err != nil {
			return err
		}
		for _, g := range gs {
			if g.Name == o.Name {
				ch.Status = engine.StatusOK
				rec.State = g.State
			}
		}
		if ch.Status == engine.StatusOK || k.env.Check {
			return nil
		}
		rec, err = c.ClaimGuest(ctx, spec)
		return err
	})
	if ch.Status != engine.StatusOK {
		ch.Detail += " " + rec.IP
	}
	k.env.Report(L, ch)
	L.Push(guestValue(L, rec))
	return 1
}

// cluster.route{vhost, host, addr, guest}: every host's proxy serves vhost.
func luaRoute(k *conn, L *lua.LState) int {
	var o routeOpts
	lx.Opts(L, 1, "cluster.route", &o)
	r := Route{VHost: o.VHost, Host: hostName(L, o.Host, "cluster.route"), Addr: o.Addr, Guest: o.Guest}
	ch := engine.Change{Module: "cluster", Action: "route", Subject: "vhost:" + r.VHost, Status: engine.StatusChanged, Detail: r.Host + " " + r.Addr}
	k.call(L, func(ctx context.Context, c *Client) (err error) {
		routes, err := c.Routes(ctx)
		if err != nil {
			return err
		}
		for _, have := range routes {
			if have == (Route{VHost: strings.ToLower(r.VHost), Host: r.Host, Addr: r.Addr, Guest: r.Guest}) {
				ch.Status = engine.StatusOK
			}
		}
		if ch.Status == engine.StatusOK || k.env.Check {
			return nil
		}
		return c.SetRoute(ctx, r)
	})
	k.env.Report(L, ch)
	return 0
}

// cluster.release(name): drops the guest's claim and its routes.
func luaRelease(k *conn, L *lua.LState) int {
	name := L.CheckString(1)
	ch := engine.Change{Module: "cluster", Action: "release", Subject: "guest:" + name, Status: engine.StatusOK}
	k.call(L, func(ctx context.Context, c *Client) (err error) {
		gs, err := c.Guests(ctx)
		if err != nil {
			return err
		}
		for _, g := range gs {
			if g.Name == name {
				ch.Status, ch.Detail = engine.StatusChanged, "on "+g.Host
			}
		}
		if ch.Status == engine.StatusOK || k.env.Check {
			return nil
		}
		return c.ReleaseGuest(ctx, name)
	})
	k.env.Report(L, ch)
	return 0
}
