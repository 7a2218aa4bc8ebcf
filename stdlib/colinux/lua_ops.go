package colinux

import (
	"context"
	"errors"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
)

// The OS-level virtualization operations: g:share, g:unshare,
// g:checkpoint, g:clone and colinux.restore.

func (m *luaMod) opsMethods() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{
		"share": m.share, "unshare": m.unshare, "checkpoint": m.checkpoint, "clone": m.clone,
	}
}

func (m *luaMod) opsFuncs() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{"restore": m.restore}
}

type shareOpts struct {
	Host  string `lua:"host,required"`
	Guest string `lua:"guest,required"`
	RO    bool   `lua:"ro"`
}

// g:share{host, guest, ro=false} -> changed: a host directory shown in the
// guest (recorded in its definition; effective at the guest's start).
func (m *luaMod) share(L *lua.LState) int {
	g := checkGuest(L)
	var o shareOpts
	lx.Opts(L, 2, "share", &o)
	res, err := g.Share(m.env.Context(L), ShareOptions{HostPath: o.Host, GuestPath: o.Guest, ReadOnly: o.RO}, m.env.Check)
	if err != nil {
		lx.Raise(L, err)
	}
	m.reportShare(L, g, "share", o.Host+" -> "+o.Guest, res)
	return 1
}

// g:unshare(guest_path) -> changed
func (m *luaMod) unshare(L *lua.LState) int {
	g := checkGuest(L)
	p := L.CheckString(2)
	res, err := g.Unshare(m.env.Context(L), p, m.env.Check)
	if err != nil {
		lx.Raise(L, err)
	}
	m.reportShare(L, g, "unshare", p, res)
	return 1
}

func (m *luaMod) reportShare(L *lua.LState, g *Guest, action, what string, res ShareResult) {
	ch := engine.Change{Module: "colinux", Action: action, Subject: g.Describe() + ": " + what, Status: engine.StatusOK, Diff: res.Diff}
	if res.Changed {
		ch.Status, ch.Detail = engine.StatusChanged, res.Detail
	}
	m.env.Report(L, ch)
	L.Push(lua.LBool(res.Changed))
}

// g:checkpoint(file) -> {file, vmstate, disk, seconds, paused, bytes}:
// the running guest's whole state saved (qemu); it runs on.
func (m *luaMod) checkpoint(L *lua.LState) int {
	g := checkGuest(L)
	file := L.CheckString(2)
	ch := engine.Change{Module: "colinux", Action: "checkpoint", Subject: g.Describe() + " -> " + file, Status: engine.StatusChanged}
	if m.env.Check {
		ch.Status, ch.Detail = engine.StatusMayChange, "not saved in check mode"
		m.env.Report(L, ch)
		L.Push(lx.FromGo(L, map[string]any{"file": file, "skipped": true}))
		return 1
	}
	var res CheckpointResult
	m.block(L, func(ctx context.Context) (err error) { res, err = g.Checkpoint(ctx, file); return })
	ch.Detail = fmt.Sprintf("%s in %v (paused %v)", HumanSize(res.Bytes), res.Duration.Round(time.Millisecond), res.Paused.Round(time.Millisecond))
	m.env.Report(L, ch)
	L.Push(lx.FromGo(L, map[string]any{"file": res.File, "vmstate": res.VMState, "disk": res.Disk,
		"seconds": res.Duration.Seconds(), "paused": res.Paused.Seconds(), "bytes": res.Bytes}))
	return 1
}

type restoreOpts struct {
	Name    string        `lua:"name"`
	Timeout time.Duration `lua:"timeout"`
}

// colinux.restore(file, {name, timeout=60}) -> guest, running on from
// its checkpoint.
func (m *luaMod) restore(L *lua.LState) int {
	file := L.CheckString(1)
	var o restoreOpts
	lx.Opts(L, 2, "colinux.restore", &o)
	mf, _, _, err := ReadManifest(file)
	if err != nil {
		lx.Raise(L, lx.WithKind(err, lx.KindInvalid))
	}
	name := o.Name
	if name == "" {
		name = mf.Guest.Name
	}
	ch := engine.Change{Module: "colinux", Action: "restore", Subject: "guest:" + name, Status: engine.StatusChanged, Detail: "from " + file}
	if m.env.Check {
		ch.Status = engine.StatusMayChange
		m.env.Report(L, ch)
		d := mf.Guest
		d.Name = name
		L.Push(m.push(L, &Guest{farm: m.farm, Def: &d}))
		return 1
	}
	var g *Guest
	m.block(L, func(ctx context.Context) (err error) {
		g, err = m.farm.Restore(ctx, file, RestoreOptions{Name: o.Name, Timeout: o.Timeout})
		return
	})
	m.env.Report(L, ch)
	L.Push(m.push(L, g))
	return 1
}

type cloneOpts struct {
	Name     string `lua:"name,required"`
	IP       string `lua:"ip"`
	Hostname string `lua:"hostname"`
	Disk     string `lua:"disk"`
}

// g:clone{name, ip, hostname, disk} -> the new guest (defined, not
// started), a copy of g with its own identity. A running g is paused only
// for the copy. An existing name is an error.
func (m *luaMod) clone(L *lua.LState) int {
	g := checkGuest(L)
	var o cloneOpts
	lx.Opts(L, 2, "clone", &o)
	ch := engine.Change{Module: "colinux", Action: "clone", Subject: "guest:" + o.Name, Status: engine.StatusChanged, Detail: "from " + g.Def.Name}
	if m.env.Check {
		if _, err := m.farm.Get(o.Name); err == nil {
			lx.Raise(L, fmt.Errorf("guest %s: clone %s: guest %s: %w", g.Def.Name, o.Name, o.Name, ErrExists))
		} else if !errors.Is(err, ErrNotFound) {
			lx.Raise(L, err)
		}
		ch.Status = engine.StatusMayChange
		m.env.Report(L, ch)
		d := *g.Def
		d.Name, d.IP, d.HostKey = o.Name, o.IP, ""
		L.Push(m.push(L, &Guest{farm: m.farm, Def: &d}))
		return 1
	}
	var res CloneResult
	m.block(L, func(ctx context.Context) (err error) {
		res, err = g.Clone(ctx, CloneOptions{Name: o.Name, IP: o.IP, Hostname: o.Hostname, Disk: o.Disk})
		return
	})
	ch.Detail = fmt.Sprintf("from %s in %v (%s copy, %s of disk)", g.Def.Name, res.Duration.Round(time.Millisecond), res.Method, HumanSize(res.DiskBytes))
	m.env.Report(L, ch)
	L.Push(m.push(L, res.Guest))
	return 1
}
