package farm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// ShareOptions is one host directory to show inside a guest (the
// vserver "mount --bind" of a host directory into a guest).
type ShareOptions struct {
	HostPath  string // absolute host directory
	GuestPath string // absolute path inside the guest
	ReadOnly  bool
	// Check computes the same result and writes nothing (check mode).
	Check bool
}

// ShareResult says what Share did or would do.
type ShareResult struct {
	Changed bool
	Diff    string // of guest.json
	// Pending is true when the share is recorded but not yet visible in
	// the guest: shares take effect when the guest (re)starts.
	Pending bool
	// Detail says how the share reaches the guest on this driver.
	Detail string
}

// Share records a host directory shared into the guest in its definition,
// so it survives restarts. A share of the same guest path is replaced.
// How it reaches the guest depends on the driver:
//   - ns: a bind mount into the guest's mount namespace at start
//     (read-only shares are remounted read-only);
//   - qemu: a virtio-9p device with mount tag Tag (QEMU exports it
//     read-only for ro shares; see qemu.Args for the security model and
//     what it means for file ownership). Once the guest answers SSH,
//     WaitReady mounts every share not mounted yet over its pinned-key
//     connection (mount -t 9p -o trans=virtio,version=9p2000.L[,ro] TAG
//     PATH, after modprobe 9pnet_virtio and 9p): the guest kernel needs
//     the 9p and 9pnet_virtio modules, which Tiny Core ships in
//     filesystems-KERNEL.tcz. A guest without a pinned host key is not
//     reached over SSH and mounts its shares itself. QEMU refuses to
//     checkpoint or live-migrate a guest while a share is mounted;
//   - colinux: a cofsN= line in the rendered conf.
//
// A running guest sees a new or changed share after its next start:
// grafting a mount into a running namespace guest from a multi-threaded
// Go process, past the guest's seccomp profile, is not done, and QEMU's
// 9p devices are fixed when it starts.
func (g *Guest) Share(ctx context.Context, o ShareOptions) (ShareResult, error) {
	fail := func(err error) (ShareResult, error) {
		return ShareResult{}, fmt.Errorf("guest %s: share %s: %w", g.Def.Name, o.GuestPath, err)
	}
	if !filepath.IsAbs(o.HostPath) {
		return fail(fmt.Errorf("host path %q: want an absolute path: %w", o.HostPath, ErrInvalid))
	}
	if !strings.HasPrefix(o.GuestPath, "/") || filepath.Clean(o.GuestPath) == "/" {
		return fail(fmt.Errorf("guest path %q: want an absolute path below /: %w", o.GuestPath, ErrInvalid))
	}
	o.HostPath, o.GuestPath = filepath.Clean(o.HostPath), filepath.Clean(o.GuestPath)
	for _, p := range []string{"/proc", "/sys", "/dev"} {
		if o.GuestPath == p || strings.HasPrefix(o.GuestPath, p+"/") {
			return fail(fmt.Errorf("guest path %s is managed by tinyfarm: %w", o.GuestPath, ErrInvalid))
		}
	}
	if systemDirs[o.GuestPath] {
		return fail(fmt.Errorf("guest path %s is a system directory of the guest: a share over it hides the guest's own files and the guest cannot boot; "+
			"share below it (%s/myapp) or elsewhere (/mnt/..., /home/tc/...): %w", o.GuestPath, o.GuestPath, ErrInvalid))
	}
	if fi, err := os.Stat(o.HostPath); err != nil {
		return fail(err)
	} else if !fi.IsDir() {
		return fail(fmt.Errorf("host path %s is not a directory: %w", o.HostPath, ErrInvalid))
	}
	if _, ok := g.farm.Backend(g.Def.Driver).(driver.Sharer); !ok {
		return fail(driver.Unsupported(g.Def.Driver, "shares", ""))
	}
	d := *g.Def
	d.Shares = append([]driver.Share(nil), g.Def.Shares...)
	i := 0
	for ; i < len(d.Shares); i++ {
		if filepath.Clean(d.Shares[i].GuestPath) == o.GuestPath {
			break
		}
	}
	if i == len(d.Shares) {
		d.Shares = append(d.Shares, driver.Share{Tag: freeShareTag(d.Shares)})
	}
	d.Shares[i].HostPath, d.Shares[i].GuestPath, d.Shares[i].ReadOnly = o.HostPath, o.GuestPath, o.ReadOnly
	return g.redefineShares(ctx, d, ChangeOptions{Check: o.Check}, fail)
}

// systemDirs are the guest directories a share may not cover: Tiny
// Core's init, busybox and libraries live there (a share's host
// directory would hide them). Paths are compared cleaned, so /mnt/../etc
// is /etc.
var systemDirs = map[string]bool{
	"/bin": true, "/etc": true, "/lib": true, "/lib64": true, "/sbin": true,
	"/usr": true, "/usr/bin": true, "/usr/lib": true, "/usr/sbin": true,
}

// Unshare removes the share of guestPath from the definition (effective
// at the next start). Removing a share that is not there changes nothing.
func (g *Guest) Unshare(ctx context.Context, guestPath string, o ChangeOptions) (ShareResult, error) {
	fail := func(err error) (ShareResult, error) {
		return ShareResult{}, fmt.Errorf("guest %s: unshare %s: %w", g.Def.Name, guestPath, err)
	}
	d := *g.Def
	d.Shares = nil
	for _, s := range g.Def.Shares {
		if filepath.Clean(s.GuestPath) != filepath.Clean(guestPath) {
			d.Shares = append(d.Shares, s)
		}
	}
	return g.redefineShares(ctx, d, o, fail)
}

func (g *Guest) redefineShares(ctx context.Context, d Definition, o ChangeOptions, fail func(error) (ShareResult, error)) (ShareResult, error) {
	res, err := g.farm.Define(d, o)
	if err != nil {
		return fail(err)
	}
	out := ShareResult{Changed: res.Changed, Diff: res.Diff}
	if s, ok := g.farm.Backend(d.Driver).(driver.Sharer); ok {
		out.Detail = s.ShareMethod()
	}
	if res.Changed && g.Running(ctx) {
		out.Pending = true
		out.Detail += "; the guest is running: takes effect at its next start"
	}
	if !o.Check {
		g.Def = res.Def
	}
	return out, nil
}

// freeShareTag is the lowest "shareN" tag not used yet: stable for a
// share's life, a valid 9p mount tag, and a cofs index name for coLinux.
func freeShareTag(shares []driver.Share) string {
	used := map[string]bool{}
	for _, s := range shares {
		used[s.Tag] = true
	}
	for n := 0; ; n++ {
		t := "share" + strconv.Itoa(n)
		if !used[t] {
			return t
		}
	}
}
