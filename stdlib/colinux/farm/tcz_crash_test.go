//go:build linux

package farm_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/crashtest"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

const (
	tczBridge = "tfcrash3"
	tczSubnet = "10.77.232.0/24"
)

// tczGuestPlaybook installs openssh into the running guest t1 (with
// start: builds its disk and starts it).
const tczGuestPlaybook = `
local colinux, tcz, image = require("colinux"), require("tcz"), require("image")
tcz.mirror{ url = vars.mirror, kernel = vars.kernel }
local d = image.build{ path = vars.disk, size = "64M", hostname = "t1", extensions = { "dropbear" } }
colinux.network{ bridge = "` + tczBridge + `", subnet = "` + tczSubnet + `" }
local g = colinux.guest{ name = "t1", disk = d, mem = "96M" }
if vars.start == "0" then return end
if vars.start then
  g:start()
  g:wait_ready{ timeout = 60 }
  return
end
task("install", function() tcz.install(g, "openssh") end)
`

// content is a file's mode and content hash (owners differ between a
// guest in a user namespace and a directory).
func content(p string) string {
	fi, err := os.Lstat(p)
	if err != nil {
		return "missing"
	}
	d := fi.Mode().String()
	if fi.Mode().IsRegular() {
		b, _ := os.ReadFile(p)
		d += fmt.Sprintf(" sha256:%x", sha256.Sum256(b))
	} else if fi.Mode()&os.ModeSymlink != 0 {
		l, _ := os.Readlink(p)
		d += " -> " + l
	}
	return d
}

// TestCrashInstallGuest kills `tinyfarm run` at random moments of a
// tcz.install of openssh (with its dependencies) into a running ns guest
// over SSH. Every extension marked in the guest is whole (its files and
// list as a clean install writes them); the rerun reports changed when a
// marker was missing, the one after is ok, and then every file is there
// and no temporary file is left in the guest.
func TestCrashInstallGuest(t *testing.T) {
	guesttest.NeedRoot(t)
	if testing.Short() {
		t.Skip("boots guests")
	}
	rel := minicore.Require(t)
	ctx := context.Background()
	work, state := t.TempDir(), t.TempDir()
	pb := filepath.Join(work, "tcz.lua")
	if err := os.WriteFile(pb, []byte(tczGuestPlaybook), 0o644); err != nil {
		t.Fatal(err)
	}
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: tczBridge, Subnet: tczSubnet})
	t.Cleanup(func() {
		if g, err := fm.Guest(context.Background(), "t1"); err == nil {
			g.Destroy(context.Background(), false)
		}
		guesttest.KillDHCP(state, tczBridge)
		ns.DeleteBridge(tczBridge)
	})
	base, disk := filepath.Join(work, "base.img"), filepath.Join(work, "t1.img")
	cmd := func(args ...string) crashtest.Cmd {
		args = append([]string{"run", pb, "-e", "mirror=file://" + rel.Mirror, "-e", "kernel=" + rel.KernelVersion, "-e", "disk=" + disk}, args...)
		return crashtest.Cmd{Args: args, Env: []string{"TINYFARM_HOME=" + state}, Dir: work}
	}
	// The guest's disk, built once (with its sidecar: the pinned host
	// key), copied afresh for every trial.
	crashtest.MustRun(t, cmd("-e", "disk="+base, "-e", "start=0"))
	// The reference: what the first uninterrupted install leaves in the
	// guest (the extensions' lists leave out what the disk had already).
	var own map[string][]string // extension -> its files and list
	want := map[string]string{} // file -> content
	reference := func(t *testing.T, root string) {
		own = map[string][]string{}
		markers, _ := filepath.Glob(filepath.Join(root, tcz.InstalledDir, "[^.]*"))
		for _, m := range markers {
			name := filepath.Base(m)
			b, err := os.ReadFile(filepath.Join(root, tcz.FilesDir, name+".list"))
			if err != nil {
				continue // on the disk before: not this install's
			}
			own[name] = append(strings.Fields(string(b)), tcz.FilesDir+"/"+name+".list")
			for _, f := range own[name] {
				want[f] = content(filepath.Join(root, f))
			}
		}
		// What the install makes beyond the extensions' files: openssh's
		// install script makes sshd_config, and the guest's pinned host
		// keys go where sshd reads them.
		own["(after install)"] = []string{"usr/local/etc/ssh/sshd_config", "usr/local/etc/ssh/ssh_host_ed25519_key.pub"}
		for _, f := range own["(after install)"] {
			if want[f] = content(filepath.Join(root, f)); want[f] == "missing" {
				t.Fatalf("a clean install leaves no %s", f)
			}
		}
		if len(own) < 4 {
			t.Fatalf("openssh installed %d extensions, want it with its dependencies", len(own))
		}
	}
	groot := func(t *testing.T) string {
		g, err := fm.Guest(ctx, "t1")
		if err != nil {
			t.Fatal(err)
		}
		st, err := g.Status(ctx)
		if err != nil || st.State != driver.Running {
			t.Fatalf("guest t1: %v %+v", err, st)
		}
		return fmt.Sprintf("/proc/%d/root", st.PID)
	}
	crashtest.RunOp(t, crashtest.Op{
		Name:   "tcz.install into a running ns guest",
		Trials: 3, // ~5 s each
		Prepare: func(t *testing.T, trial int) crashtest.Cmd {
			if g, err := fm.Guest(ctx, "t1"); err == nil {
				g.Destroy(ctx, false)
			}
			for _, suffix := range []string{"", ".tinyfarm.json"} {
				if out, err := exec.Command("cp", "--sparse=always", base+suffix, disk+suffix).CombinedOutput(); err != nil {
					t.Fatalf("copy disk: %v\n%s", err, out)
				}
			}
			crashtest.MustRun(t, cmd("-e", "start=1"))
			return cmd()
		},
		Check: func(t *testing.T, r crashtest.Result) {
			root := groot(t)
			if own == nil {
				reference(t, root)
			}
			complete := true
			for name, files := range own {
				if strings.HasPrefix(name, "(") {
					continue
				}
				if _, err := os.Lstat(filepath.Join(root, tcz.InstalledDir, name)); err != nil {
					complete = false
					continue
				}
				for _, f := range files {
					if got, want := content(filepath.Join(root, f)), want[f]; got != want {
						t.Errorf("%v: %s is marked installed but %s is %s, want %s", r, name, f, got, want)
					}
				}
			}
			out := crashtest.MustRun(t, cmd())
			if changed := !strings.Contains(out, "changed=0"); changed == complete {
				t.Errorf("%v: rerun after a kill that left every marker=%v reported changed=%v:\n%s", r, complete, changed, out)
			}
			if out := crashtest.MustRun(t, cmd()); !strings.Contains(out, "changed=0") {
				t.Errorf("%v: second rerun changed something:\n%s", r, out)
			}
			for _, files := range own {
				for _, f := range files {
					if got, want := content(filepath.Join(root, f)), want[f]; got != want {
						t.Errorf("%v: after the rerun %s is %s, want %s", r, f, got, want)
					}
				}
			}
			for _, d := range []string{"usr/local", "root", "."} {
				var tmp []string
				ents, _ := os.ReadDir(filepath.Join(root, d))
				for _, e := range ents {
					if strings.HasPrefix(e.Name(), ".tf-") || strings.Contains(e.Name(), ".tmp") {
						tmp = append(tmp, e.Name())
					}
				}
				if d == "usr/local" {
					tmp = append(tmp, crashtest.TempFiles(filepath.Join(root, d))...)
				}
				if len(tmp) > 0 {
					t.Errorf("%v: temporary files left in the guest's /%s: %v", r, d, tmp)
				}
			}
		},
	})
}
