package qemu

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// ShareMethod: a share is a virtio-9p device, mounted by the guest.
func (r *Runner) ShareMethod() string {
	return "virtio-9p device at guest start, mounted in the guest once it is ready (wait_ready; needs the guest's 9p modules: filesystems-KERNEL.tcz on Tiny Core)"
}

// MountShares mounts, in the running guest, through run (a root shell
// there), each share that is not mounted yet: mount -t 9p -o
// trans=virtio,version=9p2000.L[,ro] TAG PATH after modprobe 9pnet_virtio
// and 9p. A share whose 9p device this QEMU lacks (defined after the
// guest started: pending until its next start) is left alone. A mount
// failure names the share and the fix.
func (g *Guest) MountShares(ctx context.Context, shares []driver.Share, run func(ctx context.Context, cmd string) (driver.ExecResult, error)) error {
	shares = append([]driver.Share(nil), shares...)
	if len(shares) == 0 {
		return nil
	}
	// Parents before the shares below them, or a later mount would hide
	// an earlier one.
	sort.SliceStable(shares, func(i, j int) bool {
		return strings.Count(filepath.Clean(shares[i].GuestPath), "/") < strings.Count(filepath.Clean(shares[j].GuestPath), "/")
	})
	r, err := run(ctx, shareProbe)
	if err != nil {
		return fmt.Errorf("mount shares: %w", err)
	}
	st := parseShareProbe(string(r.Stdout))
	for _, s := range shares {
		p := filepath.Clean(s.GuestPath)
		if st.mounted[s.Tag+" "+p] {
			continue
		}
		fail := func(why string) error {
			return fmt.Errorf("share %s (host %s, tag %s): %s", p, s.HostPath, s.Tag, why)
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
		r, err := run(ctx, "mkdir -p "+q+" && mount -t 9p -o "+opts+" "+ssh.ShellQuote(s.Tag)+" "+q)
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
