package colinux

import (
	"context"
	"errors"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
)

// The OS-level virtualization operations: g:share, g:unshare,
// g:checkpoint, g:clone, g:migrate, colinux.restore and colinux.unify.

func (m *luaMod) opsMethods() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{
		"share": m.share, "unshare": m.unshare, "checkpoint": m.checkpoint, "clone": m.clone,
		"migrate": m.migrate,
	}
}

func (m *luaMod) opsFuncs() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{"restore": m.restore, "unify": m.unify}
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
	res, err := g.Share(m.env.Context(L), farm.ShareOptions{HostPath: o.Host, GuestPath: o.Guest, ReadOnly: o.RO, Check: m.env.Check})
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
	res, err := g.Unshare(m.env.Context(L), p, farm.ChangeOptions{Check: m.env.Check})
	if err != nil {
		lx.Raise(L, err)
	}
	m.reportShare(L, g, "unshare", p, res)
	return 1
}

func (m *luaMod) reportShare(L *lua.LState, g *farm.Guest, action, what string, res farm.ShareResult) {
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
	var res ops.CheckpointResult
	m.block(L, func(ctx context.Context) (err error) { res, err = ops.Checkpoint(ctx, g, file); return })
	ch.Detail = fmt.Sprintf("%s in %v (paused %v)", farm.HumanSize(res.Bytes), res.Duration.Round(time.Millisecond), res.Paused.Round(time.Millisecond))
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
	mf, _, _, err := ops.ReadManifest(m.farm, file)
	if err != nil {
		lx.Raise(L, err)
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
		L.Push(m.push(L, m.farm.GuestOf(&d)))
		return 1
	}
	var g *farm.Guest
	m.block(L, func(ctx context.Context) (err error) {
		g, err = ops.Restore(ctx, m.farm, file, ops.RestoreOptions{Name: o.Name, Timeout: o.Timeout})
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
			lx.Raise(L, fmt.Errorf("guest %s: clone %s: guest %s: %w", g.Def.Name, o.Name, o.Name, farm.ErrExists))
		} else if !errors.Is(err, farm.ErrNotFound) {
			lx.Raise(L, err)
		}
		ch.Status = engine.StatusMayChange
		m.env.Report(L, ch)
		d := *g.Def
		d.Name, d.IP, d.HostKey = o.Name, o.IP, ""
		L.Push(m.push(L, m.farm.GuestOf(&d)))
		return 1
	}
	var res ops.CloneResult
	m.block(L, func(ctx context.Context) (err error) {
		res, err = ops.Clone(ctx, g, ops.CloneOptions{Name: o.Name, IP: o.IP, Hostname: o.Hostname, Disk: o.Disk})
		return
	})
	ch.Detail = fmt.Sprintf("from %s in %v (%s copy, %s of disk)", g.Def.Name, res.Duration.Round(time.Millisecond), res.Method, farm.HumanSize(res.DiskBytes))
	m.env.Report(L, ch)
	L.Push(m.push(L, res.Guest))
	return 1
}

type unifyOpts struct {
	Guests  lua.LValue `lua:"guests"`
	Exclude []string   `lua:"exclude"`
	DryRun  bool       `lua:"dry_run"`
}

// colinux.unify{guests, exclude, dry_run} -> {files, identical, shareable,
// unaligned, already_shared, bytes_shared, bytes_freed, differed, filesystem, supported,
// guests, skipped, dry_run}: identical files of stopped guests share their
// disk blocks (see ops.Unify). guests are names or guest objects
// (default: all). Check mode is a dry run.
func (m *luaMod) unify(L *lua.LState) int {
	var o unifyOpts
	lx.Opts(L, 1, "colinux.unify", &o)
	var names []string
	switch v := o.Guests.(type) {
	case nil, *lua.LNilType:
	case *lua.LTable:
		for i := 1; i <= v.Len(); i++ {
			switch x := v.RawGetInt(i).(type) {
			case lua.LString:
				names = append(names, string(x))
			case *lua.LUserData:
				g, ok := x.Value.(*farm.Guest)
				if !ok {
					lx.Raisef(L, "colinux.unify: guests[%d]: want a guest or a name, got %s", i, x.Type())
				}
				names = append(names, g.Def.Name)
			default:
				lx.Raisef(L, "colinux.unify: guests[%d]: want a guest or a name, got %s", i, x.Type())
			}
		}
	default:
		lx.Raisef(L, "colinux.unify: guests: want a list of guests or names, got %s", v.Type())
	}
	dry := o.DryRun || m.env.Check
	var res ops.UnifyResult
	m.block(L, func(ctx context.Context) (err error) {
		res, err = ops.Unify(ctx, m.farm, ops.UnifyOptions{Guests: names, Exclude: o.Exclude, Check: dry})
		return
	})
	ch := engine.Change{Module: "colinux", Action: "unify", Subject: fmt.Sprintf("%d guests", len(res.Guests)), Status: engine.StatusOK,
		Detail: fmt.Sprintf("%d identical files (%s), %s already shared", res.Files, farm.HumanSize(res.Identical), farm.HumanSize(res.AlreadyShared))}
	if res.BytesShared > 0 {
		ch.Status = engine.StatusChanged
		ch.Detail = fmt.Sprintf("%s newly shared in %d identical files (%s), %s freed on %s (df), %s already shared",
			farm.HumanSize(res.BytesShared), res.Files, farm.HumanSize(res.Identical), signedSize(res.BytesFreed), res.Filesystem, farm.HumanSize(res.AlreadyShared))
		if dry && !res.Supported {
			ch.Status, ch.Detail = engine.StatusOK, fmt.Sprintf("would share %s, but %s cannot share extents (put the disks on btrfs/xfs)", farm.HumanSize(res.BytesShared), res.Filesystem)
		} else if dry {
			ch.Detail = fmt.Sprintf("would share %s in %d identical files (%s), %s already shared; what it frees shows only in a real run",
				farm.HumanSize(res.BytesShared), res.Files, farm.HumanSize(res.Identical), farm.HumanSize(res.AlreadyShared))
		}
	}
	m.env.Report(L, ch)
	L.Push(lx.FromGo(L, res))
	return 1
}

type remoteOpts struct {
	Name     string        `lua:"name"`
	Address  string        `lua:"address,required"`
	Port     int           `lua:"port"`
	User     string        `lua:"user"`
	Key      string        `lua:"key,required"`
	HostKey  string        `lua:"host_key,required"`
	StateDir string        `lua:"state_dir"`
	Binary   string        `lua:"binary"`
	Timeout  time.Duration `lua:"timeout"`
}

type migrateOpts struct {
	To      lua.LValue    `lua:"to,required"`
	Live    bool          `lua:"live"`
	Grace   time.Duration `lua:"grace"`
	Timeout time.Duration `lua:"timeout"`
	Disk    bool          `lua:"disk"`
	KeepKey bool          `lua:"keep_key"`
}

// g:migrate{to = {address, port, user, key, host_key, state_dir, binary,
// name}, live=false, grace="10s", timeout="60s", disk=false,
// keep_key=false} -> {host, disk, size, chunks, chunks_sent, bytes_sent,
// sha256, seconds, downtime, state, ip, live, key_revoked}: the guest
// moved to another tinyfarm host over SSH (see ops.Migrate); disk=true
// also removes the local image; keep_key=true leaves this farm's key in
// the guest (by default the far side removes it). live=true moves
// a running qemu guest without stopping it (QEMU live migration over the
// SSH connection; downtime is the switchover pause); for ns guests it
// raises unsupported (no CRIU).
func (m *luaMod) migrate(L *lua.LState) int {
	g := checkGuest(L)
	var o migrateOpts
	lx.Opts(L, 2, "migrate", &o)
	tt, ok := o.To.(*lua.LTable)
	if !ok {
		lx.Raisef(L, "migrate: to: want a host table {address, key, host_key, ...}, got %s", o.To.Type())
	}
	var to remoteOpts
	if err := lx.DecodeTable(tt, &to); err != nil {
		lx.Raisef(L, "guest %s: migrate: to: %v", g.Def.Name, err)
	}
	r := ops.Remote{Name: to.Name, Address: to.Address, Port: to.Port, User: to.User, Key: to.Key, HostKey: to.HostKey,
		StateDir: to.StateDir, Binary: to.Binary, Timeout: to.Timeout}
	ch := engine.Change{Module: "colinux", Action: "migrate", Subject: g.Describe() + " -> " + r.Label(), Status: engine.StatusChanged}
	if m.env.Check {
		ch.Status, ch.Detail = engine.StatusMayChange, "not moved in check mode"
		m.env.Report(L, ch)
		L.Push(lx.FromGo(L, map[string]any{"host": r.Label(), "skipped": true}))
		return 1
	}
	var res ops.MigrateResult
	m.block(L, func(ctx context.Context) (err error) {
		res, err = ops.Migrate(ctx, g, r, ops.MigrateOptions{Live: o.Live, Grace: o.Grace, Timeout: o.Timeout, RemoveDisk: o.Disk, KeepKey: o.KeepKey})
		return
	})
	ch.Detail = fmt.Sprintf("%s sent of %s in %v (down %v), sha256 %.12s", farm.HumanSize(res.BytesSent), farm.HumanSize(res.Size),
		res.Duration.Round(time.Millisecond), res.Downtime.Round(time.Millisecond), res.SHA256)
	m.env.Report(L, ch)
	L.Push(lx.FromGo(L, map[string]any{"host": res.Host, "disk": res.Disk, "size": res.Size, "chunks": res.Chunks,
		"chunks_sent": res.ChunksSent, "bytes_sent": res.BytesSent, "sha256": res.SHA256, "seconds": res.Duration.Seconds(),
		"downtime": res.Downtime.Seconds(), "state": res.State, "ip": res.IP, "live": res.Live, "key_revoked": res.KeyRevoked}))
	return 1
}

// signedSize is farm.HumanSize of n that may be negative.
func signedSize(n int64) string {
	if n < 0 {
		return "-" + farm.HumanSize(-n)
	}
	return farm.HumanSize(n)
}
