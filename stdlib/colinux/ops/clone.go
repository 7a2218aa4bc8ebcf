package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

var hostnameRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// CloneOptions name the new guest of Clone.
type CloneOptions struct {
	Name     string // required, a new guest name
	IP       string // bridge address ("10.77.0.9" or with prefix); default: allocated
	Hostname string // default Name
	// Disk is where the clone's disk image goes. Default: beside the
	// source's disk, as <name>.img (on btrfs or xfs a reflink, sharing
	// every block), or in <state>/disks when that directory is not
	// writable. Destroy keeps it unless asked to remove the disk.
	Disk string
}

// CloneResult says what Clone did.
type CloneResult struct {
	Guest    *farm.Guest
	Method   string        // "reflink" (copy-on-write) or "sparse" (data extents copied)
	Duration time.Duration // the whole clone
	Paused   time.Duration // how long a running source was suspended for the copy
	// DiskBytes is the disk space the clone's image takes (allocated
	// blocks; with a reflink most of them are shared with the source).
	DiskBytes int64
	// SeedRenewed is true when the disk had a random seed file, now fresh.
	SeedRenewed bool
}

// Clone makes a new guest from this one (vserver-copy): a copy of its disk
// with a new identity (hostname in /etc/hostname, /etc/hosts and the
// host= bootcode; a new SSH host key, written into the disk and pinned;
// a new MAC; the IP given or a free one; a fresh random seed if the disk
// has one). A running source is suspended (cgroup freezer plus a
// filesystem freeze for ns, QMP stop for qemu) only while its disk is
// copied, then resumed: it keeps running, unchanged. The clone is defined
// but not started. A name that exists already is farm.ErrExists.
//
// The copy of a running guest is crash-consistent, like a snapshot taken
// at a power cut: what the guest's kernel had written to its disk is in
// it, what it still held in its own page cache is not (run sync in the
// guest first to have a file in the clone). A filesystem caught
// mid-transaction is sound all the same: ext3's journal is replayed when
// the copy is first mounted, which is here, for the identity edit. See
// farm.Guest.Consistent for why the copy sees every write the guest had issued.
func Clone(ctx context.Context, g *farm.Guest, o CloneOptions) (res CloneResult, err error) {
	t0 := time.Now()
	src := g.Def
	fail := func(err error) (CloneResult, error) {
		return CloneResult{}, fmt.Errorf("guest %s: clone %s: %w", src.Name, o.Name, err)
	}
	if !farm.ValidName(o.Name) {
		return fail(fmt.Errorf("name %q: want 1-32 of a-z, 0-9, '-', starting with a letter: %w", o.Name, farm.ErrInvalid))
	}
	if o.Hostname == "" {
		o.Hostname = o.Name
	}
	if !hostnameRe.MatchString(o.Hostname) {
		return fail(fmt.Errorf("hostname %q: want letters, digits and '-': %w", o.Hostname, farm.ErrInvalid))
	}
	if src.Base != "" {
		return fail(driver.Unsupported(src.Driver, "clone of a layered guest", "define another guest on the same base instead: colinux.guest{name, base}"))
	}
	if src.Layout != driver.Scatter || src.Disk == "" {
		return fail(driver.Unsupported(src.Driver, "clone of a "+string(src.Layout)+" guest",
			"the identity (host key, hostname) of a frugal guest lives in tce/mydata.tgz; clone works on scatter disks"))
	}
	if _, err := g.Farm().Get(o.Name); err == nil {
		return fail(fmt.Errorf("guest %s: %w (destroy it first or pick another name)", o.Name, farm.ErrExists))
	} else if !errors.Is(err, farm.ErrNotFound) {
		return fail(err)
	}
	ip, err := cloneIP(g.Farm(), src, o.IP)
	if err != nil {
		return fail(err)
	}
	hk, err := ssh.GenerateHostKeySet(nil)
	if err != nil {
		return fail(err)
	}
	dir := g.Farm().GuestDir(o.Name)
	if err := removeStaleClone(dir); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	disk := o.Disk
	if disk == "" {
		if disk, err = besideDisk(g.Farm(), src.Disk, o.Name); err != nil {
			return fail(err)
		}
	}
	if disk, err = filepath.Abs(disk); err != nil {
		return fail(err)
	}
	if _, err := os.Lstat(disk); err == nil {
		return fail(fmt.Errorf("disk %s exists already: %w", disk, farm.ErrExists))
	}
	var extra []string
	for i, x := range src.Disks {
		p, err := besideDisk(g.Farm(), x, fmt.Sprintf("%s-disk%d", o.Name, i+1))
		if err != nil {
			return fail(err)
		}
		extra = append(extra, p)
	}
	// Recorded before the copy starts: a tinyfarm killed before Define
	// leaves the disks to removeStaleClone, not to the user.
	if err := fsutil.WriteJSONAtomic(filepath.Join(dir, clonePending), pendingClone{PID: os.Getpid(), Disks: append([]string{disk}, extra...)}, 0o600); err != nil {
		return fail(err)
	}
	cleanup := func() {
		os.Remove(disk)
		for _, x := range extra {
			os.Remove(x)
		}
		if _, err := g.Farm().Get(o.Name); err != nil {
			os.RemoveAll(dir)
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()

	// The copy, with the source paused if it runs.
	paused, err := g.Consistent(ctx, func() error {
		if res.Method, err = copyFile(ctx, src.Disk, disk); err != nil {
			return err
		}
		for i, x := range src.Disks {
			if _, err := copyFile(ctx, x, extra[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	res.Paused = paused
	oldHost := bootcodeValue(src.Bootcodes, "host")
	if oldHost == "" {
		oldHost = src.Name
	}
	if res.SeedRenewed, err = editIdentity(ctx, disk, oldHost, o.Hostname, hk); err != nil {
		return fail(err)
	}
	d := *src
	d.Name, d.IP, d.MAC, d.HostKey, d.Disk, d.Disks = o.Name, ip, "", hk.AuthorizedKeys(), disk, extra
	d.DiskPlaced = o.Disk == ""
	d.Bootcodes = setBootcode(src.Bootcodes, "host", o.Hostname)
	d.Forwards = nil // host ports are the source's; Define gives the clone its own SSH forward
	d.Labels = map[string]string{}
	for k, v := range src.Labels {
		d.Labels[k] = v
	}
	d.Labels["cloned_from"] = src.Name
	if _, err := g.Farm().Get(o.Name); err == nil { // defined meanwhile by someone else
		return fail(fmt.Errorf("guest %s: %w", o.Name, farm.ErrExists))
	}
	def, err := g.Farm().Define(d, farm.ChangeOptions{})
	if err != nil {
		return fail(err)
	}
	os.Remove(filepath.Join(dir, clonePending))
	res.Guest = g.Farm().GuestOf(def.Def)
	res.DiskBytes = allocated(disk)
	for _, x := range extra {
		res.DiskBytes += allocated(x)
	}
	res.Duration = time.Since(t0)
	return res, nil
}

// cloneIP is the clone's address: the one asked for (with the farm's
// prefix added), or "" to have Define allocate one; none off the bridge.
func cloneIP(f *farm.Farm, src *farm.Definition, ip string) (string, error) {
	if src.Net != "bridge" {
		if ip != "" {
			return "", fmt.Errorf("ip %s: the source uses %s networking, which has no farm address: %w", ip, src.Net, farm.ErrInvalid)
		}
		return "", nil
	}
	if ip == "" {
		return "", nil
	}
	if !strings.Contains(ip, "/") {
		_, n, err := net.ParseCIDR(f.Network().Subnet)
		if err != nil {
			return "", fmt.Errorf("farm subnet %q: %w", f.Network().Subnet, err)
		}
		ones, _ := n.Mask.Size()
		ip = fmt.Sprintf("%s/%d", ip, ones)
	}
	addr, n, err := net.ParseCIDR(ip)
	if err != nil {
		return "", fmt.Errorf("ip %q: %w", ip, farm.ErrInvalid)
	}
	if _, subnet, err := net.ParseCIDR(f.Network().Subnet); err == nil && (!subnet.Contains(addr) || n.String() != subnet.String()) {
		return "", fmt.Errorf("ip %s is outside the farm subnet %s: %w", ip, f.Network().Subnet, farm.ErrInvalid)
	}
	return ip, nil
}

// bootcodeValue is the value of key=value in a bootcode line.
func bootcodeValue(line, key string) string {
	for _, w := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(w, key+"="); ok {
			return v
		}
	}
	return ""
}

// setBootcode replaces key=... in a bootcode line, or appends it.
func setBootcode(line, key, value string) string {
	words := strings.Fields(line)
	found := false
	for i, w := range words {
		if strings.HasPrefix(w, key+"=") {
			words[i], found = key+"="+value, true
		}
	}
	if !found {
		words = append(words, key+"="+value)
	}
	return strings.Join(words, " ")
}

// besideDisk is where tinyfarm puts a copy of disk for guest name: in
// disk's own directory as name.img (the same file system, so a reflink
// where it can; name-2.img... when taken), or in <state>/disks when that
// directory is not writable.
func besideDisk(f *farm.Farm, disk, name string) (string, error) {
	dir := filepath.Dir(disk)
	if probe, err := os.CreateTemp(dir, ".tinyfarm-probe-*"); err != nil {
		return f.PlaceDisk(name, name)
	} else {
		probe.Close()
		os.Remove(probe.Name())
	}
	for n := 1; ; n++ {
		p := filepath.Join(dir, name+".img")
		if n > 1 {
			p = filepath.Join(dir, fmt.Sprintf("%s-%d.img", name, n))
		}
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p, nil
		} else if err != nil {
			return "", err
		}
	}
}

// clonePending names, in a clone's guest dir, the record of a clone in
// progress (pendingClone), removed once the clone is defined.
const clonePending = "clone.pending.json"

type pendingClone struct {
	PID   int      `json:"pid"`
	Disks []string `json:"disks"` // the disks it is writing
}

// removeStaleClone removes what a clone into dir that was killed before
// its definition left: its disks and the dir. A clone in progress (its
// tinyfarm runs) or a defined guest is left alone.
func removeStaleClone(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, clonePending))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var p pendingClone
	if json.Unmarshal(b, &p) == nil && p.PID > 0 && fsutil.Alive(p.PID) && p.PID != os.Getpid() {
		return fmt.Errorf("a clone by tinyfarm %d is in progress (%s): %w", p.PID, dir, farm.ErrExists)
	}
	if _, err := os.Stat(filepath.Join(dir, "guest.json")); err == nil {
		return os.Remove(filepath.Join(dir, clonePending)) // defined: only the record is stale
	}
	for _, d := range p.Disks {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove the disk of a killed clone: %w", err)
		}
	}
	return os.RemoveAll(dir)
}
