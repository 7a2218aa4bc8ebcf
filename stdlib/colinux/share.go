package colinux

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
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
	switch d.Driver {
	case "ns":
		out.Detail = "bind mount at guest start"
	case "qemu":
		out.Detail = "virtio-9p device at guest start, mounted in the guest once it is ready (wait_ready; needs the guest's 9p modules: filesystems-KERNEL.tcz on Tiny Core)"
	case "colinux":
		out.Detail = "cofsN= in the coLinux conf at guest start"
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

// mountShares mounts, in a running qemu guest reached over c, each share
// of its definition that is not mounted yet (WaitReady calls it). A share
// whose 9p device the running QEMU lacks (defined after the guest
// started: pending until its next start) is left alone. A mount failure
// names the guest, the share and the fix.
func (g *Guest) mountShares(ctx context.Context, c *ssh.Client) error {
	shares := append([]driver.Share(nil), g.Def.Shares...)
	if g.Def.Driver != "qemu" || len(shares) == 0 {
		return nil
	}
	// Parents before the shares below them, or a later mount would hide
	// an earlier one.
	sort.SliceStable(shares, func(i, j int) bool {
		return strings.Count(filepath.Clean(shares[i].GuestPath), "/") < strings.Count(filepath.Clean(shares[j].GuestPath), "/")
	})
	run := func(cmd string) (ssh.Result, error) {
		return c.Run(ctx, guestPath+cmd, ssh.RunOptions{IgnoreExit: true, Sudo: g.user() != "root"})
	}
	r, err := run(shareProbe)
	if err != nil {
		return fmt.Errorf("guest %s: mount shares: %w", g.Def.Name, err)
	}
	st := parseShareProbe(string(r.Stdout))
	for _, s := range shares {
		p := filepath.Clean(s.GuestPath)
		if st.mounted[s.Tag+" "+p] {
			continue
		}
		fail := func(why string) error {
			return fmt.Errorf("guest %s: share %s (host %s, tag %s): %s", g.Def.Name, p, s.HostPath, s.Tag, why)
		}
		if !st.have9p {
			return fail("the guest kernel has no 9p file system: it needs the 9p and 9pnet_virtio modules " +
				"(Tiny Core: install filesystems-KERNEL.tcz, tce-load -wi filesystems-KERNEL, and list it in onboot.lst)")
		}
		if !st.tags[s.Tag] {
			continue // QEMU started before the share was defined: next start
		}
		opts := "trans=virtio,version=9p2000.L"
		if s.ReadOnly {
			opts += ",ro"
		}
		q := ssh.ShellQuote(p)
		r, err := run("mkdir -p " + q + " && mount -t 9p -o " + opts + " " + ssh.ShellQuote(s.Tag) + " " + q)
		if err != nil {
			return fail(err.Error())
		}
		if r.Code != 0 {
			return fail(fmt.Sprintf("mount -t 9p -o %s %s %s in the guest: exit %d: %s (the guest path must be a directory it can create or use)",
				opts, s.Tag, q, r.Code, strings.TrimSpace(string(r.Stderr))))
		}
	}
	return nil
}

// shareProbe loads the 9p modules (quietly: they may be built in or
// loaded already) and prints the guest's mounts, the mount tags of its
// virtio-9p devices (the sysfs attribute ends in a NUL on older kernels)
// and whether it can mount 9p.
const shareProbe = `modprobe 9pnet_virtio 2>/dev/null; modprobe 9p 2>/dev/null
echo @mounts; cat /proc/mounts
echo @tags; for f in /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag; do [ -r "$f" ] && cat "$f" && echo; done
echo @9p; grep -qw 9p /proc/filesystems && [ -d /sys/bus/virtio/drivers/9pnet_virtio ] && echo yes
true`

type shareState struct {
	mounted map[string]bool // "TAG PATH" of the 9p mounts
	tags    map[string]bool // the mount tags of the guest's 9p devices
	have9p  bool
}

func parseShareProbe(out string) shareState {
	st := shareState{mounted: map[string]bool{}, tags: map[string]bool{}}
	section := ""
	for _, line := range strings.FieldsFunc(out, func(r rune) bool { return r == '\n' || r == 0 }) {
		if strings.HasPrefix(line, "@") {
			section = line
			continue
		}
		switch section {
		case "@mounts":
			f := strings.Fields(line)
			if len(f) >= 3 && f[2] == "9p" {
				st.mounted[f[0]+" "+unescapeMount(f[1])] = true
			}
		case "@tags":
			st.tags[strings.TrimSpace(line)] = true
		case "@9p":
			st.have9p = st.have9p || strings.TrimSpace(line) == "yes"
		}
	}
	return st
}

// unescapeMount undoes the octal escapes (\040 for a space, ...) of a
// path in /proc/mounts.
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
