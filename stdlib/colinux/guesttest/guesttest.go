// Package guesttest builds Tiny Core guest disks from the mini release for
// tests and benchmarks of the guest drivers, the way the seed's shell
// pipeline does (core extracted, extensions unsquashed, mkfs.ext3 -d), so
// driver tests do not depend on the image module they help to test.
//
// It also holds what the tests of packages farm, ops and colinux share:
// their TestMain (Main), a farm on the operations tests' bridge, commands
// in a guest, a btrfs scratch file system, and the far host of the
// migration tests (a network namespace with its own dropbear).
package guesttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// NeedRoot skips tb unless it runs as root with the tools disks need.
func NeedRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("namespace guests need root (cgroups, netns, loop devices)")
	}
	for _, tool := range []string{"mkfs.ext3", "cpio", "unsquashfs", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Skipf("%s not installed (scripts/deps.sh)", tool)
		}
	}
}

// Disk is a built guest disk.
type Disk struct {
	Path    string
	HostKey string // the guest's SSH host key, authorized_keys format, to pin
}

// Options shape a disk.
type Options struct {
	Extensions []string // installed with their dependencies, in order
	Bootlocal  string   // shell lines run at boot before the ready marker
	SSH        bool     // dropbear with the farm key of StateDir for root
	StateDir   string   // where the farm key lives (SSH)
	Size       string   // default "96M"
}

// BuildDisk makes a scatter disk in a temp dir of tb.
func BuildDisk(tb testing.TB, o Options) Disk {
	tb.Helper()
	rel := minicore.Require(tb)
	dir := tb.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		tb.Fatal(err)
	}
	sh := func(script string) {
		tb.Helper()
		if out, err := exec.Command("sh", "-ec", script).CombinedOutput(); err != nil {
			tb.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	// The seed's pipeline extracts the first archive of the core only
	// (cpio stops at its trailer): the disk has no kernel modules.
	if err := rel.ExtractRootfs(root); err != nil {
		tb.Fatal(err)
	}
	exts := o.Extensions
	if o.SSH {
		exts = append([]string{"dropbear"}, exts...)
	}
	seen := map[string]bool{}
	var install func(name string)
	install = func(name string) { // dependencies first, each once
		name = rel.ExtName(name)
		if seen[name] {
			return
		}
		seen[name] = true
		deps, err := rel.Deps(name)
		if err != nil {
			tb.Fatal(err)
		}
		for _, d := range deps {
			install(d)
		}
		sh(fmt.Sprintf("unsquashfs -q -f -n -d %s %s >/dev/null && touch %s/usr/local/tce.installed/%s", root, rel.TCZ(name), root, name))
	}
	for _, e := range exts {
		install(e)
	}
	var d Disk
	bootlocal := "#!/bin/sh\n"
	if o.SSH {
		fk, err := ssh.EnsureFarmKey(o.StateDir)
		if err != nil {
			tb.Fatal(err)
		}
		hk, err := ssh.GenerateHostKey()
		if err != nil {
			tb.Fatal(err)
		}
		d.HostKey = hk.AuthorizedKey()
		os.MkdirAll(filepath.Join(root, "root/.ssh"), 0o700)
		os.WriteFile(filepath.Join(root, "root/.ssh/authorized_keys"), []byte(fk.AuthorizedKey()+"\n"), 0o600)
		os.MkdirAll(filepath.Join(root, "usr/local/etc/dropbear"), 0o755)
		os.WriteFile(filepath.Join(root, "usr/local/etc/dropbear/dropbear_ed25519_host_key"), hk.Dropbear(), 0o600)
		bootlocal += "/usr/local/etc/init.d/dropbear start\n"
	}
	bootlocal += o.Bootlocal + "\necho '" + driver.ReadyMarker + "' >/dev/console\n"
	if err := os.WriteFile(filepath.Join(root, "opt/bootlocal.sh"), []byte(bootlocal), 0o755); err != nil {
		tb.Fatal(err)
	}
	size := o.Size
	if size == "" {
		size = "96M"
	}
	d.Path = filepath.Join(dir, "disk.img")
	sh(fmt.Sprintf("mkfs.ext3 -q -F -L root -d %s %s %s", root, d.Path, size))
	os.RemoveAll(root)
	return d
}

// CopyDisk copies a disk sparsely (a fresh guest from the same image).
func CopyDisk(tb testing.TB, src string) string {
	tb.Helper()
	dst := filepath.Join(tb.TempDir(), "disk.img")
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		tb.Fatalf("copy disk: %v\n%s", err, out)
	}
	return dst
}

// Release is the mini Tiny Core release (skips tb when it is not built).
func Release(tb testing.TB) *minicore.Release { return minicore.Require(tb) }
