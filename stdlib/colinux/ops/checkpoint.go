package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/errkind"
)

// A checkpoint is three files: FILE, a JSON manifest (this format, the
// guest's definition, the names and sizes of the other two), FILE.vmstate
// (the VM's memory and device state, QEMU's migration stream) and
// FILE.disk (a copy of the disk taken while the VM was paused, so the two
// agree).
const (
	checkpointFormat  = "tinyfarm-checkpoint"
	checkpointVersion = 1
)

// Manifest is a checkpoint's FILE.
type Manifest struct {
	Format      string          `json:"format"`
	Version     int             `json:"version"`
	Created     time.Time       `json:"created"`
	Guest       farm.Definition `json:"guest"`
	VMState     string          `json:"vmstate"` // file name, next to the manifest
	VMStateSize int64           `json:"vmstate_size"`
	Disk        string          `json:"disk"`
	DiskSize    int64           `json:"disk_size"`
	// Running: the guest ran when saved (the state itself is saved
	// paused, so the disk copy matches it); Restore resumes it.
	Running bool `json:"running"`
}

// CheckpointResult says what Checkpoint wrote.
type CheckpointResult struct {
	File, VMState, Disk string
	Duration            time.Duration
	Paused              time.Duration // how long the guest did not run
	Bytes               int64         // disk space the checkpoint takes
}

// ErrBadCheckpoint is wrapped by Restore for a file that is not a
// complete tinyfarm checkpoint.
var ErrBadCheckpoint = errkind.Invalid("not a tinyfarm checkpoint")

// Checkpoint saves the running guest's whole state to file (see Manifest)
// and lets it run on: suspend, the driver's checkpoint to FILE.vmstate
// (qemu: QMP migrate), copy the disk, resume. A driver without
// checkpoints (driver.Checkpointer and driver.Restorer; ns: a stateful
// checkpoint of processes needs CRIU, which fails on this project's
// kernels) is unsupported, with its reason (driver.Explainer), and
// nothing is written.
func Checkpoint(ctx context.Context, g *farm.Guest, file string) (CheckpointResult, error) {
	t0 := time.Now()
	fail := func(err error) (CheckpointResult, error) {
		return CheckpointResult{}, fmt.Errorf("guest %s: checkpoint %s: %w", g.Def.Name, file, err)
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return fail(err)
	}
	h, err := g.Handle(ctx)
	if err != nil {
		return fail(err)
	}
	cp, ok1 := h.(driver.Checkpointer)
	s, ok2 := h.(driver.Suspender)
	if _, ok3 := g.Farm().Backend(g.Def.Driver).(driver.Restorer); !ok1 || !ok2 || !ok3 {
		return fail(driver.Unsupported(g.Def.Driver, "checkpoint", g.Farm().Why(ctx, g.Def.Driver, "checkpoint", "")))
	}
	if g.Def.Layout != driver.Scatter || g.Def.Disk == "" || len(g.Def.Disks) > 0 {
		return fail(driver.Unsupported(g.Def.Driver, "checkpoint", "only guests with one scatter disk"))
	}
	st, err := h.Status(ctx)
	if err != nil {
		return fail(err)
	}
	if st.State != driver.Running && st.State != driver.Suspended {
		return fail(fmt.Errorf("guest is %s: a checkpoint saves a running guest", st.State))
	}
	m := Manifest{Format: checkpointFormat, Version: checkpointVersion, Created: time.Now().UTC(), Guest: *g.Def,
		VMState: filepath.Base(abs) + ".vmstate", Disk: filepath.Base(abs) + ".disk", Running: st.State == driver.Running}
	vm, disk := filepath.Join(filepath.Dir(abs), m.VMState), filepath.Join(filepath.Dir(abs), m.Disk)
	tmpDisk := disk + ".tmp"
	os.Remove(tmpDisk)
	defer os.Remove(tmpDisk)
	tp := time.Now()
	if st.State == driver.Running {
		if err := s.Suspend(ctx); err != nil {
			return fail(err)
		}
	}
	err = func() error {
		if st.State == driver.Running {
			defer s.Resume(context.WithoutCancel(ctx))
		}
		if err := cp.Checkpoint(ctx, vm); err != nil { // paused: it stays paused
			return err
		}
		_, err := copyFile(ctx, g.Def.Disk, tmpDisk)
		return err
	}()
	paused := time.Since(tp)
	if err != nil {
		return fail(err)
	}
	if err := os.Rename(tmpDisk, disk); err != nil {
		return fail(err)
	}
	for _, f := range []struct {
		path string
		size *int64
	}{{vm, &m.VMStateSize}, {disk, &m.DiskSize}} {
		fi, err := os.Stat(f.path)
		if err != nil {
			return fail(err)
		}
		*f.size = fi.Size()
	}
	b, _ := json.MarshalIndent(&m, "", "  ")
	if err := fsutil.WriteFileAtomic(abs, append(b, '\n'), 0o600); err != nil {
		return fail(err)
	}
	return CheckpointResult{File: abs, VMState: vm, Disk: disk, Duration: time.Since(t0), Paused: paused,
		Bytes: allocated(vm) + allocated(disk) + allocated(abs)}, nil
}

// ReadManifest reads and checks a checkpoint: its manifest, and that the
// VM state and disk files are there, complete, and what they claim (the
// state as its driver's driver.Restorer checks it).
func ReadManifest(f *farm.Farm, file string) (*Manifest, string, string, error) {
	bad := func(why string, args ...any) (*Manifest, string, string, error) {
		return nil, "", "", fmt.Errorf("%s: %s: %w", file, fmt.Sprintf(why, args...), ErrBadCheckpoint)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, "", "", err
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return bad("manifest: %v", err)
	}
	if m.Format != checkpointFormat {
		return bad("format %q, want %q", m.Format, checkpointFormat)
	}
	if m.Version != checkpointVersion {
		return bad("version %d: this tinyfarm reads version %d", m.Version, checkpointVersion)
	}
	if err := f.Validate(&m.Guest); err != nil {
		return bad("guest: %v", err)
	}
	r, ok := f.Backend(m.Guest.Driver).(driver.Restorer)
	if !ok {
		return bad("driver %q: its checkpoints are not restorable", m.Guest.Driver)
	}
	if m.VMState == "" || m.Disk == "" || strings.ContainsAny(m.VMState+m.Disk, "/\\") {
		return bad("vmstate %q / disk %q: want file names next to the manifest", m.VMState, m.Disk)
	}
	dir := filepath.Dir(file)
	vm, disk := filepath.Join(dir, m.VMState), filepath.Join(dir, m.Disk)
	for _, f := range []struct {
		path string
		size int64
	}{{vm, m.VMStateSize}, {disk, m.DiskSize}} {
		fi, err := os.Stat(f.path)
		if err != nil {
			return bad("%v", err)
		}
		if fi.Size() != f.size {
			return bad("%s has %d bytes, the manifest says %d (truncated or replaced)", filepath.Base(f.path), fi.Size(), f.size)
		}
	}
	if err := r.CheckState(vm); err != nil {
		return bad("%s: %v", m.VMState, err)
	}
	return &m, vm, disk, nil
}

// RestoreOptions tune Restore.
type RestoreOptions struct {
	// Name of the restored guest. Default: the checkpointed guest's name.
	// A guest of that name must not be running; a stopped one is
	// redefined from the checkpoint.
	Name string
	// Timeout for the state to load. Default 60 s.
	Timeout time.Duration
}

// Restore starts a guest from a checkpoint: the disk copy becomes the
// guest's disk (<state>/disks/<name>.img, kept by destroy unless asked), the VM state is loaded
// and the guest runs on from where it was saved. A file that is not a
// complete checkpoint is ErrBadCheckpoint, and nothing is defined or
// started.
func Restore(ctx context.Context, f *farm.Farm, file string, o RestoreOptions) (*farm.Guest, error) {
	m, vm, disk, err := ReadManifest(f, file)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	d := m.Guest
	if o.Name == "" {
		o.Name = d.Name
	}
	fail := func(err error) (*farm.Guest, error) {
		return nil, fmt.Errorf("guest %s: restore %s: %w", o.Name, file, err)
	}
	r, ok := runnerOf(f, d.Driver).(driver.Restorer)
	if !ok {
		return fail(driver.Unsupported(d.Driver, "restore", "this tinyfarm has no "+d.Driver+" driver that restores"))
	}
	old, err := f.Get(o.Name)
	if err != nil && !errors.Is(err, farm.ErrNotFound) {
		return fail(err)
	}
	if old != nil {
		og := f.GuestOf(old)
		if og.Running(ctx) {
			return fail(fmt.Errorf("guest %s is running: stop it, or restore under another name: %w", o.Name, farm.ErrExists))
		}
	}
	if o.Name != d.Name {
		d.Forwards = nil // the source's host ports; Define gives an SSH forward
	}
	if d.Net == "bridge" {
		// The VM's memory holds its NIC's MAC and its address (udhcpc's
		// lease, an hour long): it comes back with them whatever its new
		// name, and nothing outside the guest can change them. So it keeps
		// them, which needs them free here. (Giving it a new identity
		// needs a way into the guest that does not depend on its network.)
		if why := f.BridgeIdentityProblem(o.Name, d.IP, d.MAC); why != "" {
			return fail(driver.Unsupported(d.Driver, "restoring this bridged guest as "+o.Name,
				fmt.Sprintf("the VM's memory holds guest %s's network identity (MAC %s, address %s) and keeps it after a restore; %s: "+
					"destroy or re-address that guest first, restore under its own name once it is stopped, or checkpoint a guest on net = \"user\"", d.Name, d.MAC, d.IP, why)))
		}
	}
	d.Name = o.Name
	dir := f.GuestDir(d.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	// The restored disk lives in <state>/disks, outside the guest's
	// directory, and destroy keeps it unless asked. Restoring over a
	// stopped guest whose disk tinyfarm placed replaces that disk (the
	// point of restoring); any other disk is left alone.
	if old != nil && old.DiskPlaced && old.Disk != "" && !strings.HasPrefix(old.Disk, dir+string(filepath.Separator)) {
		d.Disk = old.Disk
	} else if d.Disk, err = f.PlaceDisk(d.Name, d.Name); err != nil {
		return fail(err)
	}
	d.DiskPlaced = true
	newDisk := d.Disk + ".restoring"
	os.Remove(newDisk)
	if _, err := copyFile(ctx, disk, newDisk); err != nil {
		return fail(err)
	}
	undo := func() {
		os.Remove(newDisk)
		if old == nil {
			os.RemoveAll(dir)
			os.Remove(d.Disk) // the copy this restore made: no guest's disk
		}
	}
	if err := os.Rename(newDisk, d.Disk); err != nil {
		undo()
		return fail(err)
	}
	res, err := f.Define(d, farm.ChangeOptions{})
	if err != nil {
		undo()
		return fail(err)
	}
	g := f.GuestOf(res.Def)
	if old == nil {
		// A guest this restore defined goes again if it does not run.
		defer func() {
			if !g.Running(context.WithoutCancel(ctx)) {
				undo()
			}
		}()
	}
	if err := g.CheckMemory(ctx); err != nil {
		return fail(err)
	}
	h, err := r.Restore(ctx, f.Spec(g.Def), vm)
	if err != nil {
		return fail(err)
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := h.WaitReady(wctx); err != nil {
		h.Stop(context.WithoutCancel(ctx), 0)
		return fail(err)
	}
	if m.Running {
		s, ok := h.(driver.Suspender)
		if !ok {
			h.Stop(context.WithoutCancel(ctx), 0)
			return fail(driver.Unsupported(d.Driver, "restore", "its restored guest cannot be resumed"))
		}
		if err := s.Resume(ctx); err != nil {
			h.Stop(context.WithoutCancel(ctx), 0)
			return fail(err)
		}
	}
	return g, nil
}

// runnerOf is this farm's driver by name, nil when it has none (an
// ability asked of it is then absent).
func runnerOf(f *farm.Farm, name string) driver.Runner {
	r, _ := f.Runner(&farm.Definition{Driver: name})
	return r
}
