package colinux

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

// Module is require("colinux"). drivers are the backends offered (see
// farm.DefaultDrivers); the farm lives in the run's state directory.
func Module(drivers map[string]driver.Runner) engine.Module {
	return engine.ModuleFunc{ModName: "colinux", Open: func(env *engine.Env) lua.LGFunction {
		m := &luaMod{env: env, farm: farm.New(env.StateDir, farm.Options{Drivers: drivers})}
		env.OnClose(m.farm.Close) // the guests' shared SSH connections end with the run
		return m.loader
	}, DocList: docs()}
}

// FarmFor is the farm a run's colinux module uses (other modules resolve
// guest names through it).
func FarmFor(env *engine.Env, drivers map[string]driver.Runner) *farm.Farm {
	return farm.New(env.StateDir, farm.Options{Drivers: drivers})
}

type luaMod struct {
	env  *engine.Env
	farm *farm.Farm
}

const guestType = "tinyfarm.colinux.guest"

func (m *luaMod) loader(L *lua.LState) int {
	mt := L.NewTypeMetatable(guestType)
	methods := map[string]lua.LGFunction{
		"start": m.start, "stop": m.stop, "restart": m.restart, "status": m.status,
		"wait_ready": m.waitReady, "ssh": m.ssh, "exec": m.exec, "console": m.console,
		"suspend": m.suspend, "resume": m.resume, "destroy": m.destroy, "conf": m.conf,
		"addr": m.addr, "read": m.read, "write": m.write, "template": m.template,
	}
	for k, fn := range m.opsMethods() { // lua_ops.go
		methods[k] = fn
	}
	idx := L.SetFuncs(L.NewTable(), methods)
	mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		g := checkGuest(L)
		key := L.CheckString(2)
		switch key {
		case "name":
			L.Push(lua.LString(g.Def.Name))
		case "ip":
			ip, _, _ := strings.Cut(g.Def.IP, "/")
			L.Push(lua.LString(ip))
		case "driver":
			L.Push(lua.LString(g.Def.Driver))
		case "mem":
			L.Push(lua.LNumber(g.Def.MemBytes))
		case "host_key":
			L.Push(lua.LString(g.Def.HostKey))
		default:
			L.Push(idx.RawGetString(key))
		}
		return 1
	}))
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		g := checkGuest(L)
		ctx, cancel := context.WithTimeout(m.env.Context(L), 2*time.Second)
		defer cancel()
		state := "unknown"
		if st, err := g.Status(ctx); err == nil {
			state = string(st.State)
		}
		ip, _, _ := strings.Cut(g.Def.IP, "/")
		L.Push(lua.LString(fmt.Sprintf("guest %s (%s, %s, %s)", g.Def.Name, g.Def.Driver, state, ip)))
		return 1
	}))
	// Methods are also reachable by name for tab completion in the REPL.
	mt.RawSetString("methods", idx)
	L.Push(L.SetFuncs(L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"guest": m.guest, "get": m.get, "list": m.list, "host": m.host, "plan": m.plan, "network": m.network,
	}), m.opsFuncs()))
	return 1
}

func (m *luaMod) push(L *lua.LState, g *farm.Guest) lua.LValue {
	ud := L.NewUserData()
	ud.Value = g
	ud.Metatable = L.GetTypeMetatable(guestType)
	return ud
}

func checkGuest(L *lua.LState) *farm.Guest {
	ud, ok := L.Get(1).(*lua.LUserData)
	if ok {
		if g, ok := ud.Value.(*farm.Guest); ok {
			return g
		}
	}
	L.ArgError(1, "guest expected (call methods as g:start(), not g.start())")
	return nil
}

type guestOpts struct {
	Name      string            `lua:"name,required"`
	Disk      lua.LValue        `lua:"disk" doc:"a path, or what image.build returns (its host key is pinned)"`
	Disks     []string          `lua:"disks" doc:"more disk images"`
	Base      lua.LValue        `lua:"base" doc:"ns scatter: a disk shared read-only by guests built alike (a path or what image.build returns); disk is then the guest's own layer (default <state>/disks/NAME.layer.img, made at first start)"`
	Mem       lx.Size           `lua:"mem" default:"128M" doc:"memory quota"`
	CPUs      float64           `lua:"cpus" default:"no limit" doc:"CPU share in cores (ns: a cgroup quota; qemu: vCPUs, rounded up, 1 when unset)"`
	Driver    string            `lua:"driver" doc:"ns, qemu or colinux (default: ns as root on Linux)"`
	Layout    string            `lua:"layout" doc:"scatter or frugal (default: the disk's)"`
	Core      string            `lua:"core" doc:"core.gz for frugal guests"`
	Kernel    string            `lua:"kernel" doc:"kernel image (qemu, colinux)"`
	Initrd    []string          `lua:"initrd" doc:"initrds (qemu, colinux)"`
	Bootcodes lua.LValue        `lua:"bootcodes" doc:"Tiny Core boot codes: a table or a kernel line"`
	Forward   lua.LValue        `lua:"forward" doc:"host port -> guest port, {[2201]=22} (qemu user networking)"`
	HostKey   string            `lua:"host_key" doc:"the guest's SSH host key to pin"`
	IP        string            `lua:"ip" doc:"a fixed farm IP (default: allocated once and kept)"`
	Accel     string            `lua:"accel" doc:"qemu accelerator: tcg (default) or kvm"`
	UserNS    *bool             `lua:"userns" doc:"run an ns guest in a user namespace (default where the platform allows)"`
	NetRaw    bool              `lua:"net_raw" doc:"ns: keep CAP_NET_RAW (raw and packet sockets); the farm bridge still filters the guest's frames"`
	Net       string            `lua:"net" doc:"qemu: user (default) or bridge"`
	Labels    map[string]string `lua:"labels" doc:"free-form key = value labels kept in the definition"`
	DiskRO    bool              `lua:"disk_ro" doc:"attach the disks read-only; guests that all set it may share a disk"`
	Autostart bool              `lua:"autostart" doc:"tinyfarm boot starts this guest (as LXD's boot.autostart)"`
	Priority  int               `lua:"autostart_priority" doc:"tinyfarm boot starts higher priorities first; one priority is one group, started together"`
	Delay     time.Duration     `lua:"autostart_delay" doc:"after this guest's group is ready, wait this long before the next group"`
	Timeout   time.Duration     `lua:"-"`
}

// colinux.guest{name, disk, mem="128M", cpus=1, driver, layout, core,
// kernel, initrd, bootcodes, forward={[2201]=22}, host_key, ip, accel,
// net, userns, net_raw} defines or updates a guest and returns it.
func (m *luaMod) guest(L *lua.LState) int {
	var o guestOpts
	lx.Opts(L, 1, "colinux.guest", &o)
	d := farm.Definition{Name: o.Name, Driver: o.Driver, Disks: o.Disks, MemBytes: int64(o.Mem), CPUs: o.CPUs,
		Layout: driver.Layout(o.Layout), Core: o.Core, Kernel: o.Kernel, Initrds: o.Initrd, HostKey: o.HostKey,
		IP: o.IP, Accel: o.Accel, Net: o.Net, Labels: o.Labels, NetRaw: o.NetRaw,
		DiskRO: o.DiskRO, Autostart: o.Autostart, AutostartPriority: o.Priority, AutostartDelay: o.Delay}
	switch v := o.Disk.(type) {
	case nil, *lua.LNilType:
	case lua.LString:
		d.Disk = string(v)
	case *lua.LTable: // what image.build returns: {path, host_key, layout}
		d.Disk = lua.LVAsString(v.RawGetString("path"))
		if d.HostKey == "" {
			d.HostKey = lua.LVAsString(v.RawGetString("host_key"))
		}
		if d.Layout == "" {
			d.Layout = driver.Layout(lua.LVAsString(v.RawGetString("layout")))
		}
		if d.Core == "" {
			d.Core = lua.LVAsString(v.RawGetString("core"))
		}
		if o.Bootcodes == nil || o.Bootcodes == lua.LNil {
			switch bc := v.RawGetString("bootcodes").(type) {
			case lua.LString:
				d.Bootcodes = string(bc)
			case *lua.LTable:
				d.Bootcodes = bootcodeWords(bc)
			}
		}
	default:
		lx.Raisef(L, "colinux.guest %s: disk: want a path or what image.build returns, got %s", o.Name, v.Type())
	}
	switch v := o.Base.(type) {
	case nil, *lua.LNilType:
	case lua.LString:
		d.Base = string(v)
	case *lua.LTable: // what image.build returns: its host key and boot codes are the guest's
		d.Base = lua.LVAsString(v.RawGetString("path"))
		if d.HostKey == "" {
			d.HostKey = lua.LVAsString(v.RawGetString("host_key"))
		}
		if bc, ok := v.RawGetString("bootcodes").(lua.LString); ok && (o.Bootcodes == nil || o.Bootcodes == lua.LNil) {
			d.Bootcodes = string(bc)
		}
	default:
		lx.Raisef(L, "colinux.guest %s: base: want a path or what image.build returns, got %s", o.Name, v.Type())
	}
	switch v := o.Bootcodes.(type) {
	case nil, *lua.LNilType:
	case lua.LString:
		d.Bootcodes = string(v)
	case *lua.LTable:
		d.Bootcodes = bootcodeWords(v)
	default:
		lx.Raisef(L, "colinux.guest %s: bootcodes: want a string or a table, got %s", o.Name, v.Type())
	}
	if t, ok := o.Forward.(*lua.LTable); ok {
		var bad error
		t.ForEach(func(k, v lua.LValue) {
			hp, ok1 := k.(lua.LNumber)
			gp, ok2 := v.(lua.LNumber)
			if !ok1 || !ok2 {
				bad = fmt.Errorf("forward: want {[hostport] = guestport}, got %s = %s", k, v)
				return
			}
			d.Forwards = append(d.Forwards, driver.Forward{Proto: "tcp", HostPort: int(hp), GuestPort: int(gp)})
		})
		if bad != nil {
			lx.Raisef(L, "colinux.guest %s: %v", o.Name, bad)
		}
		sort.Slice(d.Forwards, func(i, j int) bool { return d.Forwards[i].HostPort < d.Forwards[j].HostPort })
	} else if o.Forward != nil && o.Forward != lua.LNil {
		lx.Raisef(L, "colinux.guest %s: forward: want {[hostport] = guestport}, got %s", o.Name, o.Forward.Type())
	}
	m.farm.FillDefaults(&d, o.UserNS)
	if err := m.releaseDefaults(L, &d); err != nil {
		lx.Raise(L, fmt.Errorf("colinux.guest %s: %w", d.Name, err))
	}
	var res farm.DefineResult
	m.block(L, func(ctx context.Context) (err error) {
		res, err = m.farm.DefineLive(ctx, d, farm.ChangeOptions{Check: m.env.Check})
		return
	})
	ch := engine.Change{Module: "colinux", Action: "guest", Subject: "guest:" + d.Name, Status: engine.StatusOK, Diff: res.Diff}
	if res.Changed {
		ch.Status = engine.StatusChanged
		var notes []string
		if res.Created {
			notes = append(notes, "defined")
		}
		if len(res.Live) > 0 {
			notes = append(notes, "applied live: "+strings.Join(res.Live, ", "))
		}
		if len(res.RestartNeeded) > 0 {
			notes = append(notes, "restart needed: "+strings.Join(res.RestartNeeded, ", "))
		}
		ch.Detail = strings.Join(notes, "; ")
	}
	m.env.Report(L, ch)
	L.Push(m.push(L, m.farm.GuestOf(res.Def)))
	return 1
}

// colinux.get(name) -> guest or nil
func (m *luaMod) get(L *lua.LState) int {
	g, err := m.farm.Guest(m.env.Context(L), L.CheckString(1))
	if errors.Is(err, farm.ErrNotFound) {
		L.Push(lua.LNil)
		return 1
	}
	if err != nil {
		lx.Raise(L, err)
	}
	L.Push(m.push(L, g))
	return 1
}

type listOpts struct {
	Limit bool `lua:"limit"` // only the guests inside --limit
}

// colinux.list{limit=false} -> {{name, driver, state, ip, mem}, ...}
func (m *luaMod) list(L *lua.LState) int {
	var o listOpts
	lx.Opts(L, 1, "colinux.list", &o)
	defs, err := m.farm.List()
	if err != nil {
		lx.Raise(L, err)
	}
	out := L.CreateTable(len(defs), 0)
	for _, d := range defs {
		if o.Limit && !m.env.InLimit(d.Name) {
			continue
		}
		g := m.farm.GuestOf(d)
		st, _ := g.Status(m.env.Context(L))
		ip, _, _ := strings.Cut(d.IP, "/")
		out.Append(lx.FromGo(L, map[string]any{"name": d.Name, "driver": d.Driver, "state": string(st.State),
			"reason": st.Reason, "ip": ip, "mem": d.MemBytes}))
	}
	L.Push(out)
	return 1
}

func (m *luaMod) host(L *lua.LState) int {
	h, err := m.farm.Host(m.env.Context(L))
	if err != nil {
		lx.Raise(L, err)
	}
	L.Push(lx.FromGo(L, h))
	return 1
}

type planOpts struct {
	Granularity lx.Size `lua:"granularity" default:"128M" doc:"memory per guest (its quota)"`
	Reserve     lx.Size `lua:"reserve" doc:"host memory kept for the host"`
	Guests      int     `lua:"guests" doc:"raise when this many do not fit"`
	Footprint   lx.Size `lua:"footprint" doc:"what a guest really holds of its quota (default: all of it, no overcommit; an ns guest with init, dropbear and nginx on a shared base: 1.6M)"`
	Driver      string  `lua:"driver" doc:"whose per-guest overhead to count (default: the default driver)"`
	Mem         lx.Size `lua:"mem" doc:"memory to plan for (default: the host's)"`
}

// colinux.plan{granularity="128M", reserve, guests, footprint, driver, mem} -> {guests, granularity, usable, mem, reserve, overhead, per_guest}
func (m *luaMod) plan(L *lua.LState) int {
	var o planOpts
	lx.Opts(L, 1, "colinux.plan", &o)
	p, err := m.farm.PlanWith(m.env.Context(L), farm.PlanOptions{Granularity: int64(o.Granularity), Reserve: int64(o.Reserve), Want: o.Guests,
		Footprint: int64(o.Footprint), Driver: o.Driver, MemTotal: int64(o.Mem)})
	if err != nil {
		lx.Raise(L, err)
	}
	L.Push(lx.FromGo(L, p))
	return 1
}

type networkOpts struct {
	Bridge string `lua:"bridge" default:"tfbr0"`
	Subnet string `lua:"subnet" default:"10.77.0.0/24"`
	Remove bool   `lua:"remove" doc:"take the farm's bridge, its guard chains and port filters off the host (refused while guests run on it)"`
}

// colinux.network{bridge, subnet, remove} -> {bridge, subnet, changed}:
// the farm's bridge and subnet, kept in the state dir. Without options it
// only reports them; remove = true takes the network off the host.
func (m *luaMod) network(L *lua.LState) int {
	var o networkOpts
	if L.GetTop() > 0 {
		lx.Opts(L, 1, "colinux.network", &o)
	}
	n, changed := m.farm.Network(), false
	if o.Remove {
		if (o.Bridge != "" && o.Bridge != n.Bridge) || (o.Subnet != "" && o.Subnet != n.Subnet) {
			lx.Raise(L, lx.WithKind(fmt.Errorf("colinux.network: remove: this farm's network is %s %s, not %s %s: leave out bridge and subnet", n.Bridge, n.Subnet, o.Bridge, o.Subnet), lx.KindInvalid))
		}
		res, err := m.farm.RemoveNetwork(farm.ChangeOptions{Check: m.env.Check})
		if err != nil {
			lx.Raise(L, err)
		}
		changed = res.Changed
		ch := engine.Change{Module: "colinux", Action: "network", Subject: "farm network " + n.Bridge + " " + n.Subnet, Status: engine.StatusOK}
		if changed {
			ch.Status, ch.Detail = engine.StatusChanged, "removed"
		}
		m.env.Report(L, ch)
	} else if o != (networkOpts{}) {
		res, err := m.farm.SetNetwork(farm.Network{Bridge: o.Bridge, Subnet: o.Subnet}, farm.ChangeOptions{Check: m.env.Check})
		if err != nil {
			lx.Raise(L, err)
		}
		n, changed = res.Network, res.Changed
		ch := engine.Change{Module: "colinux", Action: "network", Subject: "farm network " + n.Bridge + " " + n.Subnet, Status: engine.StatusOK, Diff: res.Diff}
		if changed {
			ch.Status = engine.StatusChanged
		}
		m.env.Report(L, ch)
	}
	t := L.NewTable()
	t.RawSetString("bridge", lua.LString(n.Bridge))
	t.RawSetString("subnet", lua.LString(n.Subnet))
	t.RawSetString("changed", lua.LBool(changed))
	L.Push(t)
	return 1
}

// bootcodeWords renders {host="web1", nodhcp=true, "text"} as
// "host=web1 nodhcp text": keys sorted, true or "" as a bare word, false
// left out, list items appended.
func bootcodeWords(v *lua.LTable) string {
	var words []string
	for _, k := range lx.SortedKeys(v) {
		switch val := v.RawGetString(k).(type) {
		case lua.LBool:
			if bool(val) {
				words = append(words, k)
			}
		case lua.LString:
			if val == "" {
				words = append(words, k)
			} else {
				words = append(words, k+"="+string(val))
			}
		default:
			words = append(words, k+"="+val.String())
		}
	}
	for i := 1; i <= v.Len(); i++ {
		words = append(words, v.RawGetInt(i).String())
	}
	return strings.Join(words, " ")
}

// releaseDefaults has farm.Farm.ReleaseDefaults fill a frugal guest's boot
// files from the engine's tcz mirror, when it has any to fill.
func (m *luaMod) releaseDefaults(L *lua.LState, d *farm.Definition) error {
	if !m.farm.NeedsRelease(d) {
		return nil
	}
	c, err := tcz.LuaClient(L, m.env)
	if err != nil {
		return err
	}
	return m.env.Block(L, func(ctx context.Context) error {
		return m.farm.ReleaseDefaults(ctx, d, c, farm.ChangeOptions{Check: m.env.Check})
	})
}
