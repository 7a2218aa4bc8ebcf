package farm

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// DefineResult says what Define did or would do.
type DefineResult struct {
	Changed bool
	Created bool
	Diff    string // unified diff of guest.json
	Def     *Definition
	// DefineLive only: what was applied to the running guest in place
	// ("mem 96M -> 192M"), and what differs from what it runs with that
	// only a restart applies (field names).
	Live          []string
	RestartNeeded []string
}

// ChangeOptions are the options of a change to the farm's state that has
// no options of its own (Define, SetNetwork, Unshare).
type ChangeOptions struct {
	// Check computes the same result and writes nothing (check mode).
	Check bool
}

// Define creates or updates a guest definition. Fields tinyfarm assigns
// (IP, MAC) are kept from an earlier definition, or allocated. With
// o.Check nothing is written.
func (f *Farm) Define(d Definition, o ChangeOptions) (DefineResult, error) {
	if f.netErr != nil {
		return DefineResult{}, fmt.Errorf("guest %s: %w (fix the file or remove it to use %s %s)", d.Name, f.netErr, DefaultBridge, DefaultSubnet)
	}
	if d.Driver == "" || d.MemBytes == 0 {
		f.FillDefaults(&d, &d.UserNS)
	}
	if d.Layout == "" {
		d.Layout = driver.Scatter
	}
	if d.User == "" {
		d.User = "tc"
	}
	if d.Net == "" {
		d.Net = "user"
		if df, ok := f.Backend(d.Driver).(driver.Defaulter); ok && df.Defaults(d.Layout).Net != "" {
			d.Net = df.Defaults(d.Layout).Net
		}
	}
	if d.Base != "" && d.Disk == "" {
		// The guest's layer: made at its first start, its writes only.
		d.Disk, d.DiskPlaced = filepath.Join(f.StateDir(), "disks", d.Name+".layer.img"), true
	}
	for _, p := range []*string{&d.Disk, &d.Core, &d.Kernel, &d.Base} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return DefineResult{}, err
			}
			*p = abs
		}
	}
	if err := f.Validate(&d); err != nil {
		return DefineResult{}, err
	}
	if !o.Check { // in check mode image.build has not made the disk yet
		if err := d.disksExist(); err != nil {
			return DefineResult{}, err
		}
	}
	unlock, err := f.Lock()
	if err != nil {
		return DefineResult{}, err
	}
	defer unlock()
	old, err := f.Get(d.Name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return DefineResult{}, err
	}
	if d.IP == "" && old != nil {
		d.IP = old.IP
	}
	if err := f.keptGateway(&d, old); err != nil {
		return DefineResult{}, err
	}
	if d.MAC == "" && old != nil {
		d.MAC = old.MAC
	}
	if d.HostKey == "" && old != nil {
		d.HostKey = old.HostKey
	}
	if d.Net == "bridge" && d.IP == "" {
		if d.IP, err = f.allocIP(d.Name); err != nil {
			return DefineResult{}, err
		}
	}
	if d.MAC == "" {
		h := sha256.Sum256([]byte(d.Name))
		d.MAC = fmt.Sprintf("02:74:66:%02x:%02x:%02x", h[0], h[1], h[2])
	}
	if d.Net == "user" && !hasForward(d.Forwards, 22) {
		// A guest on user-mode networking is reached through a host port
		// forward: give it one for SSH, kept like its IP.
		if old != nil && hasForward(old.Forwards, 22) {
			for _, fw := range old.Forwards {
				if fw.GuestPort == 22 {
					d.Forwards = append(d.Forwards, fw)
				}
			}
		} else {
			port, err := f.freeHostPort(d.Name, 2222)
			if err != nil {
				return DefineResult{}, err
			}
			d.Forwards = append(d.Forwards, driver.Forward{Proto: "tcp", HostPort: port, GuestPort: 22})
		}
	}
	if err := f.checkConflicts(&d); err != nil {
		return DefineResult{}, err
	}
	nb, _ := json.MarshalIndent(&d, "", "  ")
	nb = append(nb, '\n')
	var ob []byte
	if old != nil {
		ob, _ = json.MarshalIndent(old, "", "  ")
		ob = append(ob, '\n')
	}
	res := DefineResult{Def: &d, Created: old == nil, Diff: fsutil.Diff("guest "+d.Name, ob, nb)}
	res.Changed = res.Diff != ""
	if !res.Changed || o.Check {
		return res, nil
	}
	if err := os.MkdirAll(f.GuestDir(d.Name), 0o700); err != nil {
		return res, fmt.Errorf("guest %s: %w", d.Name, err)
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(f.GuestDir(d.Name), "guest.json"), nb, 0o600); err != nil {
		return res, fmt.Errorf("guest %s: %w", d.Name, err)
	}
	return res, nil
}

// disksExist refuses a definition whose disk images are missing, before
// anything (an IP) is allocated for it: it could only fail at start.
func (d *Definition) disksExist() error {
	paths := d.diskPaths()
	if d.Base != "" {
		// The base must exist; the guest's layer (its disk) may not yet:
		// its first start makes it.
		paths = append([]string{d.Base}, d.Disks...)
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			why := "does not exist"
			if !errors.Is(err, fs.ErrNotExist) {
				why = err.Error()
			}
			return fmt.Errorf("guest %s: disk %s %s: build it first (image.build{path = %q, ...}) or fix the path: %w", d.Name, p, why, p, ErrInvalid)
		}
	}
	return nil
}

// diskPaths are the definition's disk images, the main one first.
func (d *Definition) diskPaths() []string {
	var out []string
	if d.Disk != "" {
		out = append(out, d.Disk)
	}
	return append(out, d.Disks...)
}

// sameDisk reports whether two disk paths are one image: the same path,
// or (links, bind mounts) the same file.
func sameDisk(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// sharedDisk is the first disk of d that guest o names too, or "".
// Guests that both attach their disks read-only (disk_ro) may share.
func sharedDisk(d, o *Definition) string {
	if d.DiskRO && o.DiskRO {
		return ""
	}
	for _, a := range d.diskPaths() {
		for _, b := range o.diskPaths() {
			if sameDisk(a, b) {
				return a
			}
		}
	}
	return ""
}

// checkConflicts refuses an IP or a forwarded host port that another guest
// already has, and a disk another guest names: two guests mounting one
// ext file system read-write corrupt it, and destroy{disk = true} of
// either would delete the other's disk.
func (f *Farm) checkConflicts(d *Definition) error {
	all, err := f.List()
	if err != nil {
		return err
	}
	for _, o := range all {
		if o.Name == d.Name {
			continue
		}
		if p := sharedDisk(d, o); p != "" {
			return fmt.Errorf("guest %s: disk %s is guest %s's already (one ext file system mounted by two guests gets corrupted): give %s a disk of its own (image.build, or %s:clone{}), or set disk_ro = true on both to share it read-only: %w",
				d.Name, p, o.Name, d.Name, o.Name, ErrInvalid)
		}
		if d.IP != "" && o.IP == d.IP {
			return fmt.Errorf("guest %s: ip %s is already guest %s's: %w", d.Name, d.IP, o.Name, ErrInvalid)
		}
		for _, a := range d.Forwards {
			for _, b := range o.Forwards {
				if a.HostPort == b.HostPort && strings.EqualFold(a.Proto, b.Proto) {
					return fmt.Errorf("guest %s: host port %d is already forwarded to guest %s: %w", d.Name, a.HostPort, o.Name, ErrInvalid)
				}
			}
		}
	}
	return nil
}
