package farm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// Destroy stops the guest and removes its definition and runtime files.
// The disk images stay unless removeDisk, wherever they are: the user's
// own and the ones tinyfarm placed (a clone's, a restored guest's).
func (g *Guest) Destroy(ctx context.Context, removeDisk bool) error {
	_, err := g.DestroyMoved(ctx, removeDisk)
	return err
}

// DestroyMoved is Destroy; it returns the disks it kept that had lived in the
// guest's directory (an older tinyfarm put clones' and restored guests'
// disks there), now moved to <state>/disks.
func (g *Guest) DestroyMoved(ctx context.Context, removeDisk bool) (moved []string, err error) {
	if err := g.stopForDestroy(ctx); err != nil && !errors.Is(err, driver.ErrUnsupported) {
		return nil, err
	}
	unlock, err := g.farm.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	dir := g.farm.GuestDir(g.Def.Name)
	if !removeDisk {
		for _, d := range append([]string{g.Def.Disk}, g.Def.Disks...) {
			if d == "" || !strings.HasPrefix(d, dir+string(filepath.Separator)) {
				continue
			}
			to, err := g.farm.PlaceDisk(strings.TrimSuffix(filepath.Base(d), ".img"), g.Def.Name)
			if err == nil {
				err = os.Rename(d, to)
			}
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return moved, fmt.Errorf("guest %s: destroy: keep disk %s: %w", g.Def.Name, d, err)
			}
			if err == nil {
				moved = append(moved, to)
			}
		}
	}
	if removeDisk && g.Def.Disk != "" {
		// The disk and the sidecar image.build keeps beside it (same
		// name + ".tinyfarm.json"), so a later build starts afresh. They
		// go first: a disk that cannot be removed keeps the guest
		// defined, so it is neither lost track of nor left behind
		// silently. A disk another guest names (shared read-only) stays.
		if other := g.farm.otherUser(g.Def); other != "" {
			return nil, fmt.Errorf("guest %s: destroy disk: guest %s uses it too: destroy with disk = false, or destroy %s first: %w", g.Def.Name, other, other, ErrInvalid)
		}
		for _, f := range append([]string{g.Def.Disk, g.Def.Disk + ".tinyfarm.json"}, g.Def.Disks...) {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("guest %s: destroy disk (the guest stays defined; fix that and destroy it again): %w", g.Def.Name, err)
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return moved, fmt.Errorf("guest %s: destroy: %w", g.Def.Name, err)
	}
	// Its routes go with it: a later guest given its address would
	// otherwise receive its traffic.
	if _, err := proxy.NewRegistry(filepath.Join(g.farm.StateDir(), "proxy"), nil).RemoveGuest(ctx, g.Def.Name, proxy.ChangeOptions{}); err != nil {
		return moved, fmt.Errorf("guest %s: destroy: %w", g.Def.Name, err)
	}
	return moved, nil
}

// otherUser is another guest defined with one of d's disks, or "".
func (f *Farm) otherUser(d *Definition) string {
	all, _ := f.List()
	for _, o := range all {
		if o.Name != d.Name {
			for _, a := range d.diskPaths() {
				for _, b := range o.diskPaths() {
					if sameDisk(a, b) {
						return o.Name
					}
				}
			}
		}
	}
	return ""
}

// stopForDestroy ends a guest that is being destroyed without the clean
// shutdown Stop does, which is mostly fixed sleeps: ~3 s per guest, 2 min
// for 20 (busybox init's poweroff sleeps 1 s after SIGTERM and 1 s before
// the reboot call, and Tiny Core's rc.shutdown sleeps too). What a clean
// shutdown protects is the disk, which destroy may keep:
//   - ns (no kernel of its own): every write a guest made is in the host's
//     page cache already, and its file system is unmounted cleanly when
//     its mount namespace goes: killing the init is as safe as a poweroff;
//   - a VM (driver.OwnKernel: qemu, colinux): the guest's own page cache
//     is flushed with sync over SSH first; when that fails (no pinned key,
//     no answer) it gets the clean shutdown as before.
func (g *Guest) stopForDestroy(ctx context.Context) error {
	h, err := g.Handle(ctx)
	if err != nil {
		return err
	}
	st, err := h.Status(ctx)
	if err != nil || (st.State != driver.Running && st.State != driver.Suspended) {
		_, err := g.Stop(ctx, 5*time.Second) // cleans up after a crashed guest
		return err
	}
	grace := time.Duration(0)
	if _, vm := h.(driver.OwnKernel); vm {
		grace = 5 * time.Second
		if st.State == driver.Running && g.Def.HostKey != "" {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if c, err := g.Conn(sctx); err == nil {
				// Any user may sync: no sudo needed.
				if r, err := c.Run(sctx, "sync", ssh.RunOptions{IgnoreExit: true}); err == nil && r.Code == 0 {
					grace = 0
				}
			}
			cancel()
		}
	}
	g.dropConn(nil)
	if err := h.Stop(ctx, grace); err != nil {
		return fmt.Errorf("guest %s: destroy: %w", g.Def.Name, err)
	}
	return nil
}

// PlaceDisk is a free path in <state>/disks for a disk tinyfarm places
// itself: base.img, or base-2.img... when taken (never over a kept disk).
// A base that is just "disk" (an old guest directory's disk.img) is
// named after the guest instead.
func (f *Farm) PlaceDisk(base, guest string) (string, error) {
	if base == "disk" || base == "" {
		base = guest
	} else if strings.HasPrefix(base, "disk") {
		base = guest + "-" + base
	}
	dir := filepath.Join(f.StateDir(), "disks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	for n := 1; ; n++ {
		p := filepath.Join(dir, base+".img")
		if n > 1 {
			p = filepath.Join(dir, fmt.Sprintf("%s-%d.img", base, n))
		}
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p, nil
		}
	}
}
