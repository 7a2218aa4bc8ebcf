package farm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// startedFile, in a guest's runtime directory, is its definition as it
// was when the guest last started: what a later redefinition is compared
// with to say what only a restart applies.
const startedFile = "started.json"

// DefineLive is Define for a guest that may be running. A running guest's
// memory quota and CPU share are applied in place where the driver can
// (driver.Limiter: ns cgroups); other differences from the definition it
// runs with are listed in RestartNeeded. A change of a running guest's
// disk is refused: the disk it runs from cannot be swapped under it.
func (f *Farm) DefineLive(ctx context.Context, d Definition, o ChangeOptions) (DefineResult, error) {
	old, err := f.Get(d.Name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return DefineResult{}, err
	}
	if old != nil && d.Shares == nil {
		// Shares are g:share's and g:unshare's to change: a redefinition
		// keeps them (it used to drop them, so a playbook's rerun
		// changed the guest twice and a running one "needed" a restart).
		d.Shares = old.Shares
	}
	var running *Guest
	if old != nil {
		if g := (&Guest{farm: f, Def: old}); g.Running(ctx) {
			running = g
		}
	}
	if running != nil {
		if err := checkDiskChange(old, &d); err != nil {
			return DefineResult{}, err
		}
	}
	res, err := f.Define(d, o)
	if err != nil || running == nil {
		return res, err
	}
	started := running.startedDef()
	if started == nil {
		// Started by a tinyfarm that kept no record: it runs with the
		// definition it had until now.
		prev := *old
		started = &prev
	}
	nd := res.Def
	if nd.MemBytes != started.MemBytes || nd.CPUs != started.CPUs {
		h, err := running.Handle(ctx)
		if err != nil {
			return res, err
		}
		if l, ok := h.(driver.Limiter); ok {
			res.Live = append(res.Live, limitChanges(started, nd)...)
			if !o.Check {
				if err := l.SetLimits(ctx, nd.MemBytes, nd.CPUs); err != nil {
					return res, fmt.Errorf("guest %s: apply mem %s, cpus %v to the running guest: %w", d.Name, HumanSize(nd.MemBytes), nd.CPUs, err)
				}
				started.MemBytes, started.CPUs = nd.MemBytes, nd.CPUs
				if err := running.writeStarted(started); err != nil {
					return res, err
				}
			} else {
				started.MemBytes, started.CPUs = nd.MemBytes, nd.CPUs
			}
		}
	}
	res.RestartNeeded = restartFields(started, nd)
	return res, nil
}

// checkDiskChange refuses a new disk for a running guest.
func checkDiskChange(old, d *Definition) error {
	want := (&Definition{Disk: absOrSelf(d.Disk), Disks: d.Disks}).diskPaths()
	have := old.diskPaths()
	same := len(want) == len(have)
	for i := 0; same && i < len(want); i++ {
		same = sameDisk(absOrSelf(want[i]), have[i])
	}
	if same {
		return nil
	}
	return fmt.Errorf("guest %s runs from disk %s: a running guest's disk cannot change (to %s): stop it first (g:stop() or `tinyfarm stop %s`), or keep its disk, or give the new disk a guest of another name: %w",
		d.Name, strings.Join(have, ", "), strings.Join(want, ", "), d.Name, ErrInvalid)
}

func absOrSelf(p string) string {
	if p == "" {
		return p
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func limitChanges(a, b *Definition) []string {
	var out []string
	if a.MemBytes != b.MemBytes {
		out = append(out, fmt.Sprintf("mem %s -> %s", HumanSize(a.MemBytes), HumanSize(b.MemBytes)))
	}
	if a.CPUs != b.CPUs {
		out = append(out, fmt.Sprintf("cpus %v -> %v", a.CPUs, b.CPUs))
	}
	return out
}

// restartFields names what differs between the definition a guest runs
// with and its current one that only a restart applies (labels and the
// autostart settings need none).
func restartFields(started, now *Definition) []string {
	fields := []struct {
		name string
		a, b any
	}{
		{"driver", started.Driver, now.Driver},
		{"disk", started.diskPaths(), now.diskPaths()},
		{"disk_ro", started.DiskRO, now.DiskRO},
		{"layout", started.Layout, now.Layout},
		{"core", started.Core, now.Core},
		{"kernel", started.Kernel, now.Kernel},
		{"initrd", started.Initrds, now.Initrds},
		{"bootcodes", started.Bootcodes, now.Bootcodes},
		{"mem", started.MemBytes, now.MemBytes},
		{"cpus", started.CPUs, now.CPUs},
		{"ip", started.IP, now.IP},
		{"mac", started.MAC, now.MAC},
		{"net", started.Net, now.Net},
		{"forward", started.Forwards, now.Forwards},
		{"shares", started.Shares, now.Shares},
		{"accel", started.Accel, now.Accel},
		{"userns", started.UserNS, now.UserNS},
		{"net_raw", started.NetRaw, now.NetRaw},
	}
	var out []string
	for _, f := range fields {
		if !reflect.DeepEqual(f.a, f.b) {
			out = append(out, f.name)
		}
	}
	return out
}

func (g *Guest) startedPath() string { return filepath.Join(g.Spec().Dir, startedFile) }

// startedDef is the definition the guest last started with, or nil.
func (g *Guest) startedDef() *Definition {
	b, err := os.ReadFile(g.startedPath())
	if err != nil {
		return nil
	}
	var d Definition
	if json.Unmarshal(b, &d) != nil {
		return nil
	}
	return &d
}

func (g *Guest) writeStarted(d *Definition) error {
	b, _ := json.MarshalIndent(d, "", "  ")
	if err := os.MkdirAll(filepath.Dir(g.startedPath()), 0o700); err != nil {
		return fmt.Errorf("guest %s: %w", g.Def.Name, err)
	}
	if err := fsutil.WriteFileAtomic(g.startedPath(), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("guest %s: %w", g.Def.Name, err)
	}
	return nil
}

// RestartNeeded names what in the guest's definition differs from what
// it runs with and takes a restart to apply; nil when it is not running.
func (g *Guest) RestartNeeded(ctx context.Context) []string {
	if !g.Running(ctx) {
		return nil
	}
	started := g.startedDef()
	if started == nil {
		return nil
	}
	return restartFields(started, g.Def)
}

// checkDiskFree refuses to start a guest whose disk another running
// guest of this farm uses (a definition from before disks were checked,
// or a read-only share with a guest that writes). Across farms the ns
// driver's lock on the image file does the same.
func (g *Guest) checkDiskFree(ctx context.Context) error {
	all, err := g.farm.List()
	if err != nil {
		return err
	}
	for _, o := range all {
		if o.Name == g.Def.Name {
			continue
		}
		p := sharedDisk(g.Def, o)
		if p == "" {
			continue
		}
		if (&Guest{farm: g.farm, Def: o}).Running(ctx) {
			return fmt.Errorf("guest %s: start: disk %s is in use by running guest %s: stop %s first, or give %s a disk of its own: %w",
				g.Def.Name, p, o.Name, o.Name, g.Def.Name, ErrInvalid)
		}
	}
	return nil
}
