package farm_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

// TestReleaseDefaults: a Go caller's frugal guest gets its boot files from
// the mirror as a playbook's does: the core for every driver; the
// release kernel with the core as its initrd where the driver boots it
// (qemu); the core as the initrd of a driver's own kernel (colinux); in
// check mode the cache paths, nothing fetched.
func TestReleaseDefaults(t *testing.T) {
	rel := minicore.Require(t)
	fm := farm.New(t.TempDir(), farm.Options{})
	for _, check := range []bool{true, false} {
		c, err := tcz.New(tcz.Config{URL: "file://" + rel.Mirror, Arch: rel.Arch, Cache: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		q := farm.Definition{Name: "fq", Driver: "qemu", Layout: driver.Frugal}
		co := farm.Definition{Name: "fc", Driver: "colinux", Layout: driver.Frugal, Kernel: "/colinux/vmlinux"}
		s := farm.Definition{Name: "sq", Driver: "qemu", Layout: driver.Scatter, Kernel: "/k"}
		if fm.NeedsRelease(&s) || !fm.NeedsRelease(&q) || !fm.NeedsRelease(&co) {
			t.Fatalf("NeedsRelease: scatter %v, frugal qemu %v, frugal colinux %v", fm.NeedsRelease(&s), fm.NeedsRelease(&q), fm.NeedsRelease(&co))
		}
		for _, d := range []*farm.Definition{&q, &co} {
			if err := fm.ReleaseDefaults(context.Background(), d, c, farm.ChangeOptions{Check: check}); err != nil {
				t.Fatalf("check %v: %s: %v", check, d.Name, err)
			}
		}
		if filepath.Base(q.Core) != rel.Names.Core || filepath.Base(q.Kernel) != rel.Names.Kernel || len(q.Initrds) != 1 || q.Initrds[0] != q.Core {
			t.Errorf("check %v: frugal qemu: core %s kernel %s initrds %v", check, q.Core, q.Kernel, q.Initrds)
		}
		if co.Kernel != "/colinux/vmlinux" || len(co.Initrds) != 1 || filepath.Base(co.Initrds[0]) != rel.Names.Core {
			t.Errorf("check %v: frugal colinux: kernel %s initrds %v", check, co.Kernel, co.Initrds)
		}
	}
}
